// Remote forwarding on the agent (tcpip-forward): the stock OpenSSH client's `ssh -N -R`
// publishes a local server on the agent's loopback (the bound address read from
// /proc/net/tcp{,6}); keys without permission are refused.
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class RemoteForwardTest : public ::testing::Test {
 protected:
  // Starts an agent whose authorized_keys line for our key carries `options`.
  void StartAgent(const std::string& options) {
    key_ = MakeKey(dir_, "user_key");
    std::string line = options.empty() ? key_.public_line : options + " " + key_.public_line;
    WriteFile(dir_.File("authorized_keys"), line + "\n");
    agent_ = std::make_unique<AgentProcess>(
        dir_, std::vector<std::string>{"--authorized-keys", dir_.File("authorized_keys")});
    ASSERT_NE(agent_->port(), 0);
  }

  std::vector<std::string> Ssh(const std::string& spec, const std::string& log_level = "ERROR") {
    std::vector<std::string> argv = SshArgs(agent_->port(), key_);
    for (std::string& arg : argv) {
      if (arg == "LogLevel=ERROR") arg = "LogLevel=" + log_level;
    }
    argv.insert(argv.end(), {"-N", "-R", spec, "127.0.0.1"});
    return argv;
  }

  TempDir dir_;
  TestKey key_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(RemoteForwardTest, StockSshPublishesLocalServerOnAgentLoopback) {
  StartAgent("");
  EchoServer echo;
  uint16_t published = PickFreePort();
  BackgroundProcess ssh(Ssh(std::to_string(published) + ":127.0.0.1:" + std::to_string(echo.port())),
                        dir_.path(), "ssh_r");
  ASSERT_TRUE(WaitForListener(agent_->process(), published)) << ssh.Stderr() << agent_->Log();
  for (int i = 0; i < 3; ++i) {
    int fd = ConnectTcp(published);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(4 << 20, 10 + i)));
    close(fd);
  }
  EXPECT_GE(echo.connections(), 3);
  // GatewayPorts=no: the agent's socket on that port is bound to 127.0.0.1 and nothing else
  // (what the kernel says, not what the log says).
  EXPECT_THAT(ListenAddresses(agent_->process().pid(), published), ElementsAre("127.0.0.1"));
  // The listen port is the agent's own and is logged, the client's target never is.
  EXPECT_TRUE(agent_->WaitForLog("remote forward listening"));
  EXPECT_THAT(agent_->Log(), HasSubstr("listen=127.0.0.1:" + std::to_string(published)));
  EXPECT_THAT(agent_->Log(), Not(HasSubstr(std::to_string(echo.port()))));
  // The session ends: the listener goes with it.
  ssh.Signal(SIGTERM);
  ssh.Wait(std::chrono::seconds(10));
  bool closed = false;
  for (int i = 0; i < 200 && !closed; ++i) {
    int fd = ConnectTcp(published);
    if (fd < 0) {
      closed = true;
    } else {
      close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  EXPECT_TRUE(closed) << "remote forward listener outlived its session";
}

TEST_F(RemoteForwardTest, WildcardRequestBindsLoopbackAndPortZeroIsAllocated) {
  StartAgent("");
  EchoServer echo;
  // "-R 0.0.0.0:0:..." asks for any port on all interfaces: the agent picks a port and binds
  // 127.0.0.1 only; ssh prints the allocated port at INFO level.
  BackgroundProcess ssh(Ssh("0.0.0.0:0:127.0.0.1:" + std::to_string(echo.port()), "INFO"),
                        dir_.path(), "ssh_r0");
  const std::string marker = "Allocated port ";
  uint16_t allocated = 0;
  for (int i = 0; i < 500 && allocated == 0; ++i) {
    std::string err = ssh.Stderr();
    size_t at = err.find(marker);
    if (at != std::string::npos) allocated = static_cast<uint16_t>(std::atoi(err.c_str() + at + marker.size()));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(allocated, 0) << ssh.Stderr() << agent_->Log();
  // The wildcard was not honoured: the kernel has the agent's socket on 127.0.0.1 only.
  EXPECT_THAT(ListenAddresses(agent_->process().pid(), allocated), ElementsAre("127.0.0.1"));
  int fd = ConnectTcp(allocated);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(256 << 10, 3)));
  close(fd);
  EXPECT_THAT(agent_->Log(), HasSubstr("listen=127.0.0.1:" + std::to_string(allocated)));
}

TEST_F(RemoteForwardTest, PermitListenLimitsPorts) {
  uint16_t allowed = PickFreePort();
  uint16_t other = PickFreePort();
  StartAgent("permitlisten=\"" + std::to_string(allowed) + "\"");
  EchoServer echo;
  CommandResult refused =
      RunCommand(Ssh(std::to_string(other) + ":127.0.0.1:" + std::to_string(echo.port())), "",
                 std::chrono::seconds(30));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("remote port forwarding failed"));
  EXPECT_TRUE(agent_->WaitForLog("reason=permitlisten-mismatch")) << agent_->Log();

  BackgroundProcess ssh(Ssh(std::to_string(allowed) + ":127.0.0.1:" + std::to_string(echo.port())),
                        dir_.path(), "ssh_allowed");
  ASSERT_TRUE(WaitForListener(agent_->process(), allowed)) << ssh.Stderr() << agent_->Log();
  int fd = ConnectTcp(allowed);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(64 << 10, 4)));
  close(fd);
}

TEST_F(RemoteForwardTest, KeyWithoutForwardingIsRefused) {
  StartAgent("restrict");
  EchoServer echo;
  uint16_t port = PickFreePort();
  CommandResult refused =
      RunCommand(Ssh(std::to_string(port) + ":127.0.0.1:" + std::to_string(echo.port())), "",
                 std::chrono::seconds(30));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("remote port forwarding failed"));
  EXPECT_TRUE(agent_->WaitForLog("reason=port-forwarding-disabled")) << agent_->Log();
  EXPECT_LT(ConnectTcp(port), 0);
}

}  // namespace
}  // namespace alknet::testing
