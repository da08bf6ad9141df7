// The forwarding policy (issue 15, ADR 0014) in the real agent with stock ssh: the built-in
// denies, a cidr rule that a host name resolving there cannot bypass, refusals counted by rule.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
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

// Echoes on 127.0.0.2:<ephemeral> (one connection at a time, enough for ssh -W).
class SecondLoopbackEcho {
 public:
  SecondLoopbackEcho() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.2", &addr.sin_addr);
    ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && listen(fd_, 8) == 0;
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (!stop_) {
        int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn < 0) return;
        char buffer[4096];
        ssize_t n;
        while ((n = read(conn, buffer, sizeof(buffer))) > 0) {
          if (write(conn, buffer, static_cast<size_t>(n)) != n) break;
        }
        close(conn);
      }
    });
  }
  ~SecondLoopbackEcho() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  bool ok_ = false;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class ForwardingPolicyTest : public ::testing::Test {
 protected:
  void StartAgent(std::vector<std::string> extra) {
    key_ = MakeKey(dir_, "user_key");
    WriteFile(dir_.File("authorized_keys"), key_.public_line + "\n");
    std::vector<std::string> args = {"--authorized-keys", dir_.File("authorized_keys"), "--log-level",
                                     "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
    agent_ = std::make_unique<AgentProcess>(dir_, args);
    ASSERT_NE(agent_->port(), 0);
  }

  // ssh -W host:port with `input`; ssh's INFO level names an open failure.
  CommandResult StdioForward(const std::string& host, uint16_t port, const std::string& input) {
    std::vector<std::string> argv = SshArgs(agent_->port(), key_);
    for (std::string& arg : argv) {
      if (arg == "LogLevel=ERROR") arg = "LogLevel=INFO";
    }
    argv.insert(argv.end(), {"-W", host + ":" + std::to_string(port), "127.0.0.1"});
    return RunCommand(argv, input);
  }

  std::string Metrics() const {
    const std::string marker = "metrics: listening address=";
    const std::string log = agent_->Log();
    size_t at = log.find(marker);
    if (at == std::string::npos) return "";
    at += marker.size();
    std::string url = log.substr(at, log.find_first_of(" \n", at) - at);
    return RunCommand({"curl", "-sS", "--max-time", "10", url + "/metrics"}).out;
  }

  CommandResult Admin(std::vector<std::string> args, std::string_view input = "") {
    std::vector<std::string> argv = {ALKNET_ADMIN_BINARY, "--socket", dir_.File("state/admin.sock")};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, input, std::chrono::seconds(30));
  }

  TempDir dir_;
  TestKey key_;
  std::unique_ptr<AgentProcess> agent_;
};

// Acceptance 3: with nothing configured, loopback and link-local (cloud metadata) are denied,
// decided before any connect (the literal needs no resolving), counted by rule name.
TEST_F(ForwardingPolicyTest, DefaultRulesDenyLoopbackAndLinkLocalWithoutConnecting) {
  StartAgent({"--forwarding-allow-loopback", "false"});  // AgentProcess lifts it: put it back
  EchoServer echo;
  CommandResult loopback = StdioForward("127.0.0.1", echo.port(), "never echoed");
  EXPECT_NE(loopback.exit_code, 0);
  EXPECT_THAT(loopback.err, HasSubstr("open failed"));
  EXPECT_TRUE(loopback.out.empty());
  EXPECT_EQ(echo.connections(), 0);
  EXPECT_TRUE(agent_->WaitForLog("reason=forwarding-rule:builtin:loopback"));

  CommandResult metadata = StdioForward("169.254.169.254", 80, "GET / HTTP/1.0\r\n\r\n");
  EXPECT_NE(metadata.exit_code, 0);
  EXPECT_THAT(metadata.err, HasSubstr("open failed"));
  EXPECT_TRUE(agent_->WaitForLog("reason=forwarding-rule:builtin:link-local"));
  // No connect was attempted for either (the debug line precedes every outbound connect).
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("channel connecting")));
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("169.254")));

  std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("alknet_rejections_total{reason=\"forwarding_policy\",rule=\"builtin:link-local\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("alknet_rejections_total{reason=\"forwarding_policy\",rule=\"builtin:loopback\"} 1"));
}

// Acceptance 3: a cidr rule applies to the address the name resolves to. The system resolver
// maps "localhost" (and "127.1") to 127.0.0.1 / ::1; the rule denies those, so the names are
// refused, while 127.0.0.2 (outside the rule) still forwards.
TEST_F(ForwardingPolicyTest, CidrRuleAlsoDeniesANameThatResolvesIntoIt) {
  SecondLoopbackEcho second;
  if (!second.ok()) GTEST_SKIP() << "cannot bind 127.0.0.2 on this machine";
  WriteFile(dir_.File("agent.yaml"),
            "forwarding:\n"
            "  rules:\n"
            "    - name: no-first-loopback\n"
            "      action: deny\n"
            "      cidrs: [127.0.0.1/32, '::1/128']\n");
  StartAgent({"--config", dir_.File("agent.yaml")});
  EchoServer echo;  // 127.0.0.1: must never see a connection
  for (const char* name : {"localhost", "127.1"}) {
    SCOPED_TRACE(name);
    CommandResult denied = StdioForward(name, echo.port(), "never echoed");
    EXPECT_NE(denied.exit_code, 0);
    EXPECT_THAT(denied.err, HasSubstr("open failed"));
  }
  EXPECT_EQ(echo.connections(), 0);
  EXPECT_TRUE(agent_->WaitForLog("reason=forwarding-rule:no-first-loopback"));
  CommandResult literal = StdioForward("127.0.0.1", echo.port(), "never echoed");
  EXPECT_NE(literal.exit_code, 0);
  EXPECT_EQ(echo.connections(), 0);

  std::string payload = PatternBytes(256 << 10, 3);
  CommandResult allowed = StdioForward("127.0.0.2", second.port(), payload);
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_TRUE(allowed.out == payload) << "echoed " << allowed.out.size() << " bytes";
  EXPECT_THAT(agent_->Log(), HasSubstr("channel connecting"));  // the debug line the first test relies on
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("localhost")));
  EXPECT_THAT(Metrics(), HasSubstr("rule=\"no-first-loopback\"} 3"));
}

// Acceptance 2: `alknet-admin policy set` changes the rules for the next channel of a session
// that is already open (stock ssh -L: one session, a channel per local connection); a bad rule
// is refused with the field named and nothing is applied. `policy test` names the rule.
TEST_F(ForwardingPolicyTest, PolicySetAppliesToTheNextChannelOfAnOpenSession) {
  StartAgent({});
  EchoServer echo;
  uint16_t local = 0;
  auto ssh = StartLocalForward(agent_->port(), key_, echo.port(), dir_.path(), "ssh_l", &local);
  ASSERT_NE(ssh, nullptr);
  int first = ConnectTcp(local);
  ASSERT_GE(first, 0);
  EXPECT_TRUE(EchoOnce(first, PatternBytes(64 << 10, 4)));
  EXPECT_EQ(echo.connections(), 1);

  WriteFile(dir_.File("bad.yaml"), "forwarding:\n  rules:\n    - name: x\n      action: deny\n"
                                   "      cidrs: [127.0.0.1/40]\n");
  CommandResult bad = Admin({"policy", "set", "forwarding=" + dir_.File("bad.yaml")});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr(dir_.File("bad.yaml") + ":5:"));
  EXPECT_THAT(bad.err, HasSubstr("forwarding.rules[0].cidrs[0]: '127.0.0.1/40'"));
  CommandResult bad_action = Admin({"policy", "set", "forwarding.default_action=maybe", "max_sessions=7"});
  EXPECT_NE(bad_action.exit_code, 0);
  EXPECT_THAT(bad_action.err, HasSubstr("forwarding.default_action: 'maybe' is not an action"));
  CommandResult unchanged = Admin({"policy", "get"});
  EXPECT_THAT(unchanged.out, HasSubstr("rules: []"));
  EXPECT_THAT(unchanged.out, HasSubstr("default_action: allow"));
  EXPECT_THAT(unchanged.out, Not(HasSubstr("max_sessions: 7")));

  WriteFile(dir_.File("rules.yaml"), "forwarding:\n  rules:\n    - name: no-echo\n      action: deny\n"
                                     "      cidrs: [127.0.0.1/32]\n      ports: " +
                                         std::to_string(echo.port()) + "\n");
  CommandResult set = Admin({"policy", "set", "forwarding=" + dir_.File("rules.yaml")});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_THAT(set.out, HasSubstr("name: no-echo"));

  // The open channel keeps working; the next one of the same session is refused.
  EXPECT_TRUE(EchoOnce(first, PatternBytes(16 << 10, 5)));
  int second = ConnectTcp(local);
  ASSERT_GE(second, 0);
  auto [data, closed] = ReadUntilClosed(second, std::chrono::seconds(20));
  EXPECT_TRUE(closed);
  EXPECT_TRUE(data.empty());
  close(second);
  close(first);
  EXPECT_EQ(echo.connections(), 1);
  EXPECT_TRUE(agent_->WaitForLog("reason=forwarding-rule:no-echo"));

  CommandResult test = Admin({"policy", "test", "--key", key_.fingerprint, "--to",
                              "127.0.0.1:" + std::to_string(echo.port())});
  EXPECT_EQ(test.exit_code, 0) << test.err;
  EXPECT_THAT(test.out, HasSubstr("denied: deny by no-echo"));
  CommandResult other = Admin({"policy", "test", "--key", key_.fingerprint, "--to", "169.254.169.254:80"});
  EXPECT_THAT(other.out, HasSubstr("denied: deny by builtin:link-local"));
}

}  // namespace
}  // namespace alknet::testing
