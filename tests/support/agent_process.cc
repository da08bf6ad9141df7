// Runs real programs for interop tests: the alknet-agent binary, ssh, curl; temp dirs; free ports.
#include "tests/support/agent_process.h"

#include <algorithm>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

namespace alknet::testing {
namespace {

using Clock = std::chrono::steady_clock;

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::vector<char*> ArgvPointers(const std::vector<std::string>& argv) {
  std::vector<char*> pointers;
  for (const std::string& arg : argv) pointers.push_back(const_cast<char*>(arg.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/alknet-test-XXXXXX";
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) std::abort();
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void WriteFile(const std::string& path, std::string_view contents, int mode) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  chmod(path.c_str(), static_cast<mode_t>(mode));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

CommandResult RunCommand(const std::vector<std::string>& argv, std::string_view input,
                         std::chrono::milliseconds timeout) {
  // A command that exits before reading all of `input` (ssh refused at once) must not kill the
  // test with SIGPIPE: the write below then fails with EPIPE instead. Children get SIG_DFL back.
  static const bool sigpipe_ignored = [] { return signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)sigpipe_ignored;
  CommandResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0 ||
      pipe2(err_pipe, O_CLOEXEC) != 0) {
    return result;
  }
  std::vector<char*> args = ArgvPointers(argv);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    setsid();  // no controlling terminal: ssh can never prompt
    signal(SIGPIPE, SIG_DFL);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  size_t written = 0;
  if (input.empty()) {
    close(in_pipe[1]);
    in_pipe[1] = -1;
  }
  auto deadline = Clock::now() + timeout;
  bool out_open = true, err_open = true;
  char buffer[65536];
  while (out_open || err_open) {
    pollfd fds[3];
    int count = 0;
    if (out_open) fds[count++] = {out_pipe[0], POLLIN, 0};
    if (err_open) fds[count++] = {err_pipe[0], POLLIN, 0};
    if (in_pipe[1] >= 0) fds[count++] = {in_pipe[1], POLLOUT, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, count, static_cast<int>(std::min<long>(left.count(), 1000))) < 0) continue;
    for (int i = 0; i < count; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_pipe[1]) {
        ssize_t n = write(in_pipe[1], input.data() + written, input.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN) written = input.size();
        if (written == input.size()) {
          close(in_pipe[1]);
          in_pipe[1] = -1;
        }
        continue;
      }
      ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
      std::string& sink = fds[i].fd == out_pipe[0] ? result.out : result.err;
      if (n > 0) {
        sink.append(buffer, static_cast<size_t>(n));
      } else {
        (fds[i].fd == out_pipe[0] ? out_open : err_open) = false;
      }
    }
  }
  if (in_pipe[1] >= 0) close(in_pipe[1]);
  close(out_pipe[0]);
  close(err_pipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = DecodeWaitStatus(status);
  return result;
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv, const std::string& log_dir,
                                     std::string_view name, bool stdin_pipe) {
  stdout_path_ = log_dir + "/" + std::string(name) + ".out";
  stderr_path_ = log_dir + "/" + std::string(name) + ".err";
  int in_pipe[2] = {-1, -1};
  if (stdin_pipe && pipe2(in_pipe, O_CLOEXEC) != 0) std::abort();
  std::vector<char*> args = ArgvPointers(argv);
  // Empty the logs before the fork: a caller polling them at once must not read an earlier
  // process's lines (a restart with the same name once found the old "listening" line, then an
  // empty log).
  for (const std::string* path : {&stdout_path_, &stderr_path_}) {
    int fd = open(path->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
  }
  pid_ = fork();
  if (pid_ == 0) {
    int out = open(stdout_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int in = stdin_pipe ? in_pipe[0] : open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    setsid();
    execvp(args[0], args.data());
    _exit(127);
  }
  if (stdin_pipe) {
    close(in_pipe[0]);
    stdin_fd_ = in_pipe[1];
  }
}

BackgroundProcess::~BackgroundProcess() {
  if (stdin_fd_ >= 0) close(stdin_fd_);
  if (!exit_code_) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

std::string BackgroundProcess::Stdout() const { return ReadFile(stdout_path_); }
std::string BackgroundProcess::Stderr() const { return ReadFile(stderr_path_); }
void BackgroundProcess::Signal(int signal_number) {
  if (!exit_code_) kill(pid_, signal_number);
}

bool BackgroundProcess::running() {
  if (exit_code_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    exit_code_ = DecodeWaitStatus(status);
    return false;
  }
  return true;
}

std::optional<int> BackgroundProcess::Wait(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (running()) {
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_code_;
}

AgentProcess::AgentProcess(const TempDir& dir, std::vector<std::string> extra_args) {
  std::vector<std::string> argv = {ALKNET_AGENT_BINARY, "--state-dir", dir.File("state"),
                                   "--listen", "tcp://127.0.0.1:0", "--workers", "2",
                                   "--metrics-listen", "127.0.0.1:0",
                                   // Tests may only connect to loopback echo servers: the
                                   // built-in loopback deny is lifted here (ADR 0014);
                                   // forwarding_policy_test proves the default with "false".
                                   "--forwarding-allow-loopback", "true"};
  // Per-source penalties are on by default, and most tests fail auth or probe from one
  // loopback address on purpose many times in a row: off unless the test names them.
  bool names_penalties = std::any_of(extra_args.begin(), extra_args.end(), [](const std::string& a) {
    return a.rfind("--penalt", 0) == 0;
  });
  if (!names_penalties) argv.insert(argv.end(), {"--penalties", "false"});
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  process_ = std::make_unique<BackgroundProcess>(argv, dir.path(), "agent");
  // The text form, or the JSON form (--log-format json).
  const std::string markers[] = {"listening address=tcp://127.0.0.1:",
                                 "\"address\":\"tcp://127.0.0.1:"};
  auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline) {
    std::string log = Log();
    for (const std::string& marker : markers) {
      size_t at = log.find(marker);
      if (at != std::string::npos) {
        port_ = static_cast<uint16_t>(std::atoi(log.c_str() + at + marker.size()));
        return;
      }
    }
    if (!process_->running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "agent did not start listening; log:\n" << Log();
}

bool AgentProcess::WaitForLog(std::string_view needle, std::chrono::milliseconds timeout) const {
  auto deadline = Clock::now() + timeout;
  do {
    if (Log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (Clock::now() < deadline);
  return false;
}

long AgentProcess::RssKb() const {
  std::string status = ReadFile("/proc/" + std::to_string(process_->pid()) + "/status");
  size_t at = status.find("VmRSS:");
  return at == std::string::npos ? -1 : std::atol(status.c_str() + at + 6);
}

std::string LogValue(const std::string& log, const std::string& key) {
  size_t at = log.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  size_t end = log.find_first_of(" \n", at);
  return log.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

int CountOccurrences(std::string_view text, std::string_view needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

uint16_t ListeningPort(const std::string& log, std::string_view scheme) {
  const std::string marker = "listening address=" + std::string(scheme) + "://127.0.0.1:";
  size_t at = log.find(marker);
  return at == std::string::npos ? 0 : static_cast<uint16_t>(std::atoi(log.c_str() + at + marker.size()));
}

std::string Loopback(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

CommandResult CurlThroughSocks(uint16_t socks, const std::string& url) {
  return RunCommand({"curl", "-sS", "--max-time", "20", "--socks5-hostname", Loopback(socks), url});
}

bool HaveProgram(const std::string& name) {
  return RunCommand({"sh", "-c", "command -v " + name}).exit_code == 0;
}

int ConnectTcp(uint16_t port, const char* source_ip) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (source_ip != nullptr) {
    sockaddr_in source{};
    source.sin_family = AF_INET;
    inet_pton(AF_INET, source_ip, &source.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof(source)) != 0) {
      close(fd);
      return -1;
    }
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string HttpStatusLine(const std::string& url, const std::string& path) {
  int fd = ConnectTcp(static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1))));
  if (fd < 0) return "";
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) {
    response.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return response.substr(0, response.find("\r\n"));
}

}  // namespace alknet::testing
