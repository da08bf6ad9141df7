// Pre-auth bounds and shutdown against the real agent: login grace time, unauthenticated
// connection caps (global and per source), and SIGTERM draining within its deadline.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;

// Reads until the peer closes or `timeout` passes; returns what arrived and whether it closed.
std::pair<std::string, bool> ReadUntilClosed(int fd, std::chrono::milliseconds timeout) {
  std::string received;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) return {received, true};
    received.append(buffer, static_cast<size_t>(n));
  }
  return {received, false};
}

// Connects and waits for the SSH banner: the connection was admitted and now sits pre-auth.
int IdlePreAuthConnection(uint16_t port, const char* source_ip) {
  int fd = ConnectTcp(port, source_ip);
  if (fd < 0) return -1;
  pollfd pfd{fd, POLLIN, 0};
  char buffer[256];
  if (poll(&pfd, 1, 5000) <= 0 || read(fd, buffer, sizeof(buffer)) <= 0) {
    close(fd);
    return -1;
  }
  return fd;
}

class LimitsTest : public ::testing::Test {
 protected:
  void StartAgent(std::vector<std::string> extra) {
    key_ = MakeKey(dir_, "user_key");
    WriteFile(dir_.File("authorized_keys"), key_.public_line + "\n");
    extra.insert(extra.end(), {"--authorized-keys", dir_.File("authorized_keys")});
    agent_ = std::make_unique<AgentProcess>(dir_, extra);
    ASSERT_NE(agent_->port(), 0);
  }

  CommandResult Echo(const std::string& payload) {
    std::vector<std::string> argv = SshArgs(agent_->port(), key_);
    argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(echo_.port()), "127.0.0.1"});
    return RunCommand(argv, payload);
  }

  TempDir dir_;
  TestKey key_;
  EchoServer echo_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(LimitsTest, SilentClientIsDroppedAtLoginGraceTime) {
  StartAgent({"--login-grace-time", "1s"});
  int fd = ConnectTcp(agent_->port());
  ASSERT_GE(fd, 0);
  auto [received, closed] = ReadUntilClosed(fd, std::chrono::seconds(20));
  close(fd);
  EXPECT_TRUE(closed);
  EXPECT_THAT(received, HasSubstr("SSH-2.0-"));
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=login-grace-timeout method=none"));
}

TEST_F(LimitsTest, PerSourceCapRefusesTheFloodWhileOthersGetIn) {
  StartAgent({"--max-startups", "50", "--per-source-max-startups", "3"});
  std::vector<int> flood;
  for (int i = 0; i < 3; ++i) {
    int fd = IdlePreAuthConnection(agent_->port(), "127.0.0.2");
    ASSERT_GE(fd, 0) << agent_->Log();
    flood.push_back(fd);
  }
  // The fourth from the same source is closed before any SSH byte.
  int extra = ConnectTcp(agent_->port(), "127.0.0.2");
  ASSERT_GE(extra, 0);
  auto [received, closed] = ReadUntilClosed(extra, std::chrono::seconds(10));
  close(extra);
  EXPECT_TRUE(closed);
  EXPECT_EQ(received, "");
  EXPECT_TRUE(agent_->WaitForLog("src=127.0.0.2"));
  EXPECT_THAT(agent_->Log(), HasSubstr("reason=per-source-max-startups"));
  // A user from another address still gets in and forwards.
  CommandResult result = Echo("still in\n");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "still in\n");
  for (int fd : flood) close(fd);
}

TEST_F(LimitsTest, GlobalCapDoesNotTouchAuthenticatedSessions) {
  StartAgent({"--max-startups", "3", "--per-source-max-startups", "3"});
  // An authenticated session with a forward is up before the flood...
  uint16_t local = 0;
  auto ssh = StartLocalForward(agent_->port(), key_, echo_.port(), dir_.path(), "ssh_l", &local);
  ASSERT_NE(ssh, nullptr);
  std::vector<int> flood;
  for (int i = 0; i < 3; ++i) {
    int fd = IdlePreAuthConnection(agent_->port(), "127.0.0.3");
    ASSERT_GE(fd, 0);
    flood.push_back(fd);
  }
  int refused = ConnectTcp(agent_->port(), "127.0.0.4");
  auto [received, closed] = ReadUntilClosed(refused, std::chrono::seconds(10));
  close(refused);
  EXPECT_TRUE(closed);
  EXPECT_EQ(received, "");
  EXPECT_TRUE(agent_->WaitForLog("reason=max-startups"));
  // ...and keeps opening channels while the cap is full.
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 7)));
  close(fd);
  // Once the flood leaves, new users get in again.
  for (int flood_fd : flood) close(flood_fd);
  bool admitted = false;
  for (int attempt = 0; attempt < 50 && !admitted; ++attempt) {
    admitted = Echo("back\n").out == "back\n";
    if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(admitted);
}

TEST_F(LimitsTest, SigtermWithActiveChannelsExitsWithinTheDrainDeadline) {
  SourceServer source;
  StartAgent({"--shutdown-grace", "2s"});
  std::vector<std::string> argv = SshArgs(agent_->port(), key_);
  argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(source.port()), "127.0.0.1"});
  BackgroundProcess ssh(argv, dir_.path(), "ssh_busy");
  for (int i = 0; i < 500 && source.bytes_sent() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GT(source.bytes_sent(), 0u);
  agent_->process().Signal(SIGTERM);
  // Exits on its own (bounded wait so a hang fails instead of blocking the suite).
  std::optional<int> exit_code = agent_->process().Wait(std::chrono::seconds(20));
  ASSERT_TRUE(exit_code.has_value()) << "agent still running after SIGTERM";
  EXPECT_EQ(*exit_code, 0);
  EXPECT_THAT(agent_->Log(), HasSubstr("stopped accepting; draining"));
  EXPECT_THAT(agent_->Log(), HasSubstr("engine: stopped disconnected_at_deadline=1"));
  // The client saw the session end.
  EXPECT_TRUE(ssh.Wait(std::chrono::seconds(10)).has_value());
}

TEST_F(LimitsTest, SigtermWithIdleSessionsExitsPromptly) {
  StartAgent({"--shutdown-grace", "30s"});
  uint16_t local = 0;
  auto ssh = StartLocalForward(agent_->port(), key_, echo_.port(), dir_.path(), "ssh_idle", &local);
  ASSERT_NE(ssh, nullptr);
  agent_->process().Signal(SIGTERM);
  // No open channels: nothing to drain, so the 30 s grace is not waited out.
  std::optional<int> exit_code = agent_->process().Wait(std::chrono::seconds(10));
  ASSERT_TRUE(exit_code.has_value()) << agent_->Log();
  EXPECT_EQ(*exit_code, 0);
  EXPECT_THAT(agent_->Log(), HasSubstr("engine: stopped disconnected_at_deadline=0"));
  EXPECT_TRUE(ssh->Wait(std::chrono::seconds(10)).has_value());
}

}  // namespace
}  // namespace alknet::testing
