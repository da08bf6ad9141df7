// Limits against the real agent: login grace time, unauthenticated connection caps (global and
// per source), the session and per-session channel caps, the outbound connect timeout, and
// SIGTERM draining within its deadline.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
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

  // Retries `Echo` for a while: a freed session slot or channel is seen once the agent has
  // noticed the other end go away.
  bool EchoEventually(const std::string& payload) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (Echo(payload).out == payload) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
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

// max_sessions: the sessions under the cap are served, the one over it is closed before any SSH
// byte, and once a session ends the slot is free again.
TEST_F(LimitsTest, SessionOverMaxSessionsIsRefusedWhileTheOthersWork) {
  StartAgent({"--max-sessions", "2"});
  uint16_t local[2] = {0, 0};
  std::unique_ptr<BackgroundProcess> held[2];
  for (int i = 0; i < 2; ++i) {
    held[i] = StartLocalForward(agent_->port(), key_, echo_.port(), dir_.path(),
                                "ssh_held_" + std::to_string(i), &local[i]);
    ASSERT_NE(held[i], nullptr) << agent_->Log();
  }
  CommandResult over = Echo("over the cap\n");
  EXPECT_EQ(over.exit_code, 255) << over.err;
  EXPECT_EQ(over.out, "");
  EXPECT_TRUE(agent_->WaitForLog("reason=max-sessions")) << agent_->Log();
  // The two sessions under the cap keep forwarding.
  for (uint16_t port : local) {
    int fd = ConnectTcp(port);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(64 << 10, port)));
    close(fd);
  }
  // One leaves: the next one gets in.
  held[0].reset();
  EXPECT_TRUE(EchoEventually("freed slot\n")) << agent_->Log();
}

// max_channels_per_session: with two channels open, the third of the same session is refused
// (ssh closes the local connection), the two keep working, and closing one frees its slot.
TEST_F(LimitsTest, ChannelOverMaxChannelsPerSessionIsRefusedWhileTheOthersWork) {
  StartAgent({"--max-channels-per-session", "2"});
  uint16_t local = 0;
  auto ssh = StartLocalForward(agent_->port(), key_, echo_.port(), dir_.path(), "ssh_l", &local);
  ASSERT_NE(ssh, nullptr) << agent_->Log();
  int open[2];
  for (int& fd : open) {
    fd = ConnectTcp(local);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(EchoOnce(fd, "open\n")) << agent_->Log();  // the channel is up, and stays up
  }
  int over = ConnectTcp(local);
  ASSERT_GE(over, 0);
  send(over, "over\n", 5, MSG_NOSIGNAL);
  auto [received, closed] = ReadUntilClosed(over, std::chrono::seconds(20));
  close(over);
  EXPECT_TRUE(closed) << "the channel over the cap was neither refused nor served";
  EXPECT_EQ(received, "");
  EXPECT_TRUE(agent_->WaitForLog("reason=too-many-channels")) << agent_->Log();
  for (int fd : open) EXPECT_TRUE(EchoOnce(fd, "still open\n"));
  // One closes: a new channel in the same session gets through.
  close(open[0]);
  bool admitted = false;
  for (int attempt = 0; attempt < 50 && !admitted; ++attempt) {
    int fd = ConnectTcp(local);
    ASSERT_GE(fd, 0);
    admitted = EchoOnce(fd, "freed channel\n");
    close(fd);
    if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(admitted) << agent_->Log();
  close(open[1]);
}

// connect_timeout: a direct-tcpip connect to a destination that never answers (SYNs dropped)
// is given up after the configured time, not before, and refused as a timeout. The configured
// 12 s is above the 10 s default, so an agent that used the default would fail the lower
// bound too; one that never gave up would leave ssh hanging into the 60 s safety cap.
TEST_F(LimitsTest, ConnectToABlackholeGivesUpAtTheConfiguredTimeout) {
  BlackholeServer hole;
  ASSERT_TRUE(hole.ok()) << "a connect to a full backlog-0 listener did not hang here";
  StartAgent({"--connect-timeout", "12s"});
  std::vector<std::string> argv = SshArgs(agent_->port(), key_);
  for (std::string& arg : argv) {
    if (arg == "LogLevel=ERROR") arg = "LogLevel=INFO";  // ssh reports "open failed" at INFO
  }
  argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(hole.port()), "127.0.0.1"});
  auto start = std::chrono::steady_clock::now();
  CommandResult result = RunCommand(argv, "", std::chrono::seconds(60));
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(result.timed_out) << "the connect was never given up";
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("open failed"));
  EXPECT_GE(waited, std::chrono::seconds(12)) << "gave up before the configured connect_timeout";
  EXPECT_TRUE(agent_->WaitForLog("reason=connect-timeout")) << agent_->Log();
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
