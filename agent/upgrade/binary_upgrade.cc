// The old process's side of a binary upgrade: fork+exec of the binary on disk with the
// listening sockets, then the control socket's conversation until ready or failed.
#include "agent/upgrade/binary_upgrade.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"
#include "server/common/unique_fd.h"

extern char** environ;

namespace alknet::agent {

namespace {
// How much of the new process's stderr the error keeps, and how long a line may be.
constexpr size_t kKeptLines = 10;
constexpr size_t kMaxLine = 2048;
constexpr size_t kMaxControlBytes = 4096;

// Lines read from one fd; complete lines go to `on_line`, an over-long one is cut.
class LineReader {
 public:
  // false at EOF or error.
  template <typename F>
  bool ReadFrom(int fd, F&& on_line) {
    char chunk[4096];
    ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) {
      if (!partial_.empty()) on_line(std::exchange(partial_, {}));
      return false;
    }
    for (ssize_t i = 0; i < n; ++i) {
      if (chunk[i] == '\n') {
        on_line(std::exchange(partial_, {}));
      } else if (partial_.size() < kMaxLine) {
        partial_.push_back(chunk[i]);
      }
    }
    return true;
  }

 private:
  std::string partial_;
};

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return "ended";
}
}  // namespace

UpgradeCommand CaptureUpgradeCommand(int argc, const char* const* argv) {
  UpgradeCommand command;
  char path[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  command.executable = n > 0 ? std::string(path, static_cast<size_t>(n))
                             : std::string(argc > 0 ? argv[0] : "alknet-agent");
  for (int i = 0; i < argc; ++i) command.argv.emplace_back(argv[i]);
  return command;
}

absl::StatusOr<pid_t> RunBinaryUpgrade(const UpgradeCommand& command,
                                       const std::vector<std::pair<int, std::string>>& listen_fds,
                                       const UpgradeHooks& hooks, absl::Duration timeout,
                                       Logger& logger) {
  int control[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control) != 0) {
    return ErrnoStatus("upgrade: socketpair", errno);
  }
  UniqueFd ours(control[0]);
  UniqueFd theirs(control[1]);
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return ErrnoStatus("upgrade: pipe", errno);
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write(err_pipe[1]);

  // Everything the child needs is built before fork(): after it only async-signal-safe calls.
  const int n = static_cast<int>(listen_fds.size());
  std::vector<std::string> env_strings;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text = *entry;
    if (absl::StartsWith(Sv(text), "LISTEN_") ||
        absl::StartsWith(Sv(text), absl::StrCat(kUpgradeFdVariable, "="))) {
      continue;
    }
    env_strings.emplace_back(text);
  }
  env_strings.push_back(absl::StrCat("LISTEN_FDS=", n));
  std::vector<std::string> names;
  for (const auto& [fd, name] : listen_fds) names.push_back(name);
  env_strings.push_back(absl::StrCat("LISTEN_FDNAMES=", absl::StrJoin(names, ":")));
  env_strings.push_back(absl::StrCat(kUpgradeFdVariable, "=", 3 + n, ",", 3 + n + 1));
  env_strings.push_back("LISTEN_PID=" + std::string(20, '\0'));
  char* pid_digits = env_strings.back().data() + std::strlen("LISTEN_PID=");
  std::vector<char*> envp;
  for (std::string& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (const std::string& arg : command.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<int> sources;
  for (const auto& [fd, name] : listen_fds) sources.push_back(fd);
  sources.push_back(theirs.get());  // -> 3+n: control
  sources.push_back(STDERR_FILENO);  // -> 3+n+1: our own stderr, for after the handover
  sources.push_back(err_write.get());  // -> 2
  std::vector<int> moved(sources.size(), -1);
  const int high = 3 + n + 2;

  logger.Info("upgrade", "starting the binary on disk",
              {{"executable", command.executable}, {"listeners", absl::StrCat(n)}});
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus("upgrade: fork", errno);
  if (pid == 0) {
    // First out of the way of the targets (close-on-exec copies), then into place.
    for (size_t i = 0; i < sources.size(); ++i) moved[i] = ::fcntl(sources[i], F_DUPFD_CLOEXEC, high);
    for (int i = 0; i < n + 2; ++i) ::dup2(moved[static_cast<size_t>(i)], 3 + i);
    ::dup2(moved.back(), STDERR_FILENO);
    pid_t self = ::getpid();
    char digits[20];
    int count = 0;
    do {
      digits[count++] = static_cast<char>('0' + self % 10);
      self /= 10;
    } while (self > 0);
    for (int i = 0; i < count; ++i) pid_digits[i] = digits[count - 1 - i];
    pid_digits[count] = '\0';
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(command.executable.c_str(), argv.data(), envp.data());
    static const char kExecFailed[] = "alknet-agent: upgrade: exec of the binary on disk failed\n";
    [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, kExecFailed, sizeof(kExecFailed) - 1);
    ::_exit(127);
  }
  theirs.reset();
  err_write.reset();

  std::deque<std::string> last_lines;
  LineReader err_lines;
  LineReader control_lines;
  size_t control_bytes = 0;
  bool released = false;
  std::optional<pid_t> ready_pid;
  std::string reported_error;
  bool control_open = true;
  auto relay = [&](std::string line) {
    WriteAll(STDERR_FILENO, line + "\n");
    last_lines.push_back(std::move(line));
    if (last_lines.size() > kKeptLines) last_lines.pop_front();
  };
  auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  std::string failure;
  while (!ready_pid && control_open) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      failure = absl::StrCat("not ready within ", absl::FormatDuration(timeout));
      break;
    }
    pollfd fds[2] = {{ours.get(), POLLIN, 0}, {err_read.get(), POLLIN, 0}};
    int polled = ::poll(fds, err_read.valid() ? 2 : 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (polled < 0 && errno != EINTR) {
      failure = absl::StrCat("poll: ", std::strerror(errno));
      break;
    }
    if (err_read.valid() && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      if (!err_lines.ReadFrom(err_read.get(), relay)) err_read.reset();
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      control_open = control_lines.ReadFrom(ours.get(), [&](std::string line) {
        control_bytes += line.size() + 1;
        if (line == "config-ok" && !released) {
          if (hooks.release) hooks.release();
          released = true;
          WriteAll(ours.get(), "released\n");
        } else if (absl::StartsWith(line, "ready ")) {
          int reported = 0;
          if (absl::SimpleAtoi(line.substr(6), &reported)) ready_pid = reported;
        } else if (absl::StartsWith(line, "error ")) {
          reported_error = line.substr(6);
        }
      });
      if (control_bytes > kMaxControlBytes) {
        failure = "too much on the control socket";
        break;
      }
    }
  }
  if (ready_pid) {
    // It moved its stderr to ours before saying ready: relay what is left in the pipe.
    auto drain_until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (err_read.valid() && std::chrono::steady_clock::now() < drain_until) {
      pollfd fd{err_read.get(), POLLIN, 0};
      if (::poll(&fd, 1, 100) > 0 && !err_lines.ReadFrom(err_read.get(), relay)) err_read.reset();
    }
    logger.Info("upgrade", "the new process serves", {{"pid", absl::StrCat(*ready_pid)}});
    return *ready_pid;
  }
  // Failed: make sure it is gone, collect its exit and the rest of its stderr.
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) == 0) {
    if (failure.empty()) failure = "closed the control socket";
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  auto drain_until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (err_read.valid() && std::chrono::steady_clock::now() < drain_until) {
    pollfd fd{err_read.get(), POLLIN, 0};
    if (::poll(&fd, 1, 100) > 0 && !err_lines.ReadFrom(err_read.get(), relay)) err_read.reset();
  }
  if (released && hooks.retake) hooks.retake();
  std::string error = absl::StrCat("upgrade failed: the new process (pid ", pid, ", ",
                                   command.executable, ") ",
                                   failure.empty() ? DescribeExit(status)
                                                   : absl::StrCat(failure, "; ", DescribeExit(status)));
  if (!reported_error.empty()) absl::StrAppend(&error, "; its error: ", reported_error);
  if (!last_lines.empty()) {
    std::vector<std::string> lines(last_lines.begin(), last_lines.end());
    absl::StrAppend(&error, "; its last output: ", absl::StrJoin(lines, " | "));
  }
  return absl::FailedPreconditionError(error);
}

void WriteAll(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace alknet::agent
