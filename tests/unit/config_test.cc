// Tests the config schema, the YAML loader (errors with file:line:col), defaults and validation.
#include "server/config/config.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <ostream>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "server/config/config_schema.h"
#include "server/config/config_yaml.h"

namespace alknet::config {

// gtest prints configs as their YAML (also used by command_line_test.cc).
void PrintTo(const AgentConfig& config, std::ostream* os) { *os << "\n" << ToYaml(config); }

namespace {

absl::Status Apply(const std::string& yaml, AgentConfig& config) {
  return ApplyYaml(yaml, "agent.yaml", config);
}

std::string Message(const absl::Status& status) { return std::string(status.message()); }

EndpointUrl Tcp(std::string host, uint16_t port) {
  return EndpointUrl{"tcp", HostPort{std::move(host), port}};
}

// A config that differs from AgentConfig{} in every field.
AgentConfig NonDefaultConfig() {
  AgentConfig config;
  config.state_dir = "/srv/alknet";
  config.listen = {Tcp("0.0.0.0", 22), Tcp("::1", 2200)};
  config.host_keys = {"/etc/alknet/host_ed25519", "/etc/alknet/host_rsa"};
  config.authorized_keys = {"/etc/alknet/authorized_keys"};
  config.workers = 8;
  config.limits.login_grace_time = absl::Seconds(90);
  config.limits.max_startups = 500;
  config.limits.per_source_max_startups = 20;
  config.limits.max_sessions = 0;
  config.limits.max_channels_per_session = 64;
  config.limits.connect_timeout = absl::Milliseconds(2500);
  config.limits.shutdown_grace = absl::ZeroDuration();
  config.log.level = LogLevel::kDebug;
  config.log.format = LogFormat::kJson;
  config.admin.socket = "/srv/alknet/admin.sock";
  config.ssh.kex = {"curve25519-sha256"};
  config.ssh.ciphers = {"aes128-ctr", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
                        "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr"};
  config.ssh.macs = {"hmac-sha2-512-etm@openssh.com"};
  config.ssh.host_key_algorithms = {"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256",
                                    "ecdsa-sha2-nistp256"};
  return config;
}

constexpr char kFullFile[] = R"(# every field
state_dir: /srv/alknet
listen:
  - tcp://0.0.0.0:22
  - tcp://[::1]:2200
host_keys: [/etc/alknet/host_ed25519, /etc/alknet/host_rsa]
authorized_keys: /etc/alknet/authorized_keys   # a scalar is a one-element list
workers: 8
limits:
  login_grace_time: 1m30s
  max_startups: 500
  per_source_max_startups: 20
  max_sessions: 0
  max_channels_per_session: 64
  connect_timeout: 2500ms
  shutdown_grace: 0s
log:
  level: debug
  format: json
admin:
  socket: /srv/alknet/admin.sock
ssh:
  kex: curve25519-sha256
  ciphers: ^aes128-ctr
  macs: -hmac-sha2-256-etm@openssh.com
  host_key_algorithms: +ecdsa-sha2-nistp256
)";

// ---- schema table ----

TEST(SchemaTest, EveryFieldHasUniquePathFlagAndHelp) {
  std::set<std::string_view> paths, flags;
  for (const FieldSpec& field : Fields()) {
    EXPECT_TRUE(paths.insert(field.yaml_path).second) << field.yaml_path;
    EXPECT_TRUE(flags.insert(field.flag).second) << field.flag;
    EXPECT_EQ(field.flag.substr(0, 2), "--") << field.flag;
    EXPECT_FALSE(field.help.empty()) << field.yaml_path;
    EXPECT_NE(field.help.find("default"), std::string_view::npos) << field.yaml_path;
    EXPECT_EQ(FindFieldByYamlPath(field.yaml_path), &field);
    EXPECT_EQ(FindFieldByFlag(field.flag), &field);
  }
  EXPECT_EQ(Fields().size(), 78u);
  EXPECT_EQ(FindFieldByYamlPath("limits"), nullptr);
  EXPECT_EQ(FindFieldByFlag("--config"), nullptr);
}

struct SetCase {
  std::string flag;
  std::string value;
};

// Setting every field from text to NonDefaultConfig()'s values reproduces that config.
TEST(SetFieldTest, SetsEveryField) {
  const SetCase cases[] = {
      {"--state-dir", "/srv/alknet"},
      {"--listen", "tcp://0.0.0.0:22"},
      {"--listen", "tcp://[::1]:2200"},
      {"--host-key", "/etc/alknet/host_ed25519"},
      {"--host-key", "/etc/alknet/host_rsa"},
      {"--authorized-keys", "/etc/alknet/authorized_keys"},
      {"--workers", "8"},
      {"--login-grace-time", "90s"},
      {"--max-startups", "500"},
      {"--per-source-max-startups", "20"},
      {"--max-sessions", "0"},
      {"--max-channels-per-session", "64"},
      {"--connect-timeout", "2s500ms"},
      {"--shutdown-grace", "0"},
      {"--log-level", "DEBUG"},
      {"--log-format", "json"},
      {"--admin-socket", "/srv/alknet/admin.sock"},
      {"--ssh-kex", "curve25519-sha256"},
      {"--ssh-ciphers", "^aes128-ctr"},
      {"--ssh-macs", "-hmac-sha2-256-etm@openssh.com"},
      {"--ssh-host-key-algorithms", "+ecdsa-sha2-nistp256"},
  };
  AgentConfig config;
  for (const SetCase& c : cases) {
    const FieldSpec* field = FindFieldByFlag(c.flag);
    ASSERT_NE(field, nullptr) << c.flag;
    absl::Status status = SetField(config, *field, c.value);
    EXPECT_TRUE(status.ok()) << c.flag << ": " << status;
  }
  EXPECT_EQ(config, NonDefaultConfig());
}

TEST(SetFieldTest, ErrorsNameFieldAndValue) {
  AgentConfig config;
  absl::Status status = SetField(config, *FindFieldByFlag("--max-startups"), "many");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(status), "limits.max_startups: 'many' is not an integer");
  EXPECT_EQ(config, AgentConfig{});
}

TEST(SetFieldTest, PathsMustBeUtf8WithoutControlCharacters) {
  const FieldSpec& host_key = *FindFieldByFlag("--host-key");
  AgentConfig config;
  for (std::string valid : {"/k/\xc3\xbcn\xc3\xaf", "/k/\xf0\x9f\x98\x80", "/k/a b#c:d"}) {
    EXPECT_TRUE(SetField(config, host_key, valid).ok()) << valid;
  }
  for (std::string invalid :
       {std::string("/k\0x", 4), std::string("/k\r"), std::string("/k\tx"), std::string("/k\x7f"),
        std::string("/k\nx"), std::string("/k\xc0\xaf"), std::string("/k\xed\xa0\x80"),
        std::string("/k\xf4\x90\x80\x80"), std::string("/k\xe2\x82"), std::string("/k\x80")}) {
    EXPECT_FALSE(SetField(config, host_key, invalid).ok()) << invalid;
  }
  EXPECT_EQ(config.host_keys.size(), 3u);
  EXPECT_EQ(Message(SetField(config, host_key, "/a\rb")),
            "host_keys: '/a\\rb' contains a control character");
}

TEST(SetFieldTest, ClearListFieldClearsOnlyLists) {
  AgentConfig config = NonDefaultConfig();
  ClearListField(config, *FindFieldByYamlPath("listen"));
  ClearListField(config, *FindFieldByYamlPath("workers"));  // a scalar: no effect
  EXPECT_TRUE(config.listen.empty());
  EXPECT_EQ(config.workers, 8);
  EXPECT_EQ(config.host_keys.size(), 2u);
}

// ---- YAML: valid input ----

TEST(ConfigYamlTest, FullFileSetsEveryField) {
  AgentConfig config;
  ASSERT_TRUE(Apply(kFullFile, config).ok()) << Apply(kFullFile, config);
  EXPECT_EQ(config, NonDefaultConfig());
}

TEST(ConfigYamlTest, EmptyDocumentsChangeNothing) {
  for (const char* text : {"", "\n", "# only a comment\n", "---\n", "~\n", "null", "---\n...\n"}) {
    AgentConfig config = NonDefaultConfig();
    absl::Status status = Apply(text, config);
    EXPECT_TRUE(status.ok()) << "'" << text << "': " << status;
    EXPECT_EQ(config, NonDefaultConfig()) << text;
  }
}

TEST(ConfigYamlTest, PartialFileKeepsOtherFields) {
  AgentConfig config = NonDefaultConfig();
  ASSERT_TRUE(Apply("limits:\n  max_startups: 7\nlog: {format: text}\n", config).ok());
  AgentConfig expected = NonDefaultConfig();
  expected.limits.max_startups = 7;
  expected.log.format = LogFormat::kText;
  EXPECT_EQ(config, expected);
}

struct ListCase {
  std::string name;
  std::string yaml;
  std::vector<std::string> host_keys;
};

void PrintTo(const ListCase& c, std::ostream* os) { *os << c.name; }

class ConfigYamlListTest : public testing::TestWithParam<ListCase> {};

TEST_P(ConfigYamlListTest, ReplacesEarlierList) {
  AgentConfig config;
  config.host_keys = {"/old/a", "/old/b"};
  absl::Status status = Apply(GetParam().yaml, config);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(config.host_keys, GetParam().host_keys);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ConfigYamlListTest,
    testing::Values(
        ListCase{"BlockList", "host_keys:\n  - /k1\n  - /k2\n", {"/k1", "/k2"}},
        ListCase{"FlowList", "host_keys: [/k1]\n", {"/k1"}},
        ListCase{"ScalarIsOneElementList", "host_keys: /k1\n", {"/k1"}},
        ListCase{"EmptyFlowListClears", "host_keys: []\n", {}},
        ListCase{"EmptyValueClears", "host_keys:\n", {}},
        ListCase{"QuotedScalars", "host_keys: ['/a b', \"/c#d\"]\n", {"/a b", "/c#d"}},
        ListCase{"NotMentionedKeepsList", "workers: 2\n", {"/old/a", "/old/b"}},
        ListCase{"AnchorAndAlias", "state_dir: &dir /k\nhost_keys: [*dir, *dir]\n", {"/k", "/k"}}),
    [](const testing::TestParamInfo<ListCase>& info) { return info.param.name; });

TEST(ConfigYamlTest, NullSectionChangesNothing) {
  AgentConfig config = NonDefaultConfig();
  ASSERT_TRUE(Apply("limits:\nlog: {}\n", config).ok());
  EXPECT_EQ(config, NonDefaultConfig());
}

// ---- YAML: errors, with exact positions ----

struct ErrorCase {
  std::string name;
  std::string yaml;
  std::string error;  // the whole message
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class ConfigYamlErrorTest : public testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigYamlErrorTest, RejectsWithPosition) {
  AgentConfig config = NonDefaultConfig();
  absl::Status status = Apply(GetParam().yaml, config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(status), GetParam().error);
  EXPECT_EQ(config, NonDefaultConfig()) << "config changed by a failed load";
}

std::string ErrorCaseName(const testing::TestParamInfo<ErrorCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(
    BadValues, ConfigYamlErrorTest,
    testing::Values(
        ErrorCase{"EmptyStateDir", "state_dir: ''\n",
                  "agent.yaml:1:12: state_dir: the path must not be empty"},
        ErrorCase{"StateDirNotUtf8", "state_dir: /a\xff\n",
                  "agent.yaml:1:12: state_dir: '/a\\xff' is not valid UTF-8"},
        ErrorCase{"ListenWithoutScheme", "listen:\n  - 127.0.0.1:22\n",
                  "agent.yaml:2:5: listen: '127.0.0.1:22' is not scheme://host:port (e.g. "
                  "tcp://127.0.0.1:2222)"},
        ErrorCase{"ListenUnknownScheme", "listen: [udp://1.2.3.4:5]\n",
                  "agent.yaml:1:10: listen: 'udp://1.2.3.4:5': unsupported transport 'udp' "
                  "(supported: tcp, tls, quic)"},
        ErrorCase{"ListenBadPort",
                  "workers: 1\nlisten:\n  - tcp://127.0.0.1:2222\n  - "
                  "tcp://127.0.0.1:99999\n",
                  "agent.yaml:4:5: listen: '127.0.0.1:99999' has an invalid port '99999'"},
        ErrorCase{"ListenOddHost", "listen: ['tcp://a b:22']\n",
                  "agent.yaml:1:10: listen: 'tcp://a b:22': the host 'a b' may only contain "
                  "letters, digits and . - _ : %"},
        ErrorCase{"EmptyHostKey", "host_keys: ['']\n",
                  "agent.yaml:1:13: host_keys: the path must not be empty"},
        ErrorCase{"WorkersTooMany", "workers: 257\n",
                  "agent.yaml:1:10: workers: '257' is out of range (0..256)"},
        ErrorCase{"WorkersNegative", "workers: -1\n",
                  "agent.yaml:1:10: workers: '-1' is out of range (0..256)"},
        ErrorCase{"WorkersNotInteger", "workers: four\n",
                  "agent.yaml:1:10: workers: 'four' is not an integer"},
        ErrorCase{"WorkersFraction", "workers: 1.5\n",
                  "agent.yaml:1:10: workers: '1.5' is not an integer"},
        ErrorCase{"WorkersHuge", "workers: 99999999999999999999\n",
                  "agent.yaml:1:10: workers: '99999999999999999999' is out of range (0..256)"},
        ErrorCase{"LoginGraceZero", "limits:\n  login_grace_time: 0s\n",
                  "agent.yaml:2:21: limits.login_grace_time: '0s' is out of range (must be > 0s "
                  "and <= 1h)"},
        ErrorCase{"LoginGraceTooLong", "limits:\n  login_grace_time: 61m\n",
                  "agent.yaml:2:21: limits.login_grace_time: '61m' is out of range (must be > 0s "
                  "and <= 1h)"},
        ErrorCase{"LoginGraceNegative", "limits:\n  login_grace_time: -1s\n",
                  "agent.yaml:2:21: limits.login_grace_time: invalid duration '-1s': durations "
                  "cannot be negative"},
        ErrorCase{"LoginGraceBadUnit", "limits:\n  login_grace_time: 5d\n",
                  "agent.yaml:2:21: limits.login_grace_time: invalid duration '5d': unknown unit "
                  "'d' (use h, m, s, ms, us or ns)"},
        ErrorCase{"MaxStartupsZero", "limits:\n  max_startups: 0\n",
                  "agent.yaml:2:17: limits.max_startups: '0' is out of range (1..100000)"},
        ErrorCase{"MaxStartupsTooMany", "limits: {max_startups: 100001}\n",
                  "agent.yaml:1:24: limits.max_startups: '100001' is out of range (1..100000)"},
        ErrorCase{"PerSourceZero", "limits:\n  per_source_max_startups: 0\n",
                  "agent.yaml:2:28: limits.per_source_max_startups: '0' is out of range "
                  "(1..100000)"},
        ErrorCase{"MaxSessionsNegative", "limits:\n  max_sessions: -5\n",
                  "agent.yaml:2:17: limits.max_sessions: '-5' is out of range (0..1000000)"},
        ErrorCase{"MaxSessionsTooMany", "limits:\n  max_sessions: 1000001\n",
                  "agent.yaml:2:17: limits.max_sessions: '1000001' is out of range (0..1000000)"},
        ErrorCase{"MaxChannelsZero", "limits:\n  max_channels_per_session: 0\n",
                  "agent.yaml:2:29: limits.max_channels_per_session: '0' is out of range "
                  "(1..100000)"},
        ErrorCase{"ConnectTimeoutZero", "limits:\n  connect_timeout: 0\n",
                  "agent.yaml:2:20: limits.connect_timeout: '0' is out of range (must be > 0s "
                  "and <= 5m)"},
        ErrorCase{"ConnectTimeoutTooLong", "limits:\n  connect_timeout: 5m1s\n",
                  "agent.yaml:2:20: limits.connect_timeout: '5m1s' is out of range (must be > 0s "
                  "and <= 5m)"},
        ErrorCase{"ShutdownGraceTooLong", "limits:\n  shutdown_grace: 2h\n",
                  "agent.yaml:2:19: limits.shutdown_grace: '2h' is out of range (must be >= 0s "
                  "and <= 1h)"},
        ErrorCase{"LogLevel", "log:\n  level: loud\n",
                  "agent.yaml:2:10: log.level: unknown log level 'loud' (expected debug, info, "
                  "warn or error)"},
        ErrorCase{"LogFormat", "log:\n  format: xml\n",
                  "agent.yaml:2:11: log.format: unknown log format 'xml' (expected text or "
                  "json)"}),
    ErrorCaseName);

INSTANTIATE_TEST_SUITE_P(
    UnknownKeys, ConfigYamlErrorTest,
    testing::Values(
        ErrorCase{"Typo", "state_dir: /x\nworkers: 2\nlistn: []\n",
                  "agent.yaml:3:1: unknown key 'listn' under 'root' (did you mean 'listen'?)"},
        ErrorCase{"NestedTypo", "limits:\n  max_startup: 5\n",
                  "agent.yaml:2:3: unknown key 'max_startup' under 'limits' (did you mean "
                  "'max_startups'?)"},
        ErrorCase{"WrongLevel", "max_startups: 5\n",
                  "agent.yaml:1:1: unknown key 'max_startups' under 'root' (did you mean "
                  "'max_startups' under 'limits'?)"},
        ErrorCase{"FlagSpelling", "limits:\n  connect-timeout: 5s\n",
                  "agent.yaml:2:3: unknown key 'connect-timeout' under 'limits' (did you mean "
                  "'connect_timeout'?)"},
        ErrorCase{"CaseDiffers", "Workers: 2\n",
                  "agent.yaml:1:1: unknown key 'Workers' under 'root' (did you mean 'workers'?)"},
        ErrorCase{"NothingClose", "colour: blue\n",
                  "agent.yaml:1:1: unknown key 'colour' under 'root'"},
        ErrorCase{"UnderLog", "log:\n  level: info\n  file: /tmp/x\n",
                  "agent.yaml:3:3: unknown key 'file' under 'log'"},
        ErrorCase{"DottedPathIsNotAKey", "limits.max_startups: 5\n",
                  "agent.yaml:1:1: unknown key 'limits.max_startups' under 'root' (did you mean "
                  "'max_startups' under 'limits'?)"},
        ErrorCase{"ControlCharacters", "\"a\\tb\": 1\n",
                  "agent.yaml:1:1: unknown key 'a\\tb' under 'root'"}),
    ErrorCaseName);

INSTANTIATE_TEST_SUITE_P(
    WrongTypes, ConfigYamlErrorTest,
    testing::Values(ErrorCase{"DocumentIsList", "- a\n- b\n",
                              "agent.yaml:1:1: the document must be a mapping, got a list"},
                    ErrorCase{"DocumentIsScalar", "hello\n",
                              "agent.yaml:1:1: the document must be a mapping, got a scalar"},
                    ErrorCase{"ListForScalar", "workers: [1]\n",
                              "agent.yaml:1:10: workers: expected a scalar, got a list"},
                    ErrorCase{"MapForScalar", "log:\n  level:\n    name: info\n",
                              "agent.yaml:3:5: log.level: expected a scalar, got a mapping"},
                    ErrorCase{"MissingScalar", "state_dir:\nworkers: 1\n",
                              "agent.yaml:1:1: state_dir: missing value"},
                    ErrorCase{"MapForList", "listen:\n  tcp: 127.0.0.1:22\n",
                              "agent.yaml:2:3: listen: expected a list, got a mapping"},
                    ErrorCase{"ListOfLists", "host_keys:\n  - /a\n  - [/b]\n",
                              "agent.yaml:3:5: host_keys[1]: expected a scalar, got a list"},
                    ErrorCase{"EmptyListElement", "host_keys: [/a, ~]\n",
                              "agent.yaml:1:17: host_keys[1]: missing value"},
                    ErrorCase{"ScalarForSection", "limits: 5\n",
                              "agent.yaml:1:9: limits: expected a mapping, got a scalar"},
                    ErrorCase{"ListForSection", "log: [info]\n",
                              "agent.yaml:1:6: log: expected a mapping, got a list"},
                    ErrorCase{"ListKey", "? [a]\n: b\n",
                              "agent.yaml:1:3: keys under 'root' must be scalars, got a list"},
                    ErrorCase{"AliasToMapping", "log: &l {level: info}\nworkers: *l\n",
                              "agent.yaml:2:10: workers: expected a scalar, got a mapping"},
                    ErrorCase{"CyclicAlias", "listen: &a [*a]\n",
                              "agent.yaml:1:13: listen[0]: expected a scalar, got a list"}),
    ErrorCaseName);

INSTANTIATE_TEST_SUITE_P(
    Structure, ConfigYamlErrorTest,
    testing::Values(
        ErrorCase{"DuplicateRootKey", "workers: 1\nstate_dir: /x\nworkers: 2\n",
                  "agent.yaml:3:1: duplicate key 'workers' under 'root' (first at line 1)"},
        ErrorCase{"DuplicateNestedKey", "limits:\n  max_startups: 5\n  max_startups: 6\n",
                  "agent.yaml:3:3: duplicate key 'max_startups' under 'limits' (first at line 2)"},
        ErrorCase{"DuplicateSection", "log: {level: info}\nlog: {format: json}\n",
                  "agent.yaml:2:1: duplicate key 'log' under 'root' (first at line 1)"},
        ErrorCase{"DuplicateQuotedKey", "workers: 1\n'workers': 2\n",
                  "agent.yaml:2:1: duplicate key 'workers' under 'root' (first at line 1)"},
        ErrorCase{"TwoDocuments", "workers: 1\n---\nworkers: 2\n",
                  "agent.yaml:2:1: only one YAML document is allowed"},
        ErrorCase{"SyntaxError", "workers: 1\nlisten: [tcp://127.0.0.1:22\n",
                  "agent.yaml:3:1: end of sequence flow not found"},
        ErrorCase{"BadIndentation", "limits:\n  max_startups: 5\n max_sessions: 5\n",
                  "agent.yaml:3:2: end of map not found"},
        ErrorCase{"UndefinedAlias", "workers: *nope\n",
                  "agent.yaml:1:10: the referenced anchor is not defined"},
        // The root mapping is level 1, so the 64th bracket opens level 65.
        ErrorCase{"TooDeep", "workers: " + std::string(70, '[') + std::string(70, ']') + "\n",
                  "agent.yaml:1:73: nested deeper than 64 levels"}),
    ErrorCaseName);

TEST(ConfigYamlTest, ErrorLeavesConfigUnchanged) {
  // Valid settings before the bad one must not leak into the config.
  AgentConfig config = NonDefaultConfig();
  absl::Status status = Apply(
      "state_dir: /new\nlisten: [tcp://1.1.1.1:1]\nworkers: 3\nlimits:\n  max_startups: 1\n"
      "log:\n  level: nope\n",
      config);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(config, NonDefaultConfig());
}

TEST(ConfigYamlTest, VeryDeepInputFailsCleanly) {
  for (const std::string& text :
       {std::string(200000, '['), std::string(200000, '{'), "a: " + std::string(100000, '[')}) {
    AgentConfig config;
    absl::Status status = Apply(text, config);
    EXPECT_FALSE(status.ok());
    EXPECT_EQ(config, AgentConfig{});
  }
  std::string block;
  for (int i = 0; i < 100; ++i) block += std::string(i * 2, ' ') + "k:\n";
  AgentConfig config;
  EXPECT_NE(Message(Apply(block, config)).find("nested deeper than 64 levels"), std::string::npos)
      << Apply(block, config);
}

// ---- round trip: ToYaml(config) applied to any config reproduces config ----

class RoundTripTest : public testing::TestWithParam<AgentConfig> {};

TEST_P(RoundTripTest, ToYamlThenApplyYamlReproducesConfig) {
  const AgentConfig& original = GetParam();
  std::string yaml = ToYaml(original);
  for (const AgentConfig& start : {AgentConfig{}, NonDefaultConfig()}) {
    AgentConfig loaded = start;
    absl::Status status = ApplyYaml(yaml, "<print-config>", loaded);
    ASSERT_TRUE(status.ok()) << status << "\n" << yaml;
    EXPECT_EQ(loaded, original) << yaml;
  }
}

AgentConfig ResolvedDefault() {
  AgentConfig config;
  ResolveDefaults(config);
  return config;
}

AgentConfig AwkwardStrings() {
  AgentConfig config = NonDefaultConfig();
  config.state_dir = "null";
  config.host_keys = {"~",
                      "a: b",
                      " leading space",
                      "#hash",
                      "\xc3\xbcn\xc3\xaf",
                      "\xc2\x85nel",
                      "\xe2\x80\xa8line-separator",
                      "\xef\xbb\xbf"
                      "bom",
                      "\xef\xbf\xbe",
                      "'q'",
                      "\"dq\"",
                      "-",
                      "- x",
                      "[x]",
                      "{y}",
                      "yes",
                      "123",
                      "*star",
                      "&amp",
                      "!bang",
                      "%pct",
                      "@at",
                      "`tick",
                      "x #y",
                      "trailing ",
                      "\\back"};
  config.authorized_keys = {"false", "0x10", ".inf", "1e3", "---", "..."};
  config.listen = {Tcp("localhost", 0), Tcp("fe80::1%eth0", 65535)};
  config.limits.login_grace_time = absl::Hours(1);
  config.limits.connect_timeout = absl::Nanoseconds(1);
  config.limits.shutdown_grace = absl::Seconds(3599) + absl::Microseconds(7);
  config.log.level = LogLevel::kWarning;
  return config;
}

AgentConfig EmptyLists() {
  AgentConfig config = NonDefaultConfig();
  config.listen.clear();
  config.host_keys.clear();
  config.authorized_keys.clear();
  config.log.level = LogLevel::kError;
  return config;
}

INSTANTIATE_TEST_SUITE_P(Configs, RoundTripTest,
                         testing::Values(AgentConfig{}, ResolvedDefault(), NonDefaultConfig(),
                                         AwkwardStrings(), EmptyLists()));

TEST(ToYamlTest, RendersTheSchemaLayout) {
  EXPECT_EQ(ToYaml(NonDefaultConfig()),
            "# alknet-agent configuration; see docs/configuration.md\n"
            "\n"
            "state_dir: /srv/alknet\n"
            "listen:\n"
            "  - tcp://0.0.0.0:22\n"
            "  - tcp://[::1]:2200\n"
            "host_keys:\n"
            "  - /etc/alknet/host_ed25519\n"
            "  - /etc/alknet/host_rsa\n"
            "authorized_keys:\n"
            "  - /etc/alknet/authorized_keys\n"
            "trusted_user_ca_keys: []\n"
            "revoked_keys: []\n"
            "certificate_clock_skew: 1m\n"
            "workers: 8\n"
            "limits:\n"
            "  login_grace_time: 1m30s\n"
            "  max_startups: 500\n"
            "  per_source_max_startups: 20\n"
            "  max_sessions: 0\n"
            "  max_channels_per_session: 64\n"
            "  connect_timeout: 2s500ms\n"
            "  shutdown_grace: 0s\n"
            "  upgrade_drain: 6h\n"
            "log:\n"
            "  level: debug\n"
            "  format: json\n"
            "tls:\n"
            "  cert: \"\"\n"
            "  key: \"\"\n"
            "  stealth: auto\n"
            "  stealth_timeout: 10s\n"
            "  stealth_backend: \"\"\n"
            "  max_handshakes: 200\n"
            "  per_source_max_handshakes: 10\n"
            "  web_max_connections: 256\n"
            "  web_per_source_max_connections: 10\n"
            "  web_lifetime: 5m\n"
            "  web_idle_timeout: 1m\n"
            "  profile: auto\n"
            "quic:\n"
            "  retry: auto\n"
            "  retry_threshold: 16\n"
            "  stream_window: 16MiB\n"
            "  max_udp_payload: 0\n"
            "  congestion_control: bbr\n"
            "  idle_timeout: 1m\n"
            "metrics:\n"
            "  listen: 127.0.0.1:9464\n"
            "  key_labels: []\n"
            "admin:\n"
            "  socket: /srv/alknet/admin.sock\n"
            "  listen: off\n"
            "  tls_cert: \"\"\n"
            "  tls_key: \"\"\n"
            "  client_ca: \"\"\n"
      "state:\n"
      "  store: file\n"
      "  etcd_ca: \"\"\n"
      "  etcd_cert: \"\"\n"
      "  etcd_key: \"\"\n"
      "  replica_id: \"\"\n"
            "ssh:\n"
            "  kex: curve25519-sha256\n"
            "  ciphers: aes128-ctr,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,"
            "aes128-gcm@openssh.com,aes256-ctr,aes192-ctr\n"
            "  macs: hmac-sha2-512-etm@openssh.com\n"
            "  host_key_algorithms: ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256\n"
            "rate_limits:\n"
            "  connections_per_source: 0\n"
            "  connections_per_source_burst: 0\n"
            "  channels_per_session: 0\n"
            "  channels_per_session_burst: 0\n"
            "  sessions_per_key: 0\n"
            "  sessions_per_key_burst: 0\n"
            "  max_sessions_per_key: 0\n"
            "  max_remote_forwards_per_key: 0\n"
            "  bandwidth_per_key: 0\n"
            "  bandwidth_per_key_burst: 0\n"
            "  bandwidth_exempt_keys: \"\"\n"
            "penalties:\n"
            "  enabled: true\n"
            "  authfail: 5s\n"
            "  noauth: 1s\n"
            "  grace_exceeded: 20s\n"
            "  probe: 5s\n"
            "  min: 15s\n"
            "  max: 10m\n"
            "  max_sources: 65536\n"
            "  overflow: permissive\n"
            "  ipv4_netblock: 32\n"
            "  ipv6_netblock: 64\n"
            "  exempt: []\n"
            "forwarding:\n"
            "  default_action: allow\n"
            "  default_rules: true\n"
            "  allow_loopback: false\n"
            "  rules: []\n"
            "upstreams: []\n");
}

// ---- files ----

class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    char name[] = "/tmp/alknet_config_test_XXXXXX";
    int fd = mkstemp(name);
    path_ = name;
    if (fd >= 0) close(fd);
    std::ofstream(path_) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ConfigYamlFileTest, LoadsFileAndNamesItInErrors) {
  TempFile good(kFullFile);
  AgentConfig config;
  ASSERT_TRUE(ApplyYamlFile(good.path(), config).ok());
  EXPECT_EQ(config, NonDefaultConfig());

  TempFile bad("workers: 1\nlimits:\n  max_startups: zero\n");
  absl::Status status = ApplyYamlFile(bad.path(), config);
  EXPECT_EQ(Message(status), bad.path() + ":3:17: limits.max_startups: 'zero' is not an integer");
  EXPECT_EQ(config, NonDefaultConfig());
}

TEST(ConfigYamlFileTest, MissingFile) {
  AgentConfig config;
  absl::Status status = ApplyYamlFile("/nonexistent/alknet.yaml", config);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Message(status),
            "cannot open config file '/nonexistent/alknet.yaml': No such file or directory");
}

TEST(ConfigYamlFileTest, DirectoryIsAnError) {
  AgentConfig config;
  absl::Status status = ApplyYamlFile("/tmp", config);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(Message(status).find("/tmp"), std::string::npos) << status;
}

// ---- penalties: (ADR 0013) ----

TEST(PenaltiesConfigTest, OnByDefaultWithSshdValues) {
  AgentConfig config;
  EXPECT_TRUE(config.penalties.enabled);
  EXPECT_EQ(config.penalties.authfail, absl::Seconds(5));
  EXPECT_EQ(config.penalties.min, absl::Seconds(15));
  EXPECT_EQ(config.penalties.max_sources, 65536);
  EXPECT_EQ(config.penalties.overflow, "permissive");
}

TEST(PenaltiesConfigTest, YamlSectionAndItsErrors) {
  AgentConfig config;
  ASSERT_TRUE(ApplyYaml("penalties:\n  enabled: false\n  authfail: 30s\n  overflow: deny-all\n"
                        "  exempt: [10.0.0.0/8, \"2001:db8::/32\"]\n",
                        "t", config)
                  .ok());
  EXPECT_FALSE(config.penalties.enabled);
  EXPECT_EQ(config.penalties.authfail, absl::Seconds(30));
  EXPECT_EQ(config.penalties.overflow, "deny-all");
  EXPECT_EQ(config.penalties.exempt, (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32"}));
  for (const char* bad : {"penalties:\n  overflow: drop\n", "penalties:\n  exempt: [10.0.0.1/8]\n",
                          "penalties:\n  ipv4_netblock: 33\n", "penalties:\n  exempt: [example.com]\n"}) {
    AgentConfig other;
    absl::Status status = ApplyYaml(bad, "t", other);
    EXPECT_FALSE(status.ok()) << bad;
    EXPECT_NE(std::string(status.message()).find("penalties."), std::string::npos) << status;
  }
  AgentConfig inverted;
  inverted.listen.push_back(*ParseEndpointUrl("tcp://127.0.0.1:0"));
  inverted.penalties.min = absl::Minutes(20);
  EXPECT_FALSE(Validate(inverted).ok());
}

// ---- docs/configuration.md stays true to the code ----

std::string ReadDoc() {
  std::ifstream in(std::string(ALKNET_SOURCE_DIR) + "/docs/configuration.md");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(ConfigDocTest, SchemaTableNamesEveryKeyAndFlag) {
  std::string doc = ReadDoc();
  ASSERT_FALSE(doc.empty());
  for (const FieldSpec& field : Fields()) {
    std::string row =
        "| `" + std::string(field.yaml_path) + "` | `" + std::string(field.flag) + "`";
    EXPECT_NE(doc.find(row), std::string::npos) << row;
  }
}

TEST(ConfigDocTest, ExampleFileIsValid) {
  std::string doc = ReadDoc();
  size_t start = doc.find("```yaml\n");
  ASSERT_NE(start, std::string::npos);
  start += 8;
  std::string example = doc.substr(start, doc.find("```", start) - start);
  AgentConfig config;
  absl::Status status = ApplyYaml(example, "docs example", config);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(config.listen.size(), 2u);
  EXPECT_EQ(config.authorized_keys, std::vector<std::string>{"/etc/alknet/authorized_keys"});
  ResolveDefaults(config);
  EXPECT_TRUE(Validate(config).ok()) << Validate(config);
}

// ---- defaults and validation ----

TEST(ResolveDefaultsTest, FillsDependentDefaults) {
  AgentConfig config;
  config.state_dir = "/srv/alk/";
  ResolveDefaults(config);
  EXPECT_EQ(config.listen, std::vector<EndpointUrl>{Tcp("127.0.0.1", 2222)});
  EXPECT_EQ(config.host_keys, std::vector<std::string>{"/srv/alk/ssh_host_ed25519_key"});
  EXPECT_EQ(config.authorized_keys, std::vector<std::string>{"/srv/alk/authorized_keys"});
  EXPECT_EQ(config.admin.socket, "/srv/alk/admin.sock");
  EXPECT_GE(config.workers, 1);
  EXPECT_LE(config.workers, 256);
  EXPECT_TRUE(Validate(config).ok()) << Validate(config);

  AgentConfig plain;
  ResolveDefaults(plain);
  EXPECT_EQ(plain.host_keys, std::vector<std::string>{"./var/ssh_host_ed25519_key"});
}

TEST(ResolveDefaultsTest, KeepsExplicitValues) {
  AgentConfig config = NonDefaultConfig();
  ResolveDefaults(config);
  EXPECT_EQ(config, NonDefaultConfig());
}

struct ValidateCase {
  std::string name;
  void (*mutate)(AgentConfig&);
  std::string error;  // empty: valid
};

void PrintTo(const ValidateCase& c, std::ostream* os) { *os << c.name; }

class ValidateTest : public testing::TestWithParam<ValidateCase> {};

TEST_P(ValidateTest, ChecksCrossFieldRules) {
  AgentConfig config = NonDefaultConfig();
  GetParam().mutate(config);
  absl::Status status = Validate(config);
  if (GetParam().error.empty()) {
    EXPECT_TRUE(status.ok()) << status;
  } else {
    EXPECT_EQ(Message(status), GetParam().error);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ValidateTest,
    testing::Values(
        ValidateCase{"Valid", [](AgentConfig&) {}, ""},
        ValidateCase{"PerSourceEqualsMax",
                     [](AgentConfig& c) { c.limits.per_source_max_startups = 500; }, ""},
        ValidateCase{"AdminTcpWithoutClientCa",
                     [](AgentConfig& c) {
                       c.admin.listen = HostPort{"127.0.0.1", 7000};
                       c.admin.tls_cert = "/etc/alknet/admin.crt";
                       c.admin.tls_key = "/etc/alknet/admin.key";
                     },
                     "admin.listen: a TCP admin listener needs admin.client_ca (clients must "
                     "present a certificate: mutual TLS)"},
        ValidateCase{"AdminTcpWithMutualTls",
                     [](AgentConfig& c) {
                       c.admin.listen = HostPort{"127.0.0.1", 7000};
                       c.admin.tls_cert = "/etc/alknet/admin.crt";
                       c.admin.tls_key = "/etc/alknet/admin.key";
                       c.admin.client_ca = "/etc/alknet/admin-clients.pem";
                     },
                     ""},
        ValidateCase{"PerSourceAboveMax",
                     [](AgentConfig& c) { c.limits.per_source_max_startups = 501; },
                     "limits.per_source_max_startups (501) must not exceed limits.max_startups "
                     "(500)"},
        ValidateCase{"TlsPerSourceHandshakesAboveMax",
                     [](AgentConfig& c) { c.tls.per_source_max_handshakes = 201; },
                     "tls.per_source_max_handshakes (201) must not exceed tls.max_handshakes "
                     "(200)"},
        ValidateCase{"WebPerSourceAboveMax",
                     [](AgentConfig& c) { c.tls.web_per_source_max_connections = 300; },
                     "tls.web_per_source_max_connections (300) must not exceed "
                     "tls.web_max_connections (256)"},
        ValidateCase{"WebLifetimeZero",
                     [](AgentConfig& c) { c.tls.web_lifetime = absl::ZeroDuration(); },
                     "tls.web_lifetime: '0s' is out of range (must be > 0s and <= 24h)"},
        ValidateCase{"NoListen", [](AgentConfig& c) { c.listen.clear(); },
                     "listen: no listen address"},
        ValidateCase{"DuplicateListen",
                     [](AgentConfig& c) { c.listen.push_back(c.listen.front()); },
                     "listen: 'tcp://0.0.0.0:22' is listed more than once"},
        ValidateCase{"NoHostKey", [](AgentConfig& c) { c.host_keys.clear(); },
                     "host_keys: no host key"},
        ValidateCase{"NoAuthorizedKeys", [](AgentConfig& c) { c.authorized_keys.clear(); },
                     "authorized_keys: no authorized_keys file"},
        ValidateCase{"EmptyStateDir", [](AgentConfig& c) { c.state_dir.clear(); },
                     "state_dir: must not be empty"},
        ValidateCase{"WorkersOutOfRange", [](AgentConfig& c) { c.workers = 300; },
                     "workers: '300' is out of range (0..256)"},
        ValidateCase{"MaxStartupsZero", [](AgentConfig& c) { c.limits.max_startups = 0; },
                     "limits.max_startups: '0' is out of range (1..100000)"},
        ValidateCase{"LoginGraceZero",
                     [](AgentConfig& c) { c.limits.login_grace_time = absl::ZeroDuration(); },
                     "limits.login_grace_time: '0s' is out of range (must be > 0s and <= 1h)"},
        ValidateCase{"ShutdownGraceNegative",
                     [](AgentConfig& c) { c.limits.shutdown_grace = absl::Seconds(-1); },
                     "limits.shutdown_grace: '-1s' is out of range (must be >= 0s and <= 1h)"}),
    [](const testing::TestParamInfo<ValidateCase>& info) { return info.param.name; });

TEST(AgentConfigTest, EqualityComparesEveryField) {
  std::vector<void (*)(AgentConfig&)> changes = {
      [](AgentConfig& c) { c.state_dir += "x"; },
      [](AgentConfig& c) { c.listen.pop_back(); },
      [](AgentConfig& c) { c.host_keys.pop_back(); },
      [](AgentConfig& c) { c.authorized_keys.clear(); },
      [](AgentConfig& c) { c.workers++; },
      [](AgentConfig& c) { c.limits.login_grace_time += absl::Nanoseconds(1); },
      [](AgentConfig& c) { c.limits.max_startups++; },
      [](AgentConfig& c) { c.limits.per_source_max_startups++; },
      [](AgentConfig& c) { c.limits.max_sessions++; },
      [](AgentConfig& c) { c.limits.max_channels_per_session++; },
      [](AgentConfig& c) { c.limits.connect_timeout += absl::Nanoseconds(1); },
      [](AgentConfig& c) { c.limits.shutdown_grace += absl::Nanoseconds(1); },
      [](AgentConfig& c) { c.log.level = LogLevel::kInfo; },
      [](AgentConfig& c) { c.log.format = LogFormat::kText; },
  };
  EXPECT_TRUE(NonDefaultConfig() == NonDefaultConfig());
  for (size_t i = 0; i < changes.size(); ++i) {
    AgentConfig changed = NonDefaultConfig();
    changes[i](changed);
    EXPECT_FALSE(changed == NonDefaultConfig()) << "change " << i;
  }
}

// tls.profile: auto follows stealth (nginx with stealth on, modern off); explicit values win
// and go through YAML, flags and --print-config alike.
TEST(TlsConfigTest, ProfileFollowsStealthUnlessSet) {
  const FieldSpec& profile = *FindFieldByYamlPath("tls.profile");
  EXPECT_EQ(profile.flag, "--tls-profile");
  AgentConfig config;
  EXPECT_EQ(config.tls.profile, std::nullopt);
  EXPECT_EQ(config.tls.effective_profile(), TlsProfile::kNginx);
  ASSERT_TRUE(SetField(config, *FindFieldByFlag("--stealth"), "false").ok());
  EXPECT_EQ(config.tls.effective_profile(), TlsProfile::kModern);
  ASSERT_TRUE(SetField(config, profile, "nginx").ok());
  EXPECT_EQ(config.tls.effective_profile(), TlsProfile::kNginx);
  EXPECT_NE(ToYaml(config).find("  profile: nginx\n"), std::string::npos) << ToYaml(config);
  ASSERT_TRUE(SetField(config, *FindFieldByFlag("--stealth"), "true").ok());
  ASSERT_TRUE(SetField(config, profile, "modern").ok());
  EXPECT_EQ(config.tls.effective_profile(), TlsProfile::kModern);
  ASSERT_TRUE(SetField(config, profile, "auto").ok());
  EXPECT_EQ(config.tls.effective_profile(), TlsProfile::kNginx);
  EXPECT_EQ(Message(SetField(config, profile, "apache")),
            "tls.profile: 'apache' is not nginx, modern or auto");
}

// tls.*: an explicit stealth=true needs a tls:// listener (the default "auto" never fails),
// cert and key go together, the backend is http://host:port.
TEST(TlsConfigTest, StealthCertAndBackendRules) {
  const FieldSpec& stealth = *FindFieldByFlag("--stealth");
  AgentConfig config = NonDefaultConfig();  // tcp:// listeners only
  EXPECT_TRUE(Validate(config).ok()) << Validate(config);
  ASSERT_TRUE(SetField(config, stealth, "true").ok());
  EXPECT_EQ(Message(Validate(config)),
            "tls.stealth (--stealth) is set to true but no listener is tls:// (add --listen "
            "tls://HOST:PORT or drop --stealth)");
  ASSERT_TRUE(SetField(config, stealth, "auto").ok());
  EXPECT_EQ(config.tls.stealth, std::nullopt);
  EXPECT_TRUE(config.tls.stealth_enabled());
  ASSERT_TRUE(SetField(config, stealth, "false").ok());
  EXPECT_FALSE(config.tls.stealth_enabled());
  EXPECT_TRUE(Validate(config).ok());
  EXPECT_FALSE(SetField(config, stealth, "maybe").ok());

  ASSERT_TRUE(SetField(config, *FindFieldByFlag("--listen"), "tls://0.0.0.0:443").ok());
  ASSERT_TRUE(SetField(config, stealth, "on").ok());
  EXPECT_TRUE(Validate(config).ok()) << Validate(config);

  config.tls.cert = "/etc/alknet/tls.pem";
  EXPECT_EQ(Message(Validate(config)),
            "tls.cert (--tls-cert) and tls.key (--tls-key) must be given together");
  config.tls.key = "/etc/alknet/tls.key";
  EXPECT_TRUE(Validate(config).ok());

  for (std::string_view good : {"http://127.0.0.1:8080", "http://localhost:80/", "http://[::1]:81"}) {
    config.tls.stealth_backend = std::string(good);
    EXPECT_TRUE(Validate(config).ok()) << good << ": " << Validate(config);
  }
  for (std::string_view bad : {"https://127.0.0.1:8080", "127.0.0.1:8080", "http://host", "http://h:0"}) {
    config.tls.stealth_backend = std::string(bad);
    EXPECT_NE(Message(Validate(config)).find("tls.stealth_backend"), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace alknet::config
