// The forwarding policy (ADR 0014): rule parsing, first match, built-in denies, the two-phase
// evaluation, the `forwarding:` YAML section and the connector's per-address check.
#include "server/forward/forwarding_rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <future>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/config/config.h"
#include "server/config/config_schema.h"
#include "server/config/config_yaml.h"
#include "server/forward/outbound_connector.h"
#include "server/forward/resolver.h"
#include "server/loop/event_loop.h"

namespace alknet::fwd {
namespace {

using ::testing::HasSubstr;

ForwardRule Rule(std::vector<std::pair<std::string, std::string>> fields) {
  ForwardRule rule;
  for (const auto& [key, value] : fields) {
    absl::Status status = SetRuleField(rule, key, value);
    EXPECT_TRUE(status.ok()) << key << "=" << value << ": " << status;
  }
  return rule;
}

ForwardRequest Request(std::string_view host, uint16_t port, uint8_t direction = kLocal) {
  return ForwardRequest{.host = host, .port = port, .key_fingerprint = "SHA256:abc",
                        .transport = kTcp, .direction = direction};
}

IpAddress Ip(std::string_view text) { return *IpAddress::Parse(text); }

TEST(ForwardingRulesTest, CidrParsingAndMatching) {
  Cidr ten = *Cidr::Parse("10.0.0.0/8");
  EXPECT_TRUE(ten.Contains(Ip("10.255.1.2")));
  EXPECT_FALSE(ten.Contains(Ip("11.0.0.1")));
  // An IPv4-mapped IPv6 address is the IPv4 address: no bypass through ::ffff:10.x.
  EXPECT_TRUE(ten.Contains(Ip("::ffff:10.1.2.3")));
  EXPECT_TRUE(Cidr::Parse("::ffff:10.0.0.0/104")->Contains(Ip("10.9.9.9")));
  EXPECT_TRUE(Cidr::Parse("fe80::/10")->Contains(Ip("fe80::1")));
  EXPECT_FALSE(Cidr::Parse("fe80::/10")->Contains(Ip("fec0::1")));
  EXPECT_TRUE(Cidr::Parse("1.2.3.4")->Contains(Ip("1.2.3.4")));   // a bare address is a /32
  EXPECT_FALSE(Cidr::Parse("1.2.3.4")->Contains(Ip("1.2.3.5")));
  EXPECT_TRUE(Cidr::Parse("10.1.2.3/8")->Contains(Ip("10.200.0.0")));  // host bits cleared
  EXPECT_TRUE(Cidr::Parse("0.0.0.0/0")->Contains(Ip("8.8.8.8")));
  EXPECT_FALSE(Cidr::Parse("0.0.0.0/0")->Contains(Ip("::1")));
  for (const char* bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "::/129", "x", "", "10.0.0.0/-1",
                          "::ffff:1.2.3.4/95"}) {
    EXPECT_FALSE(Cidr::Parse(bad).ok()) << bad;
  }
}

TEST(ForwardingRulesTest, FieldErrorsNameTheValue) {
  ForwardRule rule;
  EXPECT_THAT(SetRuleField(rule, "cidrs", "10.0.0.0/40").message(), HasSubstr("'10.0.0.0/40'"));
  EXPECT_THAT(SetRuleField(rule, "ports", "0").message(), HasSubstr("not a port"));
  EXPECT_THAT(SetRuleField(rule, "ports", "90-80").message(), HasSubstr("not a port"));
  EXPECT_THAT(SetRuleField(rule, "action", "maybe").message(), HasSubstr("allow or deny"));
  EXPECT_THAT(SetRuleField(rule, "keys", "MD5:aa").message(), HasSubstr("SHA256:"));
  EXPECT_THAT(SetRuleField(rule, "transports", "udp").message(), HasSubstr("tcp, tls, quic"));
  EXPECT_THAT(SetRuleField(rule, "direction", "up").message(), HasSubstr("local, remote"));
  EXPECT_THAT(SetRuleField(rule, "name", "has space").message(), HasSubstr("rule name"));
  EXPECT_TRUE(SetRuleField(rule, "ports", "8000-8100").ok());
  EXPECT_EQ(RuleFieldText(rule, "ports"), std::vector<std::string>{"8000-8100"});
}

TEST(ForwardingRulesTest, FirstMatchWinsThenTheDefault) {
  ForwardingPolicy policy;
  policy.default_rules = false;
  policy.default_allow = false;
  policy.rules = {Rule({{"name", "web"}, {"action", "allow"}, {"hosts", "*.Example.COM"}, {"ports", "443"}}),
                  Rule({{"name", "no-example"}, {"action", "deny"}, {"hosts", "*.example.com"}}),
                  Rule({{"name", "any-https"}, {"action", "allow"}, {"ports", "443"}})};
  CompiledPolicy compiled(policy);
  Decision d = DecideByName(compiled, Request("WWW.example.com.", 443));
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.RuleName(), "web");
  d = DecideByName(compiled, Request("www.example.com", 80));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.RuleName(), "no-example");
  d = DecideByName(compiled, Request("other.org", 443));
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.RuleName(), "any-https");
  d = DecideByName(compiled, Request("other.org", 22));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.RuleName(), "default");
}

TEST(ForwardingRulesTest, KeyRoleTransportAndDirectionMatch) {
  ForwardingPolicy policy;
  policy.default_rules = false;
  policy.rules = {Rule({{"name", "ops"}, {"action", "allow"}, {"roles", "ops"}}),
                  Rule({{"name", "one-key"}, {"action", "allow"}, {"keys", "SHA256:good"}}),
                  Rule({{"name", "tls-only"}, {"action", "allow"}, {"transports", "tls"}}),
                  Rule({{"name", "no-remote"}, {"action", "deny"}, {"direction", "remote"}}),
                  Rule({{"name", "rest"}, {"action", "deny"}})};
  CompiledPolicy compiled(policy);
  std::vector<std::string> roles = {"dev", "ops"};
  ForwardRequest request = Request("h", 1);
  EXPECT_EQ(DecideByName(compiled, request).RuleName(), "rest");
  request.roles = &roles;
  EXPECT_EQ(DecideByName(compiled, request).RuleName(), "ops");
  request.roles = nullptr;
  request.key_fingerprint = "SHA256:good";
  EXPECT_EQ(DecideByName(compiled, request).RuleName(), "one-key");
  request.key_fingerprint = "SHA256:other";
  request.transport = kTls;
  EXPECT_EQ(DecideByName(compiled, request).RuleName(), "tls-only");
  request.transport = kTcp;
  request.direction = kRemote;
  EXPECT_EQ(DecideByName(compiled, request).RuleName(), "no-remote");
}

TEST(ForwardingRulesTest, BuiltinsDenyLinkLocalLoopbackAndSelf) {
  ForwardingPolicy policy;  // nothing configured
  policy.self_rules.push_back(*SelfRule("builtin:metrics", "192.0.2.7", 9464));
  CompiledPolicy compiled(policy);
  EXPECT_EQ(DecideByName(compiled, Request("169.254.169.254", 80)).RuleName(), "builtin:link-local");
  EXPECT_FALSE(DecideByName(compiled, Request("169.254.169.254", 80)).allow);
  EXPECT_FALSE(DecideByName(compiled, Request("fe80::1", 80)).allow);
  EXPECT_EQ(DecideByName(compiled, Request("127.0.0.1", 22)).RuleName(), "builtin:loopback");
  EXPECT_FALSE(DecideByName(compiled, Request("::1", 22)).allow);
  EXPECT_FALSE(DecideByName(compiled, Request("::ffff:127.0.0.1", 22)).allow);
  EXPECT_FALSE(DecideByName(compiled, Request("0.0.0.0", 22)).allow);
  EXPECT_EQ(DecideByName(compiled, Request("192.0.2.7", 9464)).RuleName(), "builtin:metrics");
  EXPECT_TRUE(DecideByName(compiled, Request("192.0.2.7", 9465)).allow);
  EXPECT_TRUE(DecideByName(compiled, Request("203.0.113.1", 443)).allow);
  // -R binds loopback by default: the built-ins are for the local direction only.
  EXPECT_TRUE(DecideByName(compiled, Request("127.0.0.1", 8080, kRemote)).allow);

  policy.allow_loopback = true;
  CompiledPolicy lifted(policy);
  EXPECT_TRUE(DecideByName(lifted, Request("127.0.0.1", 22)).allow);
  EXPECT_FALSE(DecideByName(lifted, Request("169.254.169.254", 80)).allow);
  EXPECT_FALSE(DecideByName(lifted, Request("192.0.2.7", 9464)).allow);

  // An operator rule before the built-ins allows a link-local address explicitly.
  policy.rules = {Rule({{"name", "metadata-ok"}, {"action", "allow"}, {"cidrs", "169.254.169.254/32"}})};
  EXPECT_TRUE(DecideByName(CompiledPolicy(policy), Request("169.254.169.254", 80)).allow);
  policy.rules.clear();
  policy.default_rules = false;
  EXPECT_TRUE(DecideByName(CompiledPolicy(policy), Request("169.254.169.254", 80)).allow);
}

TEST(ForwardingRulesTest, NamesAreDecidedPerResolvedAddress) {
  ForwardingPolicy policy;
  policy.rules = {Rule({{"name", "no-ten"}, {"action", "deny"}, {"cidrs", "10.0.0.0/8"}}),
                  Rule({{"name", "bad-name"}, {"action", "deny"}, {"hosts", "evil.*"}})};
  CompiledPolicy compiled(policy);
  // A name cannot be decided by a cidr rule before it is resolved...
  Decision name = DecideByName(compiled, Request("intranet.example", 80));
  EXPECT_TRUE(name.allow);
  EXPECT_TRUE(name.needs_address);
  // ...then each address it resolves to is checked (the same name, two answers: rebinding).
  EXPECT_EQ(DecideAddress(compiled, Request("intranet.example", 80), Ip("10.1.2.3")).RuleName(), "no-ten");
  EXPECT_TRUE(DecideAddress(compiled, Request("intranet.example", 80), Ip("203.0.113.9")).allow);
  EXPECT_EQ(DecideAddress(compiled, Request("intranet.example", 80), Ip("::ffff:10.0.0.1")).RuleName(),
            "no-ten");
  // The built-ins are cidr rules too: a name resolving to loopback is denied.
  EXPECT_EQ(DecideAddress(compiled, Request("localhost", 80), Ip("127.0.0.1")).RuleName(),
            "builtin:loopback");
  // A host pattern applies to the name as requested.
  EXPECT_EQ(DecideAddress(compiled, Request("evil.example", 80), Ip("203.0.113.9")).RuleName(), "bad-name");
  // An IP literal is decided in the name phase, with no resolving.
  Decision literal = DecideByName(compiled, Request("10.9.8.7", 80));
  EXPECT_FALSE(literal.allow);
  EXPECT_FALSE(literal.needs_address);
}

TEST(ForwardingRulesTest, YamlSectionRoundTripsAndNamesTheBadField) {
  config::AgentConfig config;
  ASSERT_TRUE(config::ApplyYaml("forwarding:\n"
                                "  default_action: deny\n"
                                "  allow_loopback: true\n"
                                "  rules:\n"
                                "    - name: web\n"
                                "      action: allow\n"
                                "      hosts: ['*.example.com']\n"
                                "      ports: 443\n"
                                "    - name: lan\n"
                                "      action: deny\n"
                                "      cidrs: [10.0.0.0/8, 'fd00::/8']\n"
                                "      direction: local\n"
                                "      transports: [tcp, tls]\n",
                                "agent.yaml", config)
                  .ok());
  EXPECT_FALSE(config.forwarding.default_allow);
  EXPECT_TRUE(config.forwarding.allow_loopback);
  ASSERT_EQ(config.forwarding.rules.size(), 2u);
  EXPECT_EQ(config.forwarding.rules[1].cidrs.size(), 2u);
  // --print-config's YAML reads back to the same config.
  config::AgentConfig again;
  ASSERT_TRUE(config::ApplyYaml(config::ToYaml(config), "printed", again).ok()) << config::ToYaml(config);
  EXPECT_EQ(again.forwarding, config.forwarding);

  config::AgentConfig bad;
  absl::Status status = config::ApplyYaml("forwarding:\n  rules:\n    - name: a\n      action: deny\n"
                                          "    - name: b\n      action: deny\n"
                                          "      cidrs: [10.0.0.0/8, 10.0.0.0/99]\n",
                                          "agent.yaml", bad);
  EXPECT_THAT(status.message(), HasSubstr("agent.yaml:7:"));
  EXPECT_THAT(status.message(), HasSubstr("forwarding.rules[1].cidrs[1]: '10.0.0.0/99'"));
  status = config::ApplyYaml("forwarding:\n  rules:\n    - name: a\n      hosts: x\n", "agent.yaml", bad);
  EXPECT_THAT(status.message(), HasSubstr("forwarding.rules[0].action: missing"));
  status = config::ApplyYaml("forwarding:\n  rules:\n    - name: a\n      action: deny\n"
                             "    - name: a\n      action: allow\n", "agent.yaml", bad);
  EXPECT_THAT(status.message(), HasSubstr("forwarding.rules[1].name: 'a' is already"));
  status = config::ApplyYaml("forwarding:\n  rules:\n    - name: a\n      action: deny\n      cidr: x\n",
                             "agent.yaml", bad);
  EXPECT_THAT(status.message(), HasSubstr("agent.yaml:5:"));
  EXPECT_THAT(status.message(), HasSubstr("unknown key 'cidr'"));
}

// The example in docs/configuration.md ("Forwarding policy") is valid and means what it says.
TEST(ForwardingRulesTest, DocumentedExampleIsValid) {
  std::ifstream in(std::string(ALKNET_SOURCE_DIR) + "/docs/configuration.md");
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t start = doc.find("```yml\nforwarding:");
  ASSERT_NE(start, std::string::npos);
  start += 7;
  config::AgentConfig config;
  absl::Status status = config::ApplyYaml(doc.substr(start, doc.find("```", start) - start), "docs", config);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(config.forwarding.rules.size(), 4u);
  CompiledPolicy compiled(config.forwarding);
  EXPECT_TRUE(DecideByName(compiled, Request("169.254.169.254", 80)).allow);
  EXPECT_EQ(DecideByName(compiled, Request("10.1.1.1", 80)).RuleName(), "no-lan");
  EXPECT_EQ(DecideByName(compiled, Request("169.254.1.1", 80)).RuleName(), "builtin:link-local");
}

// An event loop on its own thread; RunOn runs a task there and waits for it.
class LoopThread {
 public:
  LoopThread() : loop_(*EventLoop::Create()), thread_([this] { loop_->Run(); }) {}
  ~LoopThread() {
    loop_->Stop();
    thread_.join();
  }
  EventLoop& loop() { return *loop_; }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

// A listening socket on 127.0.0.1 that never accepts: a connect to it completes in the kernel.
struct Listening {
  int fd = -1;
  uint16_t port = 0;
  Listening() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd, 16);
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ~Listening() { close(fd); }
  bool HasPendingConnection() const {
    int got = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (got >= 0) close(got);
    return got >= 0;
  }
};

ResolvedAddress V4(const char* text, uint16_t port) {
  ResolvedAddress out;
  auto& in = reinterpret_cast<sockaddr_in&>(out.storage);
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  inet_pton(AF_INET, text, &in.sin_addr);
  out.length = sizeof(sockaddr_in);
  return out;
}

// The address phase in the real connector: a name whose answer is a denied address is refused
// without any connect; a name with a denied and an allowed answer connects to the allowed one.
TEST(ForwardingRulesTest, ConnectorChecksEachResolvedAddressBeforeConnecting) {
  Listening target;
  std::vector<ResolvedAddress> answer;
  std::mutex mu;
  Resolver resolver(ResolverOptions{
      .threads = 1, .resolve = [&](const std::string&, uint16_t) -> absl::StatusOr<std::vector<ResolvedAddress>> {
        std::lock_guard<std::mutex> lock(mu);
        return answer;
      }});
  LoopThread loop;
  OutboundConnector connector(loop.loop(), resolver);
  ForwardingPolicy policy;
  policy.allow_loopback = true;
  policy.rules = {Rule({{"name", "no-127-0-0-2"}, {"action", "deny"}, {"cidrs", "127.0.0.2/32"}})};
  auto compiled = std::make_shared<const CompiledPolicy>(policy);
  auto run = [&](std::vector<ResolvedAddress> addresses, std::vector<std::string>* denied) {
    {
      std::lock_guard<std::mutex> lock(mu);
      answer = std::move(addresses);
    }
    std::promise<absl::StatusOr<UniqueFd>> done;
    std::unique_ptr<ConnectAttempt> attempt;
    loop.loop().Post([&] {
      attempt = connector.Connect(
          "rebound.test", target.port, absl::Seconds(5),
          [&](absl::StatusOr<UniqueFd> result) { done.set_value(std::move(result)); }, {},
          [&](const ResolvedAddress& resolved) {
            ForwardRequest request = Request("rebound.test", target.port);
            Decision d = DecideAddress(*compiled, request, *IpAddress::FromSockaddr(resolved.storage));
            if (!d.allow) denied->emplace_back(d.RuleName());
            return d.allow;
          });
    });
    absl::StatusOr<UniqueFd> result = done.get_future().get();
    std::promise<void> freed;
    loop.loop().Post([&] {
      attempt.reset();
      freed.set_value();
    });
    freed.get_future().wait();
    return result;
  };
  std::vector<std::string> denied;
  absl::StatusOr<UniqueFd> refused = run({V4("127.0.0.2", target.port)}, &denied);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ClassifyConnectError(refused.status()), ConnectFailure::kPolicyDenied);
  EXPECT_EQ(denied, std::vector<std::string>{"no-127-0-0-2"});
  EXPECT_FALSE(target.HasPendingConnection());

  denied.clear();
  absl::StatusOr<UniqueFd> connected =
      run({V4("127.0.0.2", target.port), V4("127.0.0.1", target.port)}, &denied);
  ASSERT_TRUE(connected.ok()) << connected.status();
  EXPECT_EQ(denied, std::vector<std::string>{"no-127-0-0-2"});
  sockaddr_in peer{};
  socklen_t len = sizeof(peer);
  ASSERT_EQ(getpeername(connected->get(), reinterpret_cast<sockaddr*>(&peer), &len), 0);
  EXPECT_EQ(ntohl(peer.sin_addr.s_addr), INADDR_LOOPBACK);
}

}  // namespace
}  // namespace alknet::fwd
