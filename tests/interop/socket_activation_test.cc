// Issue 20, socket activation: the agent adopts a listening socket passed the way systemd
// passes it (fd 3, LISTEN_FDS=1, LISTEN_PID = the agent's own pid, set in the child before
// exec), and stock ssh logs in through it; an inherited socket that matches no listener is a
// startup error that names it.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/common/net_address.h"
#include "server/common/tcp_listen.h"
#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;

// fork; in the child: `listen_fd` becomes fd 3 (inheritable), LISTEN_FDS/LISTEN_PID are set
// for the child's own pid, stderr goes to `log`, then exec. Returns the pid.
pid_t SpawnActivated(const std::vector<std::string>& argv, int listen_fd, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int err = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(err, 2);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    if (listen_fd == 3) {
      fcntl(3, F_SETFD, 0);
    } else {
      dup2(listen_fd, 3);  // dup2 clears FD_CLOEXEC on the copy
    }
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDNAMES", "ssh", 1);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

class SocketActivationTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::vector<std::string> AgentArgs(uint16_t port) {
    return {ALKNET_AGENT_BINARY, "--state-dir", dir_.File("state"), "--listen",
            "tcp://127.0.0.1:" + std::to_string(port), "--workers", "1", "--metrics-listen", "off",
            "--authorized-keys", dir_.File("keys"),
            "--forwarding-allow-loopback", "true"};  // -W to the loopback echo (ADR 0014)
  }
  bool WaitForLog(std::string_view needle) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      if (ReadFile(dir_.File("agent.err")).find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  TempDir dir_;
  pid_t pid_ = -1;
};

TEST_F(SocketActivationTest, AdoptsTheInheritedSocketAndSshLogsInThroughIt) {
  TestKey key = MakeKey(dir_, "user");
  WriteFile(dir_.File("keys"), key.public_line + "\n");
  EchoServer echo;
  auto listening = ListenTcp(HostPort{"127.0.0.1", 0}, "test");
  ASSERT_TRUE(listening.ok()) << listening.status();
  const uint16_t port = LocalOf(listening->get()).port;
  // The agent cannot bind this port itself while our socket listens on it (no SO_REUSEPORT):
  // it serves only by adopting fd 3.
  pid_ = SpawnActivated(AgentArgs(port), listening->get(), dir_.File("agent.err"));
  ASSERT_TRUE(WaitForLog("listening address=tcp://127.0.0.1:")) << ReadFile(dir_.File("agent.err"));
  EXPECT_THAT(ReadFile(dir_.File("agent.err")), HasSubstr("adopted inherited listening socket"));
  listening->reset();  // the agent's copy is the only one now

  std::vector<std::string> argv = SshArgs(port, key);
  argv.insert(argv.end(), {"-W", Loopback(echo.port()), "127.0.0.1"});
  CommandResult result = RunCommand(argv, "through fd 3\n");
  EXPECT_EQ(result.exit_code, 0) << result.err << ReadFile(dir_.File("agent.err"));
  EXPECT_EQ(result.out, "through fd 3\n");
}

TEST_F(SocketActivationTest, AnInheritedSocketNoListenerMatchesIsAStartupError) {
  WriteFile(dir_.File("keys"), "");
  auto listening = ListenTcp(HostPort{"127.0.0.1", 0}, "test");
  ASSERT_TRUE(listening.ok()) << listening.status();
  auto other = ListenTcp(HostPort{"127.0.0.1", 0}, "test");
  ASSERT_TRUE(other.ok()) << other.status();
  const uint16_t other_port = LocalOf(other->get()).port;
  other->reset();  // free for the agent to bind
  // Configured for `other`'s port, handed `listening`.
  pid_ = SpawnActivated(AgentArgs(other_port), listening->get(),
                        dir_.File("agent.err"));
  int status = 0;
  ASSERT_EQ(waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_THAT(ReadFile(dir_.File("agent.err")),
              HasSubstr("inherited socket(s) match no configured listener"));
  EXPECT_THAT(ReadFile(dir_.File("agent.err")), HasSubstr("(name ssh) bound to 127.0.0.1:"));
}

}  // namespace
}  // namespace alknet::testing
