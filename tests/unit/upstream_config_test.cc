// The client role's configuration: `upstreams:` in YAML (file:line errors), the connect flags
// mapping onto one upstream, forward specs, validation, printing and the docs table.
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "agent/command_line.h"
#include "agent/default_config.h"
#include "gtest/gtest.h"
#include "server/config/config.h"
#include "server/config/config_schema.h"
#include "server/config/config_yaml.h"
#include "server/config/upstream_schema.h"

namespace alknet::config {
void PrintTo(const AgentConfig& config, std::ostream* os);  // in config_test.cc
namespace {

std::string Message(const absl::Status& status) { return std::string(status.message()); }

constexpr char kTwoUpstreams[] = R"(upstreams:
  - name: office
    server: tcp://gw.example.org:22
    user: deploy
    identity: /etc/alknet/id_ed25519
    socks5: 127.0.0.1:1080
    socks5_username: alice
    socks5_password: s3cret
    local_forwards:
      - 8080:intranet.example:80
      - "[::1]:5432:[2001:db8::5]:5432"
    remote_forwards: 0.0.0.0:2222:127.0.0.1:22
    known_hosts: /etc/alknet/known_hosts
    proxy: http://proxy.example:3128
    handshake_timeout: 20s
    keepalive_interval: 10s
    keepalive_timeout: 1m
    request_timeout: 5s
    max_pending_requests: 16
  - server: tcp://[2001:db8::1]:2222
    identity: /k
    host_key_fingerprint: SHA256:GtYsV3fNEe3nBk3vBMTzV/+zgRZkixy+uFXf/k1jrU4
)";

UpstreamConfig Office() {
  UpstreamConfig u;
  u.name = "office";
  u.server = EndpointUrl{"tcp", HostPort{"gw.example.org", 22}};
  u.user = "deploy";
  u.identity = "/etc/alknet/id_ed25519";
  u.socks5 = HostPort{"127.0.0.1", 1080};
  u.socks5_username = "alice";
  u.socks5_password = "s3cret";
  u.local_forwards = {ForwardSpec{"127.0.0.1", 8080, "intranet.example", 80},
                      ForwardSpec{"::1", 5432, "2001:db8::5", 5432}};
  u.remote_forwards = {ForwardSpec{"0.0.0.0", 2222, "127.0.0.1", 22}};
  u.known_hosts = "/etc/alknet/known_hosts";
  u.proxy = EndpointUrl{"http", HostPort{"proxy.example", 3128}};
  u.handshake_timeout = absl::Seconds(20);
  u.keepalive_interval = absl::Seconds(10);
  u.keepalive_timeout = absl::Minutes(1);
  u.request_timeout = absl::Seconds(5);
  u.max_pending_requests = 16;
  return u;
}

TEST(UpstreamYamlTest, ParsesAListOfUpstreams) {
  AgentConfig config;
  absl::Status status = ApplyYaml(kTwoUpstreams, "agent.yaml", config);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(config.upstreams.size(), 2u);
  EXPECT_EQ(config.upstreams[0], Office());
  EXPECT_EQ(config.upstreams[1].server.address.host, "2001:db8::1");
  EXPECT_TRUE(config.upstreams[1].name.empty());
  ResolveDefaults(config);
  EXPECT_EQ(config.upstreams[1].name, "[2001:db8::1]:2222");
  EXPECT_TRUE(Validate(config).ok()) << Validate(config);
  // A later document's list replaces the earlier one; an empty value empties it.
  ASSERT_TRUE(ApplyYaml("upstreams:\n", "b.yaml", config).ok());
  EXPECT_TRUE(config.upstreams.empty());
}

struct ErrorCase {
  std::string name;
  std::string yaml;
  std::string error;
};
void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }
class UpstreamYamlErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(UpstreamYamlErrorTest, RejectsWithPosition) {
  AgentConfig config;
  absl::Status status = ApplyYaml(GetParam().yaml, "agent.yaml", config);
  EXPECT_EQ(Message(status), GetParam().error);
  EXPECT_EQ(config, AgentConfig{});
}

INSTANTIATE_TEST_SUITE_P(
    Cases, UpstreamYamlErrorTest,
    ::testing::Values(
        ErrorCase{"NotAList", "upstreams: tcp://h:22\n",
                  "agent.yaml:1:12: upstreams: expected a list of mappings, got a scalar"},
        ErrorCase{"ItemNotAMapping", "upstreams:\n  - tcp://h:22\n",
                  "agent.yaml:2:5: upstreams[0]: expected a mapping, got a scalar"},
        ErrorCase{"UnknownKeySuggests", "upstreams:\n  - server: tcp://h:22\n    identiy: /k\n",
                  "agent.yaml:3:5: unknown key 'identiy' under 'upstreams[0]' (did you mean 'identity'?)"},
        ErrorCase{"BadServer", "upstreams:\n  - server: h:22\n",
                  "agent.yaml:2:13: upstreams[0].server: 'h:22' is not scheme://host:port (e.g. "
                  "tcp://127.0.0.1:2222)"},
        ErrorCase{"UnsupportedScheme", "upstreams:\n  - server: udp://h:22\n",
                  "agent.yaml:2:13: upstreams[0].server: 'udp://h:22': unsupported transport "
                  "'udp' (supported: tcp, tls, quic)"},
        ErrorCase{"BadTlsFingerprint", "upstreams:\n  - tls_fingerprint: SHA256:abc\n",
                  "agent.yaml:2:22: upstreams[0].tls_fingerprint: 'SHA256:abc' is not a "
                  "SHA256:<64 hex digits> or AB:CD:... certificate fingerprint"},
        ErrorCase{"BadTlsServerName", "upstreams:\n  - tls_server_name: a/b\n",
                  "agent.yaml:2:22: upstreams[0].tls_server_name: 'a/b': the host 'a/b' may only "
                  "contain letters, digits and . - _ : % *"},
        ErrorCase{"BadTlsInsecure", "upstreams:\n  - tls_insecure: maybe\n",
                  "agent.yaml:2:19: upstreams[0].tls_insecure: 'maybe' is not true or false"},
        ErrorCase{"BadForward", "upstreams:\n  - local_forwards: [8080:host]\n",
                  "agent.yaml:2:22: upstreams[0].local_forwards[0]: '8080:host' is not "
                  "[bind:]port:host:hostport (IPv6 addresses in brackets)"},
        ErrorCase{"BadForwardPort", "upstreams:\n  - remote_forwards: 1:h:70000\n",
                  "agent.yaml:2:22: upstreams[0].remote_forwards: '1:h:70000' has an invalid port "
                  "'70000'"},
        ErrorCase{"BadProxy", "upstreams:\n  - proxy: ftp://p:21\n",
                  "agent.yaml:2:12: upstreams[0].proxy: 'ftp://p:21' is not socks5://host:port or "
                  "http://host:port"},
        ErrorCase{"BadFingerprint", "upstreams:\n  - host_key_fingerprint: MD5:aa\n",
                  "agent.yaml:2:27: upstreams[0].host_key_fingerprint: 'MD5:aa' is not a SHA256:... "
                  "key fingerprint"},
        ErrorCase{"BadDuration", "upstreams:\n  - keepalive_interval: 0s\n",
                  "agent.yaml:2:25: upstreams[0].keepalive_interval: '0s' is out of range (must be "
                  "> 0s and <= 1h)"},
        ErrorCase{"MissingValue", "upstreams:\n  - server:\n",
                  "agent.yaml:2:5: upstreams[0].server: missing value"},
        ErrorCase{"DuplicateKey", "upstreams:\n  - user: a\n    user: b\n",
                  "agent.yaml:3:5: duplicate key 'user' under 'upstreams[0]' (first at line 2)"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

TEST(UpstreamValidateTest, RequiredAndExclusiveFields) {
  auto validate = [](void (*mutate)(UpstreamConfig&)) {
    std::vector<UpstreamConfig> upstreams = {Office()};
    mutate(upstreams[0]);
    return Message(ValidateUpstreams(upstreams));
  };
  EXPECT_EQ(validate([](UpstreamConfig&) {}), "");
  EXPECT_EQ(validate([](UpstreamConfig& u) { u.server = {}; }),
            "upstreams[0].server: is required (tcp://HOST:PORT, tls://HOST:PORT or quic://HOST:PORT)");
  EXPECT_EQ(validate([](UpstreamConfig& u) { u.identity.clear(); }),
            "upstreams[0].identity: is required (a private key file)");
  EXPECT_EQ(validate([](UpstreamConfig& u) { u.known_hosts.clear(); }),
            "upstreams[0].known_hosts: the server's host key must be checked: give known_hosts "
            "(--known-hosts) or host_key_fingerprint (--host-key-fingerprint), or explicitly "
            "insecure_accept_any_host_key (--insecure-accept-any-host-key)");
  EXPECT_EQ(validate([](UpstreamConfig& u) {
              u.known_hosts.clear();
              u.insecure_accept_any_host_key = true;
            }),
            "");
  EXPECT_EQ(validate([](UpstreamConfig& u) { u.host_key_fingerprint = "SHA256:x"; }),
            "upstreams[0].known_hosts: known_hosts and host_key_fingerprint are exclusive");
  EXPECT_EQ(validate([](UpstreamConfig& u) { u.socks5_password.clear(); }),
            "upstreams[0].socks5_username: socks5_username and socks5_password go together");
  EXPECT_EQ(validate([](UpstreamConfig& u) { u.keepalive_timeout = u.keepalive_interval; }),
            "upstreams[0].keepalive_timeout: must be longer than keepalive_interval");
  EXPECT_EQ(validate([](UpstreamConfig& u) { u.name = "a b"; }),
            "upstreams[0].name: 'a b' may only contain letters, digits and _ . : - [ ]");
  std::vector<UpstreamConfig> twins = {Office(), Office()};
  EXPECT_EQ(Message(ValidateUpstreams(twins)),
            "upstreams[1].name: 'office' is used by upstreams[0] too (give each upstream its own name)");
}

// ---- tls:// upstreams ----

absl::StatusOr<AgentConfig> BuildConnect(std::vector<const char*> args);  // below

constexpr char kPin[] = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
                        "AB:CD:EF:01:23:45:67:89";

UpstreamConfig TlsUpstream() {
  UpstreamConfig u = Office();
  u.server = EndpointUrl{"tls", HostPort{"gw.example.org", 443}};
  u.proxy.reset();
  return u;
}

TEST(UpstreamTlsTest, YamlFieldsAndServerScheme) {
  AgentConfig config;
  absl::Status status = ApplyYaml(R"(upstreams:
  - server: tls://gw.example.org:443
    identity: /k
    insecure_accept_any_host_key: true
    tls_server_name: front.example.org
    tls_ca_file: /etc/alknet/ca.pem
  - name: pinned
    server: tls://127.0.0.1:8443
    identity: /k
    insecure_accept_any_host_key: true
    tls_fingerprint: sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789
  - name: insecure
    server: tls://[::1]:443
    identity: /k
    insecure_accept_any_host_key: true
    tls_insecure: true
)",
                                  "agent.yaml", config);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(config.upstreams.size(), 3u);
  const UpstreamConfig& first = config.upstreams[0];
  EXPECT_EQ(first.server, (EndpointUrl{"tls", HostPort{"gw.example.org", 443}}));
  EXPECT_EQ(first.tls_server_name, "front.example.org");
  EXPECT_EQ(first.tls_ca_file, "/etc/alknet/ca.pem");
  EXPECT_TRUE(first.tls_fingerprint.empty());
  EXPECT_FALSE(first.tls_insecure);
  EXPECT_EQ(config.upstreams[1].tls_fingerprint, kPin);
  EXPECT_TRUE(config.upstreams[2].tls_insecure);
  ResolveDefaults(config);
  EXPECT_EQ(config.upstreams[0].name, "gw.example.org:443");
  EXPECT_TRUE(Validate(config).ok()) << Validate(config);
}

TEST(UpstreamTlsTest, FingerprintFormsNormalizeToTheLoggedForm) {
  const UpstreamFieldSpec* field = FindUpstreamFieldByKey("tls_fingerprint");
  ASSERT_NE(field, nullptr);
  std::string hex = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
  std::string colons = kPin;
  std::string lower_colons = "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:"
                             "ab:cd:ef:01:23:45:67:89";
  for (const std::string& text : {"SHA256:" + hex, "sha256:" + hex, "SHA256:" + colons, colons,
                                  lower_colons, hex}) {
    UpstreamConfig u;
    absl::Status status = SetUpstreamField(u, *field, text);
    ASSERT_TRUE(status.ok()) << text << ": " << status;
    EXPECT_EQ(u.tls_fingerprint, kPin) << text;
    EXPECT_EQ(PrintUpstreamField(u, *field), std::vector<std::string>{kPin});
  }
  for (const std::string& bad :
       {std::string("SHA256:") + hex.substr(1), "SHA256:" + hex + "0", "SHA256:" + hex.substr(0, 62) + "zz",
        std::string("SHA256:GtYsV3fNEe3nBk3vBMTzV/+zgRZkixy+uFXf/k1jrU4"),  // an SSH key fingerprint
        "MD5:" + hex, colons.substr(0, colons.size() - 3), colons + ":00",
        "AB-" + colons.substr(3), "AB:CDE" + colons.substr(6), std::string(" ") + colons}) {
    UpstreamConfig u;
    absl::Status status = SetUpstreamField(u, *field, bad);
    EXPECT_EQ(Message(status), "'" + bad + "' is not a SHA256:<64 hex digits> or AB:CD:... certificate fingerprint")
        << bad;
    EXPECT_TRUE(u.tls_fingerprint.empty());
  }
  UpstreamConfig u;
  u.tls_fingerprint = kPin;
  ASSERT_TRUE(SetUpstreamField(u, *field, "").ok());
  EXPECT_TRUE(u.tls_fingerprint.empty());
}

TEST(UpstreamTlsTest, ValidateNamesTheField) {
  auto validate = [](void (*mutate)(UpstreamConfig&)) {
    std::vector<UpstreamConfig> upstreams = {TlsUpstream()};
    mutate(upstreams[0]);
    return Message(ValidateUpstreams(upstreams));
  };
  EXPECT_EQ(validate([](UpstreamConfig&) {}), "");
  EXPECT_EQ(validate([](UpstreamConfig& u) {
              u.tls_server_name = "front.example.org";
              u.tls_ca_file = "/ca.pem";
            }),
            "");
  EXPECT_EQ(validate([](UpstreamConfig& u) { u.tls_fingerprint = kPin; }), "");
  EXPECT_EQ(validate([](UpstreamConfig& u) { u.tls_insecure = true; }), "");
  // TLS options need a tls:// server.
  EXPECT_EQ(validate([](UpstreamConfig& u) {
              u.server.scheme = "tcp";
              u.tls_server_name = "front.example.org";
            }),
            "upstreams[0].tls_server_name: applies to a tls:// or quic:// server only");
  EXPECT_EQ(validate([](UpstreamConfig& u) {
              u.server.scheme = "tcp";
              u.tls_ca_file = "/ca.pem";
            }),
            "upstreams[0].tls_ca_file: applies to a tls:// or quic:// server only");
  EXPECT_EQ(validate([](UpstreamConfig& u) {
              u.server.scheme = "tcp";
              u.tls_fingerprint = kPin;
            }),
            "upstreams[0].tls_fingerprint: applies to a tls:// or quic:// server only");
  EXPECT_EQ(validate([](UpstreamConfig& u) {
              u.server.scheme = "tcp";
              u.tls_insecure = true;
            }),
            "upstreams[0].tls_insecure: applies to a tls:// or quic:// server only");
  // One way to check the certificate.
  EXPECT_EQ(validate([](UpstreamConfig& u) {
              u.tls_insecure = true;
              u.tls_fingerprint = kPin;
            }),
            "upstreams[0].tls_insecure: tls_insecure and tls_fingerprint are exclusive");
  EXPECT_EQ(validate([](UpstreamConfig& u) {
              u.tls_ca_file = "/ca.pem";
              u.tls_fingerprint = kPin;
            }),
            "upstreams[0].tls_ca_file: is not used with tls_fingerprint (give one way to check "
            "the certificate)");
  EXPECT_EQ(validate([](UpstreamConfig& u) {
              u.tls_ca_file = "/ca.pem";
              u.tls_insecure = true;
            }),
            "upstreams[0].tls_ca_file: is not used with tls_insecure (give one way to check "
            "the certificate)");
}

TEST(UpstreamTlsTest, ConnectFlags) {
  absl::StatusOr<AgentConfig> config = BuildConnect(
      {"--server", "tls://gw.example.org:443", "--identity", "/k", "--insecure-accept-any-host-key",
       "--tls-server-name", "front.example.org", "--tls-ca-file", "/ca.pem"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->upstreams[0].server.scheme, "tls");
  EXPECT_EQ(config->upstreams[0].tls_server_name, "front.example.org");
  EXPECT_EQ(config->upstreams[0].tls_ca_file, "/ca.pem");

  absl::StatusOr<AgentConfig> pinned =
      BuildConnect({"--server", "tls://127.0.0.1:8443", "--identity", "/k",
                    "--insecure-accept-any-host-key", "--tls-fingerprint", kPin});
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_EQ(pinned->upstreams[0].tls_fingerprint, kPin);

  absl::StatusOr<AgentConfig> insecure = BuildConnect(
      {"--server", "tls://127.0.0.1:8443", "--identity", "/k", "--insecure-accept-any-host-key",
       "--tls-insecure"});
  ASSERT_TRUE(insecure.ok()) << insecure.status();
  EXPECT_TRUE(insecure->upstreams[0].tls_insecure);

  EXPECT_EQ(Message(BuildConnect({"--server", "tls://h:443", "--tls-fingerprint", "SHA256:00"}).status()),
            "--tls-fingerprint: 'SHA256:00' is not a SHA256:<64 hex digits> or AB:CD:... certificate "
            "fingerprint");
  EXPECT_EQ(Message(BuildConnect({"--server", "tcp://h:22", "--identity", "/k",
                                  "--insecure-accept-any-host-key", "--tls-insecure"})
                        .status()),
            "invalid configuration: upstreams[0].tls_insecure: applies to a tls:// or quic:// server only");
  EXPECT_EQ(Message(BuildConnect({"--server", "tls://h:443", "--identity", "/k",
                                  "--insecure-accept-any-host-key", "--tls-insecure",
                                  "--tls-fingerprint", kPin})
                        .status()),
            "invalid configuration: upstreams[0].tls_insecure: tls_insecure and tls_fingerprint are "
            "exclusive");
}

TEST(ForwardSpecTest, ParsesAndPrints) {
  struct Case {
    std::string text;
    std::string default_bind;
    ForwardSpec spec;
    std::string printed;
  };
  for (const Case& c : std::vector<Case>{
           {"8080:web:80", "127.0.0.1", {"127.0.0.1", 8080, "web", 80}, "127.0.0.1:8080:web:80"},
           {"0:10.0.0.1:22", "localhost", {"localhost", 0, "10.0.0.1", 22}, "localhost:0:10.0.0.1:22"},
           {"*:9000:h:1", "localhost", {"*", 9000, "h", 1}, "*:9000:h:1"},
           {"[::]:443:[fe80::1%eth0]:8443", "x", {"::", 443, "fe80::1%eth0", 8443}, "[::]:443:[fe80::1%eth0]:8443"},
           {":5000:h:1", "localhost", {"", 5000, "h", 1}, ":5000:h:1"},
       }) {
    absl::StatusOr<ForwardSpec> spec = ParseForwardSpec(c.text, c.default_bind);
    ASSERT_TRUE(spec.ok()) << c.text << ": " << spec.status();
    EXPECT_EQ(*spec, c.spec) << c.text;
    EXPECT_EQ(spec->ToString(), c.printed);
  }
  for (std::string bad : {"", "1:2", "a:b:c:d:e", "x:h:1", "1:h:0", "1::80", "1:h h:80", "-1:h:1"}) {
    EXPECT_FALSE(ParseForwardSpec(bad, "127.0.0.1").ok()) << bad;
  }
}

TEST(UpstreamRoundTripTest, ToYamlThenApplyYamlReproducesUpstreams) {
  AgentConfig original;
  original.upstreams = {Office(), Office()};
  original.upstreams[1].name = "second";
  original.upstreams[1].socks5.reset();
  original.upstreams[1].socks5_username.clear();
  original.upstreams[1].socks5_password.clear();
  original.upstreams[1].local_forwards.clear();
  original.upstreams[1].proxy.reset();
  original.upstreams[1].known_hosts.clear();
  original.upstreams[1].insecure_accept_any_host_key = true;
  original.upstreams.push_back(TlsUpstream());
  original.upstreams[2].name = "tls-ca";
  original.upstreams[2].tls_server_name = "front.example.org";
  original.upstreams[2].tls_ca_file = "/ca.pem";
  original.upstreams.push_back(TlsUpstream());
  original.upstreams[3].name = "tls-pin";
  original.upstreams[3].tls_fingerprint = kPin;
  original.upstreams.push_back(TlsUpstream());
  original.upstreams[4].name = "tls-insecure";
  original.upstreams[4].tls_insecure = true;
  std::string yaml = ToYaml(original);
  AgentConfig loaded;
  absl::Status status = ApplyYaml(yaml, "<print-config>", loaded);
  ASSERT_TRUE(status.ok()) << status << "\n" << yaml;
  EXPECT_EQ(loaded, original) << yaml;
  EXPECT_NE(yaml.find("    local_forwards: []\n"), std::string::npos) << yaml;
}

// ---- the connect command's flags ----

absl::StatusOr<AgentConfig> BuildConnect(std::vector<const char*> args) {
  std::vector<const char*> argv = {"alknet-agent", "connect"};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<agent::CommandLine> command_line =
      agent::ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  if (!command_line.ok()) return command_line.status();
  return agent::BuildConfig(*command_line, agent::DefaultConfigYaml());
}

TEST(ConnectFlagsTest, MapOntoOneUpstream) {
  absl::StatusOr<AgentConfig> config = BuildConnect(
      {"--server", "tcp://gw.example.org:22", "--user", "deploy", "--identity",
       "/etc/alknet/id_ed25519", "--socks5", "127.0.0.1:1080", "-L", "8080:intranet.example:80",
       "-L", "[::1]:5432:[2001:db8::5]:5432", "-R", "0.0.0.0:2222:127.0.0.1:22", "--known-hosts",
       "/etc/alknet/known_hosts", "--proxy", "http://proxy.example:3128", "--socks5-username", "alice",
       "--socks5-password=s3cret", "--handshake-timeout", "20s", "--keepalive-interval", "10s",
       "--keepalive-timeout", "1m", "--request-timeout", "5s", "--max-pending-requests", "16",
       "--name", "office", "--log-level", "debug"});
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->upstreams.size(), 1u);
  EXPECT_EQ(config->upstreams[0], Office());
  EXPECT_EQ(config->log.level, LogLevel::kDebug);

  absl::StatusOr<AgentConfig> insecure = BuildConnect(
      {"--server", "tcp://127.0.0.1:2222", "--identity", "/k", "--insecure-accept-any-host-key"});
  ASSERT_TRUE(insecure.ok()) << insecure.status();
  EXPECT_TRUE(insecure->upstreams[0].insecure_accept_any_host_key);
  EXPECT_EQ(insecure->upstreams[0].name, "127.0.0.1:2222");
}

TEST(ConnectFlagsTest, Errors) {
  EXPECT_EQ(Message(BuildConnect({"--identity", "/k"}).status()),
            "connect: --server tcp://HOST:PORT is required");
  EXPECT_EQ(Message(BuildConnect({"--server", "tcp://h:22"}).status()),
            "invalid configuration: upstreams[0].identity: is required (a private key file)");
  EXPECT_EQ(Message(BuildConnect({"--server", "tcp://h:22", "-L", "80"}).status()),
            "-L: '80' is not [bind:]port:host:hostport (IPv6 addresses in brackets)");
  EXPECT_EQ(Message(BuildConnect({"--server", "tcp://h:22", "--identity", "/k"}).status()),
            "invalid configuration: upstreams[0].known_hosts: the server's host key must be "
            "checked: give known_hosts (--known-hosts) or host_key_fingerprint "
            "(--host-key-fingerprint), or explicitly insecure_accept_any_host_key "
            "(--insecure-accept-any-host-key)");
}

TEST(ConnectFlagsTest, UsageListsEveryUpstreamFlag) {
  std::string usage = agent::UsageText();
  for (const UpstreamFieldSpec& field : UpstreamFields()) {
    EXPECT_NE(usage.find("  " + std::string(field.flag)), std::string::npos) << field.flag;
  }
  EXPECT_NE(usage.find("connect --server"), std::string::npos);
}

TEST(UpstreamDocTest, TableNamesEveryKeyAndFlag) {
  std::ifstream in(std::string(ALKNET_SOURCE_DIR) + "/docs/configuration.md");
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(doc.empty());
  for (const UpstreamFieldSpec& field : UpstreamFields()) {
    std::string row = "| `" + std::string(field.key) + "` | `" + std::string(field.flag) + "`";
    EXPECT_NE(doc.find(row), std::string::npos) << row;
  }
}

}  // namespace
}  // namespace alknet::config

namespace alknet::config {
namespace {

// Security round, item 2: a -L (YAML local_forwards, the -L flag) must never target the agent's
// own services ("alknet-*", any case), and the error names the field.
TEST(SecurityRound, Item2LocalForwardToReservedAdminDestinationIsRefused) {
  AgentConfig config;
  absl::Status status = ApplyYaml(
      "upstreams:\n  - server: tcp://h:22\n    identity: /k\n    local_forwards:\n"
      "      - 8080:ALKNET-admin:22\n",
      "agent.yaml", config);
  EXPECT_EQ(Message(status),
            "agent.yaml:5:9: upstreams[0].local_forwards[0]: '8080:ALKNET-admin:22': the target "
            "host 'ALKNET-admin' is reserved for the agent's own services (alknet-*) and is never "
            "forwarded");
  absl::StatusOr<AgentConfig> flags = BuildConnect(
      {"--server", "tcp://h:22", "--identity", "/k", "-L", "8080:alknet-admin:1"});
  ASSERT_FALSE(flags.ok());
  EXPECT_EQ(Message(flags.status()),
            "-L: '8080:alknet-admin:1': the target host 'alknet-admin' is reserved for the "
            "agent's own services (alknet-*) and is never forwarded");
  // Port 0 as a target was already refused by the parser.
  EXPECT_FALSE(BuildConnect({"--server", "tcp://h:22", "--identity", "/k", "-L", "8080:h:0"}).ok());
  EXPECT_FALSE(CheckLocalForwardTarget({"127.0.0.1", 1, "h", 0}).ok());
  EXPECT_TRUE(CheckLocalForwardTarget({"127.0.0.1", 1, "alknetadmin", 1}).ok());
}

}  // namespace
}  // namespace alknet::config
