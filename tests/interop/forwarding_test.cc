// The stock OpenSSH client forwards through the real agent: -L, -D with curl, -W, failures,
// many concurrent channels, and a stalled reader that must not grow agent memory.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class ForwardingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = MakeKey(dir_, "user_key");
    WriteFile(dir_.File("authorized_keys"), key_.public_line + "\n");
    agent_ = std::make_unique<AgentProcess>(
        dir_, std::vector<std::string>{"--authorized-keys", dir_.File("authorized_keys")});
    ASSERT_NE(agent_->port(), 0);
  }

  // `ssh -N -L <local>:127.0.0.1:<target>` on a picked port ssh itself listens on.
  std::unique_ptr<BackgroundProcess> StartLocalForwardTo(uint16_t target, const std::string& name,
                                                         uint16_t* local) {
    return StartLocalForward(agent_->port(), key_, target, dir_.path(), name, local);
  }

  // ssh prints "channel N: open failed: ..." at its default INFO level.
  std::vector<std::string> VerboseSshArgs() {
    std::vector<std::string> argv = SshArgs(agent_->port(), key_);
    for (std::string& arg : argv) {
      if (arg == "LogLevel=ERROR") arg = "LogLevel=INFO";
    }
    return argv;
  }

  TempDir dir_;
  TestKey key_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(ForwardingTest, LocalForwardRoundTrips64MiBByteExact) {
  EchoServer echo;
  uint16_t local = 0;
  auto ssh = StartLocalForwardTo(echo.port(), "ssh_l", &local);
  ASSERT_NE(ssh, nullptr);
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(64 << 20, 1)));
  close(fd);
}

TEST_F(ForwardingTest, DynamicForwardServesCurlSocks5Hostname) {
  HttpServer http("hello through alknet\n");
  uint16_t socks = 0;
  auto ssh = StartSshForward(
      agent_->port(), key_, "-D", [](uint16_t port) { return Loopback(port); }, dir_.path(),
      "ssh_d", &socks);
  ASSERT_NE(ssh, nullptr);
  // "localhost" is resolved by the agent (the far side), not by curl.
  CommandResult curl = RunCommand({"curl", "-sS", "--max-time", "20", "--socks5-hostname",
                                   "127.0.0.1:" + std::to_string(socks),
                                   "http://localhost:" + std::to_string(http.port()) + "/"});
  EXPECT_EQ(curl.exit_code, 0) << curl.err;
  EXPECT_EQ(curl.out, "hello through alknet\n");
  // Privacy: the destination name never reaches the agent's log.
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("localhost")));
}

TEST_F(ForwardingTest, StdioForwardCarriesDataBothWays) {
  EchoServer echo;
  std::vector<std::string> argv = SshArgs(agent_->port(), key_);
  argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(echo.port()), "127.0.0.1"});
  std::string payload = PatternBytes(8 << 20, 2);
  CommandResult result = RunCommand(argv, payload);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(result.out == payload) << "echoed " << result.out.size() << " bytes";
}

TEST_F(ForwardingTest, ClosedPortFailsAtChannelOpenNotAfter) {
  uint16_t closed = PickFreePort();
  std::vector<std::string> argv = VerboseSshArgs();
  argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(closed), "127.0.0.1"});
  CommandResult result = RunCommand(argv, "data that must go nowhere");
  EXPECT_NE(result.exit_code, 0);
  // The channel is refused (no open-then-EOF): ssh reports the open failure itself.
  EXPECT_THAT(result.err, HasSubstr("open failed"));
  EXPECT_THAT(result.err, HasSubstr("stdio forwarding failed"));
  EXPECT_TRUE(result.out.empty());
  EXPECT_TRUE(agent_->WaitForLog("reason=connect-refused"));
  EXPECT_THAT(agent_->Log(), Not(HasSubstr(std::to_string(closed))));
}

TEST_F(ForwardingTest, UnknownHostIsReportedAsSuch) {
  std::vector<std::string> argv = VerboseSshArgs();
  argv.insert(argv.end(), {"-W", "no-such-host.invalid:80", "127.0.0.1"});
  CommandResult result = RunCommand(argv);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("open failed"));
  EXPECT_TRUE(agent_->WaitForLog("reason=unknown-host"));
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("no-such-host")));
}

TEST_F(ForwardingTest, ReservedAlknetNamesAreNeverDialled) {
  std::vector<std::string> argv = VerboseSshArgs();
  argv.insert(argv.end(), {"-W", "alknet-admin:22", "127.0.0.1"});
  CommandResult result = RunCommand(argv);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("open failed"));
  EXPECT_TRUE(agent_->WaitForLog("reason=reserved-destination"));
}

TEST_F(ForwardingTest, TwoHundredChannelsOverTwentySessionsAllByteExact) {
  EchoServer echo;
  constexpr int kSessions = 20;
  constexpr int kChannelsPerSession = 10;
  std::vector<uint16_t> ports(kSessions);
  std::vector<std::unique_ptr<BackgroundProcess>> sessions;
  for (int s = 0; s < kSessions; ++s) {
    sessions.push_back(StartLocalForwardTo(echo.port(), "ssh_many_" + std::to_string(s), &ports[s]));
    ASSERT_NE(sessions.back(), nullptr);
  }
  // Each channel's outcome: empty when byte-exact, else what went wrong, so a failure names
  // the channels and the way they failed (connect, short read, wrong bytes).
  std::vector<std::string> problems(kSessions * kChannelsPerSession);
  std::vector<std::thread> channels;
  for (int s = 0; s < kSessions; ++s) {
    for (int c = 0; c < kChannelsPerSession; ++c) {
      channels.emplace_back([&, s, c] {
        std::string& problem = problems[s * kChannelsPerSession + c];
        int fd = ConnectTcp(ports[s]);
        if (fd < 0) {
          problem = std::string("connect: ") + strerror(errno);
          return;
        }
        problem = EchoRoundTripProblem(fd, PatternBytes(256 << 10, s * 100 + c));
        close(fd);
      });
    }
  }
  for (auto& thread : channels) thread.join();
  int exact = 0;
  std::string report;
  for (size_t i = 0; i < problems.size(); ++i) {
    if (problems[i].empty()) {
      ++exact;
      continue;
    }
    size_t s = i / kChannelsPerSession;
    report += "session " + std::to_string(s) + " (port " + std::to_string(ports[s]) + ", ssh " +
              (sessions[s]->running() ? "running" : "exited") + ") channel " +
              std::to_string(i % kChannelsPerSession) + ": " + problems[i] + "\n";
  }
  EXPECT_EQ(exact, kSessions * kChannelsPerSession) << report << agent_->Log();
}

TEST_F(ForwardingTest, ClosedChannelsAreReapedSoTheChannelCapNeverFills) {
  // A second agent with a tiny per-session channel cap: 40 short channels in a row must all work.
  TempDir dir;
  WriteFile(dir.File("authorized_keys"), key_.public_line + "\n");
  AgentProcess capped(dir, {"--authorized-keys", dir.File("authorized_keys"),
                            "--max-channels-per-session", "3"});
  EchoServer echo;
  uint16_t local = 0;
  auto ssh = StartLocalForward(capped.port(), key_, echo.port(), dir.path(), "ssh_short", &local);
  ASSERT_NE(ssh, nullptr);
  int exact = 0;
  for (int i = 0; i < 40; ++i) {
    int fd = ConnectTcp(local);
    ASSERT_GE(fd, 0);
    if (EchoRoundTrip(fd, PatternBytes(4096, i))) ++exact;
    // In a row: the next channel opens once this one has ended (the agent's EOF, sent as it
    // closes the channel). Without the wait a slow agent (ASan, a loaded machine) still holds
    // up to 3 finishing channels when the next opens, and refuses it, as the cap should.
    auto [rest, closed] = ReadUntilClosed(fd, std::chrono::seconds(10));
    EXPECT_TRUE(closed && rest.empty()) << "channel " << i << " did not end cleanly";
    close(fd);
  }
  EXPECT_EQ(exact, 40) << capped.Log();
}

TEST_F(ForwardingTest, StalledReaderDoesNotGrowAgentMemory) {
  SourceServer source;
  std::vector<std::string> argv = SshArgs(agent_->port(), key_);
  argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(source.port()), "127.0.0.1"});
  // ssh's stdout is a file it can write; stopping ssh makes the whole client side stall.
  BackgroundProcess ssh(argv, dir_.path(), "ssh_stall");
  for (int i = 0; i < 500 && source.bytes_sent() < (4u << 20); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GT(source.bytes_sent(), 0u) << ssh.Stderr() << agent_->Log();
  ssh.Signal(SIGSTOP);
  // Let every buffer on the path fill up, then watch: nothing may keep growing.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  uint64_t sent_before = source.bytes_sent();
  long rss_before = agent_->RssKb();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  uint64_t sent_after = source.bytes_sent();
  long rss_after = agent_->RssKb();
  ssh.Signal(SIGCONT);
  // Backpressure reached the source: at most a few socket buffers more were accepted.
  EXPECT_LT(sent_after - sent_before, 8u << 20) << "source kept sending while the client stalled";
  // The agent holds at most the SSH window plus socket buffers for the stalled channel.
  EXPECT_LT(rss_after - rss_before, 16 * 1024) << "agent RSS grew from " << rss_before << " KiB";
  EXPECT_LT(rss_after, 128 * 1024) << "agent RSS " << rss_after << " KiB";
}

}  // namespace
}  // namespace alknet::testing
