// Issue 20, binary upgrade of the real agent: a copy of alknet-agent started from a temp dir,
// its file replaced by another copy, SIGUSR2. Busy tunnels (checked byte for byte), idle
// sessions and a client connecting in a tight loop see no break and no refusal; new sessions
// go to the new pid, old ones stay on the old pid, and a key removed through the new process
// ends its old sessions too. A failed upgrade leaves the old agent serving and logs why.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// Busy tunnels through the upgrade (the number).
constexpr int kTunnels = 20;
// Idle sessions through the upgrade, each a stock ssh process: 40 in the suite (the 2-core CI
// machine runs everything else beside it); the 1,000 with UPGRADE_TEST_IDLE_SESSIONS=1000
// (not an ALKNET_* name: the agent refuses unknown ones; docs/adr/0011 records that run).
int IdleSessions() {
  const char* value = std::getenv("UPGRADE_TEST_IDLE_SESSIONS");
  const int wanted = value != nullptr ? std::atoi(value) : 0;
  return wanted > 0 ? wanted : 40;
}

// The TCP connections of `pid` (IPv4 loopback): {local port, remote port} pairs.
std::set<std::pair<uint16_t, uint16_t>> TcpOf(pid_t pid) {
  std::set<std::string> inodes;
  std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* dir = opendir(fd_dir.c_str())) {
    while (dirent* entry = readdir(dir)) {
      char target[256];
      ssize_t n = readlink((fd_dir + "/" + entry->d_name).c_str(), target, sizeof(target) - 1);
      if (n <= 0) continue;
      std::string link(target, static_cast<size_t>(n));
      if (link.rfind("socket:[", 0) == 0) inodes.insert(link.substr(8, link.size() - 9));
    }
    closedir(dir);
  }
  std::set<std::pair<uint16_t, uint16_t>> result;
  std::ifstream tcp("/proc/" + std::to_string(pid) + "/net/tcp");
  std::string line;
  std::getline(tcp, line);  // header
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
    if (state != "01" || inodes.count(inode) == 0) continue;  // ESTABLISHED sockets of pid only
    auto port = [](const std::string& address) {
      return static_cast<uint16_t>(std::stoul(address.substr(address.find(':') + 1), nullptr, 16));
    };
    result.insert({port(local), port(remote)});
  }
  return result;
}

// Which of `agents` holds the server end of `client_pid`'s connection to `agent_port`
// (-1: none).
pid_t ServingPid(pid_t client_pid, uint16_t agent_port, const std::vector<pid_t>& agents) {
  for (const auto& [local, remote] : TcpOf(client_pid)) {
    if (remote != agent_port) continue;
    for (pid_t agent : agents) {
      if (TcpOf(agent).count({agent_port, local}) > 0) return agent;
    }
  }
  return -1;
}

// Copies the built agent binary to `path` (0755), replacing it by rename as a package would.
void InstallCopy(const std::string& path) {
  std::string staged = path + ".new";
  WriteFile(staged, ReadFile(ALKNET_AGENT_BINARY), 0755);
  ASSERT_EQ(rename(staged.c_str(), path.c_str()), 0) << strerror(errno);
}

// One busy tunnel: a connection through ssh -L to the echo server, a thread sending a
// numbered pattern and checking every byte that comes back.
class BusyTunnel {
 public:
  explicit BusyTunnel(uint16_t local_port) : fd_(ConnectTcp(local_port)) {
    timeval timeout{.tv_sec = 30, .tv_usec = 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    thread_ = std::thread([this] { Run(); });
  }
  ~BusyTunnel() {
    Stop();
    if (fd_ >= 0) close(fd_);
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t checked() const { return checked_.load(); }
  const std::string& error() const { return error_; }

 private:
  void Run() {
    if (fd_ < 0) {
      error_ = "connect to the -L port failed";
      return;
    }
    char out[4096];
    char in[4096];
    uint64_t counter = 0;
    while (!stop_) {
      for (size_t i = 0; i < sizeof(out); ++i) out[i] = static_cast<char>((counter * 131 + i * 7) & 0xff);
      if (send(fd_, out, sizeof(out), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(out))) {
        error_ = "send failed: " + std::string(strerror(errno));
        return;
      }
      size_t got = 0;
      while (got < sizeof(in)) {
        ssize_t n = recv(fd_, in + got, sizeof(in) - got, 0);
        if (n <= 0) {
          error_ = n == 0 ? "tunnel closed" : "recv failed: " + std::string(strerror(errno));
          return;
        }
        got += static_cast<size_t>(n);
      }
      if (memcmp(in, out, sizeof(in)) != 0) {
        error_ = "bytes differ at round " + std::to_string(counter);
        return;
      }
      checked_ += sizeof(in);
      ++counter;
    }
  }

  int fd_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> checked_{0};
  std::string error_;
  std::thread thread_;
};

// Connects to the agent port over and over, waiting for its SSH banner each time: counts
// refusals (ECONNREFUSED: no listening socket) and connections closed without a banner.
class ConnectLoop {
 public:
  explicit ConnectLoop(uint16_t port) : port_(port) { thread_ = std::thread([this] { Run(); }); }
  ~ConnectLoop() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int refused() const { return refused_.load(); }
  int no_banner() const { return no_banner_.load(); }
  int served() const { return served_.load(); }

 private:
  void Run() {
    while (!stop_) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(port_);
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        if (errno == ECONNREFUSED) ++refused_;
        close(fd);
        continue;
      }
      timeval timeout{.tv_sec = 10, .tv_usec = 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
      char banner[8] = {};
      size_t got = 0;
      while (got < sizeof(banner)) {
        ssize_t n = recv(fd, banner + got, sizeof(banner) - got, 0);
        if (n <= 0) break;
        got += static_cast<size_t>(n);
      }
      if (got == sizeof(banner) && memcmp(banner, "SSH-2.0-", 8) == 0) {
        ++served_;
      } else {
        ++no_banner_;
      }
      close(fd);
    }
  }

  uint16_t port_;
  std::atomic<bool> stop_{false};
  std::atomic<int> refused_{0};
  std::atomic<int> no_banner_{0};
  std::atomic<int> served_{0};
  std::thread thread_;
};

class UpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(mkdir(dir_.File("bin").c_str(), 0755), 0);
    binary_ = dir_.File("bin/alknet-agent");
    InstallCopy(binary_);
    user_ = MakeKey(dir_, "user");
    WriteFile(dir_.File("keys"), user_.public_line + "\n");
  }

  // The new agents an upgrade started are not our children: end every process whose command
  // line starts with this test's binary path (the old one goes with agent_).
  void TearDown() override {
    DIR* proc = opendir("/proc");
    if (proc == nullptr) return;
    while (dirent* entry = readdir(proc)) {
      const int pid = std::atoi(entry->d_name);
      if (pid <= 0) continue;
      std::ifstream cmdline("/proc/" + std::string(entry->d_name) + "/cmdline");
      std::string argv0;
      std::getline(cmdline, argv0, '\0');
      if (argv0 == binary_) kill(pid, SIGKILL);
    }
    closedir(proc);
  }

  void StartAgent(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {binary_, "--state-dir", dir_.File("state"), "--listen",
                                     "tcp://127.0.0.1:0", "--workers", "2", "--metrics-listen",
                                     "127.0.0.1:0", "--authorized-keys", dir_.File("keys"),
                                     "--max-startups", "1000", "--per-source-max-startups", "1000",
                                     // loopback echo targets (ADR 0014, as in AgentProcess)
                                     "--forwarding-allow-loopback", "true",
                                     // its connect loop leaves without logging in, on purpose
                                     "--penalties", "false"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    agent_ = std::make_unique<BackgroundProcess>(argv, dir_.path(), "agent");
    const std::string marker = "listening address=tcp://127.0.0.1:";
    ASSERT_TRUE(WaitForLog(marker)) << Log();
    port_ = static_cast<uint16_t>(std::atoi(Log().c_str() + Log().find(marker) + marker.size()));
  }

  std::string Log() const { return agent_->Stderr(); }
  bool WaitForLog(std::string_view needle, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (Log().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  CommandResult Admin(std::vector<std::string> args) {
    std::vector<std::string> argv = {ALKNET_ADMIN_BINARY, "--socket", dir_.File("state/admin.sock")};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, "", std::chrono::seconds(90));
  }
  // Stock ssh through `alknet-agent proxy quic://` to the agent's quic:// port, -W to the echo.
  bool LogsInOverQuic(uint16_t quic_port, const std::string& tls_fingerprint) {
    std::vector<std::string> argv = SshArgs(quic_port, user_);
    argv.insert(argv.end(), {"-o", "ProxyCommand=" + std::string(ALKNET_AGENT_BINARY) +
                                       " proxy quic://127.0.0.1:%p --handshake-timeout 10s"
                                       " --tls-fingerprint " + tls_fingerprint,
                             "-W", Loopback(echo_.port()), "127.0.0.1"});
    CommandResult result = RunCommand(argv, "still here\n", std::chrono::seconds(60));
    return result.exit_code == 0 && result.out == "still here\n";
  }
  bool LogsIn() {
    std::vector<std::string> argv = SshArgs(port_, user_);
    argv.insert(argv.end(), {"-W", Loopback(echo_.port()), "127.0.0.1"});
    CommandResult result = RunCommand(argv, "still here\n");
    return result.exit_code == 0 && result.out == "still here\n";
  }

  TempDir dir_;
  EchoServer echo_;
  std::string binary_;
  TestKey user_;
  std::unique_ptr<BackgroundProcess> agent_;
  uint16_t port_ = 0;
};

// quic:// listeners go with the upgrade: the new process adopts the same UDP sockets (same
// reuseport group, same steering) and serves new QUIC clients, and the old process keeps its
// QUIC tunnels: the new process reads their packets and passes them back over the worker's
// upgrade link (their connection IDs carry the old process's epoch); the old one sends on its
// copy of the socket. (Before, the new process answered them with stateless resets, and
// before that it bound sockets of its own that the steering program never chose.)
TEST_F(UpgradeTest, QuicTunnelsSurviveAndNewQuicClientsReachTheNewProcess) {
  ASSERT_NO_FATAL_FAILURE(StartAgent({"--listen", "quic://127.0.0.1:0"}));
  const pid_t old_pid = agent_->pid();
  const std::string marker = "listening address=quic://127.0.0.1:";
  ASSERT_TRUE(WaitForLog(marker)) << Log();
  const auto quic_port = static_cast<uint16_t>(std::atoi(Log().c_str() + Log().find(marker) + marker.size()));
  const std::string tls_fingerprint = LogValue(Log(), "sha256=");
  ASSERT_FALSE(tls_fingerprint.empty()) << Log();
  ASSERT_TRUE(LogsInOverQuic(quic_port, tls_fingerprint)) << Log();
  // A busy tunnel over QUIC: stock ssh -L through `alknet-agent proxy quic://`.
  uint16_t local = 0;
  std::unique_ptr<BackgroundProcess> tunnel_ssh = StartLocalForward(
      quic_port, user_, echo_.port(), dir_.path(), "quic-tunnel", &local,
      {"-o", "ProxyCommand=" + std::string(ALKNET_AGENT_BINARY) + " proxy quic://127.0.0.1:%p --tls-fingerprint " +
                 tls_fingerprint});
  ASSERT_NE(tunnel_ssh, nullptr) << Log();
  BusyTunnel tunnel(local);
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (tunnel.checked() < 64 * 4096 && tunnel.error().empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(tunnel.checked(), 64u * 4096) << tunnel.error() << "\n" << Log();

  InstallCopy(binary_);
  agent_->Signal(SIGUSR2);
  ASSERT_TRUE(WaitForLog("handed over; keeping this process's sessions")) << Log();
  EXPECT_THAT(Log(), HasSubstr("adopted inherited UDP sockets"));
  const uint64_t checked_at_handover = tunnel.checked();
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(LogsInOverQuic(quic_port, tls_fingerprint)) << "login " << i << " after the upgrade\n" << Log();
  }
  EXPECT_TRUE(LogsIn());  // tcp:// as before
  // The tunnel keeps moving the right bytes after the handover (4 MiB more, both ways).
  deadline = Clock::now() + std::chrono::seconds(60);
  while (tunnel.checked() < checked_at_handover + 1024 * 4096 && tunnel.error().empty() &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(tunnel.error(), "") << Log();
  EXPECT_GE(tunnel.checked(), checked_at_handover + 1024 * 4096) << Log();
  EXPECT_TRUE(tunnel_ssh->running());
  // Its packets went through the new process, which passed them back (its metrics, on the
  // address it logged last).
  const std::string metrics_marker = "metrics: listening address=";
  const size_t at = Log().rfind(metrics_marker);
  ASSERT_NE(at, std::string::npos) << Log();
  const std::string url = Log().substr(at + metrics_marker.size(), Log().find_first_of(" \n", at + metrics_marker.size()) -
                                                                     (at + metrics_marker.size()));
  const std::string metrics = RunCommand({"curl", "-sS", "--max-time", "10", url + "/metrics"}).out;
  const std::string relayed = "alknet_quic_events_total{event=\"upgrade_relayed\"} ";
  ASSERT_NE(metrics.find(relayed), std::string::npos) << metrics;
  EXPECT_GT(std::atof(metrics.c_str() + metrics.find(relayed) + relayed.size()), 1000.0);
  std::printf("quic upgrade: %llu bytes checked through the tunnel before the handover, %llu after\n",
              static_cast<unsigned long long>(checked_at_handover),
              static_cast<unsigned long long>(tunnel.checked() - checked_at_handover));
  // It was the old process's session: once it ends, the old process has nothing left and exits.
  tunnel.Stop();
  tunnel_ssh->Signal(SIGTERM);
  tunnel_ssh->Wait(std::chrono::seconds(10));
  EXPECT_TRUE(agent_->Wait(std::chrono::seconds(60)).has_value())
      << "the old process " << old_pid << " did not exit after its QUIC session ended\n" << Log();
}

TEST_F(UpgradeTest, HandsOverWithoutBreakingTunnelsOrRefusingConnections) {
  StartAgent();
  const pid_t old_pid = agent_->pid();
  // An API key (in the state file) for the revocation check.
  TestKey victim = MakeKey(dir_, "victim");
  CommandResult added = Admin({"keys", "add", victim.private_path + ".pub"});
  ASSERT_EQ(added.exit_code, 0) << added.err;

  std::vector<std::unique_ptr<BackgroundProcess>> tunnel_ssh;
  std::vector<std::unique_ptr<BusyTunnel>> tunnels;
  for (int i = 0; i < kTunnels; ++i) {
    uint16_t local = 0;
    tunnel_ssh.push_back(StartLocalForward(port_, user_, echo_.port(), dir_.path(),
                                           "tunnel" + std::to_string(i), &local));
    ASSERT_NE(tunnel_ssh.back(), nullptr);
    tunnels.push_back(std::make_unique<BusyTunnel>(local));
  }
  std::vector<std::unique_ptr<BackgroundProcess>> idle;
  for (int i = 0, n = IdleSessions(); i < n; ++i) {
    std::vector<std::string> argv = SshArgs(port_, user_);
    argv.insert(argv.end(), {"-N", "127.0.0.1"});
    idle.push_back(std::make_unique<BackgroundProcess>(argv, dir_.path(), "idle" + std::to_string(i)));
  }
  std::vector<std::string> victim_argv = SshArgs(port_, victim);
  victim_argv.insert(victim_argv.end(), {"-N", "127.0.0.1"});
  BackgroundProcess victim_ssh(victim_argv, dir_.path(), "victim");
  // Every session logged in on the old process before the upgrade.
  auto deadline = Clock::now() + std::chrono::seconds(60);
  auto all_on = [&](pid_t pid) {
    for (auto& ssh : idle) {
      if (ServingPid(ssh->pid(), port_, {pid}) != pid) return false;
    }
    return ServingPid(victim_ssh.pid(), port_, {pid}) == pid;
  };
  while (!all_on(old_pid) && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(all_on(old_pid)) << Log();
  ASSERT_TRUE(WaitForLog("user=tester") || true);

  ConnectLoop loop(port_);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // The binary on disk is now another copy; SIGUSR2 starts it.
  InstallCopy(binary_);
  agent_->Signal(SIGUSR2);
  ASSERT_TRUE(WaitForLog("the new process serves")) << Log();
  const std::string marker = "the new process serves pid=";
  const pid_t new_pid = std::atoi(Log().c_str() + Log().find(marker) + marker.size());
  ASSERT_GT(new_pid, 0);
  ASSERT_NE(new_pid, old_pid);
  ASSERT_TRUE(WaitForLog("handed over; keeping this process's sessions")) << Log();

  // The loop goes on against the new process for a while; the tunnels keep pumping.
  const int served_at_handover = loop.served();
  uint64_t checked_at_handover = 0;
  for (auto& tunnel : tunnels) checked_at_handover += tunnel->checked();
  deadline = Clock::now() + std::chrono::seconds(60);
  while (loop.served() < served_at_handover + 50 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  loop.Stop();
  EXPECT_EQ(loop.refused(), 0) << "connection attempts refused during the handover";
  EXPECT_EQ(loop.no_banner(), 0) << "connections closed without an SSH banner";
  EXPECT_GE(loop.served(), served_at_handover + 50);

  // New sessions: the new pid; GetStatus (the admin socket is the new process's) says so too.
  std::vector<std::string> fresh_argv = SshArgs(port_, user_);
  fresh_argv.insert(fresh_argv.end(), {"-N", "127.0.0.1"});
  BackgroundProcess fresh(fresh_argv, dir_.path(), "fresh");
  deadline = Clock::now() + std::chrono::seconds(30);
  while (ServingPid(fresh.pid(), port_, {old_pid, new_pid}) == -1 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(ServingPid(fresh.pid(), port_, {old_pid, new_pid}), new_pid);
  CommandResult status = Admin({"--json", "status"});
  EXPECT_THAT(status.out, HasSubstr("\"pid\": " + std::to_string(new_pid))) << status.out << status.err;
  EXPECT_TRUE(LogsIn());

  // Old sessions: still on the old pid, the tunnels still moving the right bytes.
  for (auto& ssh : idle) {
    EXPECT_TRUE(ssh->running());
    EXPECT_EQ(ServingPid(ssh->pid(), port_, {old_pid, new_pid}), old_pid);
  }
  for (auto& ssh : tunnel_ssh) EXPECT_EQ(ServingPid(ssh->pid(), port_, {old_pid, new_pid}), old_pid);
  std::printf("upgrade: %zu idle sessions and %zu busy tunnels stayed on the old pid %d; new pid %d; "
              "%d connections served by the connect loop, %d refused\n",
              idle.size(), tunnel_ssh.size(), static_cast<int>(old_pid), static_cast<int>(new_pid),
              loop.served(), loop.refused());
  deadline = Clock::now() + std::chrono::seconds(60);
  auto all_moved = [&] {
    for (auto& tunnel : tunnels) {
      if (!tunnel->error().empty()) return true;
    }
    uint64_t checked = 0;
    for (auto& tunnel : tunnels) checked += tunnel->checked();
    return checked >= checked_at_handover + kTunnels * 64 * 4096;
  };
  while (!all_moved() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (auto& tunnel : tunnels) {
    tunnel->Stop();
    EXPECT_EQ(tunnel->error(), "");
    EXPECT_GT(tunnel->checked(), 0u);
  }

  // A key removed through the new process ends its session in the old one too.
  ASSERT_TRUE(victim_ssh.running());
  CommandResult removed = Admin({"keys", "rm", victim.fingerprint, "--kill"});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_TRUE(victim_ssh.Wait(std::chrono::seconds(30)).has_value())
      << "the removed key's old session is still up\n" << Log();
  // Logged after the sessions are ended: the ssh may exit first (seen under ctest -j2).
  EXPECT_TRUE(WaitForLog("key removed in the state file; ended its sessions here", std::chrono::seconds(10)))
      << Log();
  // The old process's other sessions were not touched.
  for (auto& ssh : idle) EXPECT_TRUE(ssh->running());
}

TEST_F(UpgradeTest, AlknetAdminAgentUpgradeAnswersWithTheNewPid) {
  StartAgent();
  ASSERT_TRUE(LogsIn()) << Log();
  const pid_t old_pid = agent_->pid();
  InstallCopy(binary_);
  // The admin socket's path never goes missing during the handover (the new process renames
  // its socket onto it; the old one's exit removes nothing of it).
  const std::string socket_path = dir_.File("state/admin.sock");
  std::atomic<bool> watching{true};
  std::atomic<int> missing{0};
  std::thread watcher([&] {
    while (watching) {
      if (::access(socket_path.c_str(), F_OK) != 0) ++missing;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  CommandResult upgrade = Admin({"agent", "upgrade"});
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the old one's admin shutdown
  watching = false;
  watcher.join();
  EXPECT_EQ(missing.load(), 0) << "the admin socket path went missing during the upgrade";
  ASSERT_EQ(upgrade.exit_code, 0) << upgrade.err << Log();
  const std::string marker = "upgraded: new agent pid ";
  ASSERT_THAT(upgrade.out, HasSubstr(marker));
  const std::string new_pid = upgrade.out.substr(upgrade.out.find(marker) + marker.size());
  EXPECT_NE(std::stoi(new_pid), old_pid);
  // The admin socket is the new process's now, and it serves logins.
  CommandResult status = Admin({"--json", "status"});
  EXPECT_THAT(status.out, HasSubstr("\"pid\": " + std::to_string(std::stoi(new_pid)))) << status.err;
  EXPECT_TRUE(LogsIn()) << Log();
}

TEST_F(UpgradeTest, AFailedUpgradeKeepsTheOldAgentServingAndLogsWhy) {
  StartAgent();
  ASSERT_TRUE(LogsIn()) << Log();
  // The "new binary" has a bad config.
  std::string staged = binary_ + ".new";
  WriteFile(staged,
            "#!/bin/sh\n"
            "echo 'alknet-agent: limits.max_sessions: expected 1..1000000, got \"lots\"' >&2\n"
            "exit 2\n",
            0755);
  ASSERT_EQ(rename(staged.c_str(), binary_.c_str()), 0);
  agent_->Signal(SIGUSR2);
  ASSERT_TRUE(WaitForLog("upgrade failed; this process keeps serving")) << Log();
  EXPECT_THAT(Log(), HasSubstr("exited with status 2"));
  EXPECT_THAT(Log(), HasSubstr("limits.max_sessions: expected 1..1000000"));
  EXPECT_TRUE(agent_->running());
  EXPECT_TRUE(LogsIn()) << Log();
  // The admin API still answers, from the same process.
  CommandResult status = Admin({"--json", "status"});
  EXPECT_THAT(status.out, HasSubstr("\"pid\": " + std::to_string(agent_->pid()))) << status.err;
  // `alknet-admin agent upgrade` runs the same upgrade and reports the same failure.
  CommandResult upgrade = Admin({"agent", "upgrade"});
  EXPECT_NE(upgrade.exit_code, 0);
  EXPECT_THAT(upgrade.err, HasSubstr("limits.max_sessions: expected 1..1000000")) << upgrade.err;
  EXPECT_TRUE(agent_->running());
  EXPECT_TRUE(LogsIn()) << Log();
}

}  // namespace
}  // namespace alknet::testing
