// Per-source penalties against the real agent and stock ssh (issue 15, acceptance 1): failed
// auths, grace time and TLS probes from 127.0.0.2 get it refused before the banner while
// 127.0.0.3 logs in; the penalty runs down; a full table follows the documented rule.
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

class PenaltiesTest : public ::testing::Test {
 protected:
  void StartAgent(std::vector<std::string> extra) {
    key_ = MakeKey(dir_, "user_key");
    stranger_ = MakeKey(dir_, "stranger_key");
    WriteFile(dir_.File("authorized_keys"), key_.public_line + "\n");
    extra.insert(extra.end(), {"--authorized-keys", dir_.File("authorized_keys"), "--penalties", "true"});
    agent_ = std::make_unique<AgentProcess>(dir_, extra);
    ASSERT_NE(agent_->port(), 0);
  }

  std::vector<std::string> Ssh(const TestKey& key, const char* source) {
    std::vector<std::string> argv = SshArgs(agent_->port(), key);
    argv.insert(argv.end(), {"-b", source});
    return argv;
  }

  // An ssh login from `source` with an unknown key: fails authentication.
  void FailAuth(const char* source) {
    std::vector<std::string> argv = Ssh(stranger_, source);
    argv.insert(argv.end(), {"127.0.0.1", "true"});
    CommandResult result = RunCommand(argv);
    EXPECT_NE(result.exit_code, 0);
    EXPECT_THAT(result.err, HasSubstr("Permission denied"));
  }

  // A real login from `source` that relays a line through -W to the echo server.
  bool LogsIn(const char* source) {
    std::vector<std::string> argv = Ssh(key_, source);
    argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(echo_.port()), "127.0.0.1"});
    return RunCommand(argv, "hello\n").out == "hello\n";
  }

  // Connects from `source`: true when the agent closes it without sending a byte (refused at
  // accept); false when anything arrives (the banner) or it stays open.
  bool RefusedBeforeBanner(const char* source) {
    int fd = ConnectTcp(agent_->port(), source);
    if (fd < 0) return false;
    auto [received, closed] = ReadUntilClosed(fd, std::chrono::seconds(3));
    close(fd);
    return closed && received.empty();
  }

  // The penalty lands when the agent sees the connection end, just after ssh exits: poll.
  bool RefusedEventually(const char* source) {
    for (int attempt = 0; attempt < 30; ++attempt) {
      if (RefusedBeforeBanner(source)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  TempDir dir_;
  TestKey key_;
  TestKey stranger_;
  EchoServer echo_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(PenaltiesTest, FailedAuthsGetTheSourceRefusedBeforeTheBannerUntilItRunsDown) {
  // One failure (8 s) stays under min (10 s); two reach it, capped at max (12 s).
  StartAgent({"--penalty-authfail", "8s", "--penalty-min", "10s", "--penalty-max", "12s"});
  FailAuth("127.0.0.2");
  ASSERT_FALSE(RefusedBeforeBanner("127.0.0.2")) << "one failure must stay under min";
  // That connection left without authenticating: noauth adds 1 s (default).
  FailAuth("127.0.0.2");
  ASSERT_TRUE(RefusedEventually("127.0.0.2"));
  auto penalised_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(LogsIn("127.0.0.3"));
  EXPECT_TRUE(agent_->WaitForLog("transport=tcp reason=penalty"));
  EXPECT_THAT(agent_->Log(), HasSubstr("connection refused src=127.0.0.2"));
  // The shipped fail2ban filter matches the failed logins, never the refusal line.
  if (HaveProgram("fail2ban-regex")) {
    WriteFile(dir_.File("agent.log"), agent_->Log());
    CommandResult matched =
        RunCommand({"fail2ban-regex", "-o", "msg", dir_.File("agent.log"),
                    std::string(ALKNET_SOURCE_DIR) + "/deploy/fail2ban/filter.d/alknet.conf"});
    EXPECT_THAT(matched.out, HasSubstr("result=rejected"));
    EXPECT_THAT(matched.out, ::testing::Not(HasSubstr("reason=penalty")));
  }
  // Wait at least max (12 s) from the last penalty: it has run down.
  std::this_thread::sleep_until(penalised_at + std::chrono::milliseconds(12500));
  EXPECT_FALSE(RefusedBeforeBanner("127.0.0.2"));
  EXPECT_TRUE(LogsIn("127.0.0.2"));
}

TEST_F(PenaltiesTest, LoginGraceExceededPenalisesTheSource) {
  StartAgent({"--login-grace-time", "1s", "--penalty-grace-exceeded", "30s"});
  int fd = ConnectTcp(agent_->port(), "127.0.0.2");
  ASSERT_GE(fd, 0);
  auto [received, closed] = ReadUntilClosed(fd, std::chrono::seconds(20));
  close(fd);
  ASSERT_TRUE(closed);
  EXPECT_THAT(received, HasSubstr("SSH-2.0-"));
  EXPECT_TRUE(RefusedEventually("127.0.0.2"));
  EXPECT_TRUE(LogsIn("127.0.0.3"));
}

TEST_F(PenaltiesTest, ExemptSourceIsNeverRefused) {
  StartAgent({"--penalty-authfail", "30s", "--penalty-exempt", "127.0.0.2"});
  FailAuth("127.0.0.2");
  FailAuth("127.0.0.2");
  EXPECT_TRUE(LogsIn("127.0.0.2"));
}

// The documented overflow rule (permissive, as sshd): with the table full, a new source's
// penalty goes unrecorded; the sources already in it stay refused.
TEST_F(PenaltiesTest, FullTableLeavesTheThirdSourceUnpenalised) {
  StartAgent({"--penalty-authfail", "30s", "--penalty-max-sources", "2"});
  FailAuth("127.0.0.2");
  ASSERT_TRUE(RefusedEventually("127.0.0.2"));
  FailAuth("127.0.0.3");
  ASSERT_TRUE(RefusedEventually("127.0.0.3"));
  FailAuth("127.0.0.4");
  FailAuth("127.0.0.4");
  EXPECT_TRUE(LogsIn("127.0.0.4"));
  EXPECT_TRUE(RefusedBeforeBanner("127.0.0.2"));
  EXPECT_TRUE(RefusedBeforeBanner("127.0.0.3"));
}

// deny-all: with the table full, everyone not exempt is refused until an entry expires.
TEST_F(PenaltiesTest, FullTableDenyAllRefusesEveryoneElse) {
  StartAgent({"--penalty-authfail", "30s", "--penalty-max-sources", "2", "--penalty-overflow",
              "deny-all", "--penalty-exempt", "127.0.0.9"});
  FailAuth("127.0.0.2");
  ASSERT_TRUE(RefusedEventually("127.0.0.2"));
  FailAuth("127.0.0.3");
  ASSERT_TRUE(RefusedEventually("127.0.0.3"));
  EXPECT_TRUE(LogsIn("127.0.0.4"));  // not full yet: a login adds nothing
  FailAuth("127.0.0.4");
  EXPECT_TRUE(RefusedEventually("127.0.0.5"));
  EXPECT_TRUE(agent_->WaitForLog("reason=penalty-table-full"));
  EXPECT_TRUE(LogsIn("127.0.0.9"));
}

// `alknet-admin penalties list|clear` see and lift a penalty at once.
TEST_F(PenaltiesTest, AdminClearLiftsThePenaltyAtOnce) {
  StartAgent({"--penalty-authfail", "10m", "--penalty-max", "10m"});
  FailAuth("127.0.0.2");
  ASSERT_TRUE(RefusedEventually("127.0.0.2"));
  const std::string socket = dir_.File("state/admin.sock");
  CommandResult list = RunCommand({ALKNET_ADMIN_BINARY, "--socket", socket, "penalties", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("127.0.0.2/32"));
  EXPECT_THAT(list.out, HasSubstr("refused"));
  // The last event is the failed login, or noauth when a RefusedEventually probe got in (and
  // left without authenticating) before the agent had recorded that login's end.
  EXPECT_THAT(list.out, ContainsRegex("refused +(authfail|noauth)"));
  CommandResult bad = RunCommand({ALKNET_ADMIN_BINARY, "--socket", socket, "penalties", "clear", "nope"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("source:"));
  CommandResult clear =
      RunCommand({ALKNET_ADMIN_BINARY, "--socket", socket, "penalties", "clear", "127.0.0.2"});
  EXPECT_EQ(clear.exit_code, 0) << clear.err;
  EXPECT_THAT(clear.out, HasSubstr("cleared 1 source(s)"));
  EXPECT_TRUE(LogsIn("127.0.0.2"));
}

// The Policy service's penalties section (PolicySpec field 2): `policy set penalties.*` applies
// to the next failed login at once, a bad value is refused naming the field with nothing
// changed, and the setting survives a restart.
TEST_F(PenaltiesTest, PolicySetChangesPenaltiesLiveAndTheyPersist) {
  StartAgent({});
  const std::string socket = dir_.File("state/admin.sock");
  auto admin = [&](std::vector<std::string> words) {
    words.insert(words.begin(), {ALKNET_ADMIN_BINARY, "--socket", socket});
    return RunCommand(words);
  };
  CommandResult set = admin({"policy", "set", "penalties.authfail=1m", "penalties.exempt=127.0.0.3"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  FailAuth("127.0.0.2");  // one failure: 1m reaches min (15s) at once
  ASSERT_TRUE(RefusedEventually("127.0.0.2"));
  FailAuth("127.0.0.3");
  FailAuth("127.0.0.3");
  EXPECT_TRUE(LogsIn("127.0.0.3"));  // exempt

  CommandResult before = admin({"policy", "get"});
  CommandResult bad = admin({"policy", "set", "penalties.min=forever", "penalties.noauth=9s"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("penalties.min"));
  bad = admin({"policy", "set", "penalties.max_sources=lots"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("penalties.max_sources: 'lots' is not a 32-bit integer"));
  CommandResult after = admin({"policy", "get"});
  EXPECT_EQ(after.out, before.out);
  EXPECT_THAT(after.out, HasSubstr("penalties:\n  enabled: true\n  authfail: 1m\n  noauth: 1s\n"));
  EXPECT_THAT(after.out, HasSubstr("  exempt: 127.0.0.3/32\n"));

  agent_.reset();
  agent_ = std::make_unique<AgentProcess>(
      dir_, std::vector<std::string>{"--authorized-keys", dir_.File("authorized_keys"), "--penalties", "true"});
  ASSERT_NE(agent_->port(), 0);
  EXPECT_EQ(admin({"policy", "get"}).out, after.out);
}

// probe: web traffic on a tls:// listener (the stealth answers it) penalises the source; the
// next connection from it is closed before the TLS handshake, any listener.
TEST_F(PenaltiesTest, TlsProbeGetsTheSourceRefusedBeforeTheHandshake) {
  if (!HaveProgram("curl")) GTEST_SKIP() << "curl not installed";
  StartAgent({"--listen", "tls://127.0.0.1:0", "--penalty-probe", "30s"});
  const std::string marker = "listening address=tls://127.0.0.1:";
  ASSERT_TRUE(agent_->WaitForLog(marker));
  std::string log = agent_->Log();
  uint16_t tls_port = static_cast<uint16_t>(std::atoi(log.c_str() + log.find(marker) + marker.size()));
  CommandResult curl = RunCommand({"curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                                   "--max-time", "10", "--interface", "127.0.0.2",
                                   "https://127.0.0.1:" + std::to_string(tls_port) + "/"});
  EXPECT_EQ(curl.out, "404");
  ASSERT_TRUE(RefusedEventually("127.0.0.2"));  // the SSH listener refuses it too
  int fd = ConnectTcp(tls_port, "127.0.0.2");
  ASSERT_GE(fd, 0);
  auto [received, closed] = ReadUntilClosed(fd, std::chrono::seconds(3));
  close(fd);
  EXPECT_TRUE(closed);
  EXPECT_TRUE(received.empty());
  EXPECT_TRUE(LogsIn("127.0.0.3"));
}

}  // namespace
}  // namespace alknet::testing
