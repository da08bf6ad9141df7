// Tests alknet-agent's command line: flag forms, errors, and layering defaults < file < flags.
#include "agent/command_line.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "agent/default_config.h"
#include "gtest/gtest.h"
#include "server/config/config_yaml.h"

namespace alknet::config {
void PrintTo(const AgentConfig& config, std::ostream* os);  // in config_test.cc
}  // namespace alknet::config

namespace alknet::agent {
namespace {

using config::AgentConfig;

absl::StatusOr<CommandLine> Parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv = {"alknet-agent"};
  argv.insert(argv.end(), args);
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
}

absl::StatusOr<AgentConfig> Build(std::initializer_list<const char*> args) {
  absl::StatusOr<CommandLine> command_line = Parse(args);
  if (!command_line.ok()) return command_line.status();
  return BuildConfig(*command_line, DefaultConfigYaml());
}

std::string Message(const absl::Status& status) { return std::string(status.message()); }

EndpointUrl Tcp(std::string host, uint16_t port) {
  return EndpointUrl{"tcp", HostPort{std::move(host), port}};
}

class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    char name[] = "/tmp/alknet_command_line_test_XXXXXX";
    int fd = mkstemp(name);
    path_ = name;
    if (fd >= 0) close(fd);
    std::ofstream(path_) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const char* path() const { return path_.c_str(); }

 private:
  std::string path_;
};

// ---- ParseCommandLine ----

TEST(ParseCommandLineTest, NoArgumentsMeansServe) {
  absl::StatusOr<CommandLine> parsed = Parse({});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command, "serve");
  EXPECT_FALSE(parsed->config_file.has_value());
  EXPECT_FALSE(parsed->print_config || parsed->help || parsed->version);
  EXPECT_TRUE(parsed->settings.empty());
}

TEST(ParseCommandLineTest, CommandAndOptions) {
  absl::StatusOr<CommandLine> parsed =
      Parse({"serve", "--config", "/etc/a.yaml", "--print-config", "--version", "-h"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command, "serve");
  EXPECT_EQ(parsed->config_file, "/etc/a.yaml");
  EXPECT_TRUE(parsed->print_config);
  EXPECT_TRUE(parsed->version);
  EXPECT_TRUE(parsed->help);
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_EQ(Parse({"--config=/x.yaml"})->config_file, "/x.yaml");
}

TEST(ParseCommandLineTest, SchemaFlagsInOrderBothForms) {
  absl::StatusOr<CommandLine> parsed =
      Parse({"--workers", "4", "--listen=tcp://0.0.0.0:22", "--log-level=debug", "--listen",
             "tcp://[::]:22", "--state-dir=", "--host-key", "-key-starting-with-dash"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  std::vector<std::pair<std::string, std::string>> settings;
  for (const auto& [field, value] : parsed->settings) {
    settings.emplace_back(std::string(field->flag), value);
  }
  EXPECT_EQ(settings, (std::vector<std::pair<std::string, std::string>>{
                          {"--workers", "4"},
                          {"--listen", "tcp://0.0.0.0:22"},
                          {"--log-level", "debug"},
                          {"--listen", "tcp://[::]:22"},
                          {"--state-dir", ""},
                          {"--host-key", "-key-starting-with-dash"},
                      }));
  EXPECT_EQ(Parse({"--listen=a=b"})->settings.front().second, "a=b");
}

struct ParseErrorCase {
  std::string name;
  std::vector<const char*> args;
  std::string error;
};

void PrintTo(const ParseErrorCase& c, std::ostream* os) { *os << c.name; }

class ParseCommandLineErrorTest : public testing::TestWithParam<ParseErrorCase> {};

TEST_P(ParseCommandLineErrorTest, Rejects) {
  std::vector<const char*> argv = {"alknet-agent"};
  argv.insert(argv.end(), GetParam().args.begin(), GetParam().args.end());
  absl::StatusOr<CommandLine> parsed = ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(parsed.status()), GetParam().error);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParseCommandLineErrorTest,
    testing::Values(
        ParseErrorCase{"UnknownFlag", {"--bogus"}, "unknown flag '--bogus' (see --help)"},
        ParseErrorCase{
            "UnknownFlagWithValue", {"--bogus=1"}, "unknown flag '--bogus' (see --help)"},
        ParseErrorCase{"UnknownShortFlag", {"-x"}, "unknown flag '-x' (see --help)"},
        ParseErrorCase{
            "YamlNameIsNotAFlag", {"--state_dir", "/x"}, "unknown flag '--state_dir' (see --help)"},
        ParseErrorCase{"MissingValueAtEnd", {"--workers"}, "flag '--workers' needs a value"},
        ParseErrorCase{"MissingValueBeforeFlag",
                       {"--listen", "--workers", "2"},
                       "flag '--listen' needs a value"},
        ParseErrorCase{"MissingConfigFile", {"serve", "--config"}, "flag '--config' needs a value"},
        ParseErrorCase{"EmptyConfigFile", {"--config="}, "flag '--config' needs a file name"},
        ParseErrorCase{"TwoConfigFiles",
                       {"--config", "a", "--config", "b"},
                       "flag '--config' given more than once"},
        ParseErrorCase{
            "BooleanWithValue", {"--print-config=yes"}, "flag '--print-config' takes no value"},
        ParseErrorCase{"UnknownCommand", {"dial"}, "unknown command 'dial' (see --help)"},
        ParseErrorCase{"UpstreamFlagWithoutConnect", {"--server", "tcp://h:22"},
                       "flag '--server' belongs to the 'connect' command (see --help)"},
        ParseErrorCase{"SwitchTakesNoValue", {"connect", "--insecure-accept-any-host-key=yes"},
                       "flag '--insecure-accept-any-host-key' takes no value"},
        ParseErrorCase{"SecondCommand", {"serve", "serve"}, "unexpected argument 'serve'"},
        ParseErrorCase{
            "CommandAfterFlags", {"--workers", "2", "serve"}, "unexpected argument 'serve'"},
        ParseErrorCase{"DoubleDash", {"serve", "--"}, "unexpected argument '--'"},
        ParseErrorCase{"ProxyWithoutServer", {"proxy"},
                       "proxy needs the server: tls://HOST:PORT, quic://HOST:PORT or tcp://HOST:PORT"},
        ParseErrorCase{"ProxyTakesNoSshFlags", {"proxy", "tls://h:443", "--identity", "k"},
                       "flag '--identity' does not apply to 'proxy' (it takes --tls-*, --quic-*, "
                       "--proxy and --handshake-timeout; ssh itself authenticates)"},
        ParseErrorCase{"ProxyOneServer", {"proxy", "tls://h:443", "tls://i:443"},
                       "unexpected argument 'tls://i:443'"}),
    [](const testing::TestParamInfo<ParseErrorCase>& info) { return info.param.name; });

// ---- BuildProxyTarget ----

constexpr const char* kPin = "SHA256:abababababababababababababababababababababababababababababababab";

TEST(BuildProxyTargetTest, TheServerAndItsTlsOptions) {
  absl::StatusOr<CommandLine> parsed =
      Parse({"proxy", "tls://example.net:443", "--tls-fingerprint", kPin, "--proxy",
             "socks5://127.0.0.1:1080", "--handshake-timeout", "5s"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<config::UpstreamConfig> target = BuildProxyTarget(*parsed);
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(target->server.scheme, "tls");
  EXPECT_EQ(target->server.address.host, "example.net");
  EXPECT_EQ(target->server.address.port, 443);
  EXPECT_EQ(target->tls_fingerprint.substr(0, 6), "AB:AB:");  // normalised as upstreams are
  ASSERT_TRUE(target->proxy.has_value());
  EXPECT_EQ(target->handshake_timeout, absl::Seconds(5));
}

TEST(BuildProxyTargetTest, RefusesWhatAnUpstreamWouldRefuse) {
  auto error = [](std::initializer_list<const char*> args) {
    absl::StatusOr<CommandLine> parsed = Parse(args);
    if (!parsed.ok()) return Message(parsed.status());
    absl::StatusOr<config::UpstreamConfig> target = BuildProxyTarget(*parsed);
    return target.ok() ? std::string("ok") : Message(target.status());
  };
  EXPECT_EQ(error({"proxy", "tcp://h:22", "--tls-insecure"}),
            "proxy: tls_insecure: applies to a tls:// or quic:// server only");
  EXPECT_EQ(error({"proxy", "tls://h:443", "--tls-insecure", "--tls-fingerprint", kPin}),
            "proxy: tls_insecure: tls_insecure and tls_fingerprint are exclusive");
  EXPECT_EQ(error({"proxy", "udp://h:1"}).rfind("proxy: ", 0), 0u);
}

// The --quic-* flags belong to both roles: the listeners' on serve, the upstream's on connect
// and proxy; only a quic:// server takes them.
TEST(BuildProxyTargetTest, QuicFlagsBelongToTheCommandsRole) {
  absl::StatusOr<CommandLine> proxy =
      Parse({"proxy", "quic://h:443", "--quic-max-udp-payload", "65000", "--quic-congestion-control", "cubic"});
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  absl::StatusOr<config::UpstreamConfig> target = BuildProxyTarget(*proxy);
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(target->quic_max_udp_payload, 65000);
  EXPECT_EQ(target->quic_congestion_control, config::QuicCongestion::kCubic);

  absl::StatusOr<AgentConfig> serve =
      Build({"serve", "--quic-max-udp-payload", "9000", "--quic-congestion-control=cubic"});
  ASSERT_TRUE(serve.ok()) << serve.status();
  EXPECT_EQ(serve->quic.max_udp_payload, 9000);
  EXPECT_EQ(serve->quic.congestion_control, config::QuicCongestion::kCubic);
  EXPECT_TRUE(serve->upstreams.empty());
  EXPECT_EQ(Message(Build({"serve", "--quic-congestion-control", "reno"}).status()),
            "--quic-congestion-control: quic.congestion_control: 'reno' is not bbr or cubic");

  absl::StatusOr<CommandLine> over_tls =
      Parse({"proxy", "tls://h:443", "--quic-max-udp-payload", "9000"});
  ASSERT_TRUE(over_tls.ok()) << over_tls.status();
  EXPECT_EQ(Message(BuildProxyTarget(*over_tls).status()),
            "proxy: quic_max_udp_payload: applies to a quic:// server only");
  absl::StatusOr<CommandLine> too_small =
      Parse({"proxy", "quic://h:443", "--quic-max-udp-payload", "1199"});
  ASSERT_TRUE(too_small.ok()) << too_small.status();
  EXPECT_EQ(Message(BuildProxyTarget(*too_small).status()),
            "--quic-max-udp-payload: '1199' is below QUIC's 1200-byte minimum (0: discover)");
}

// ---- BuildConfig ----

TEST(BuildConfigTest, DefaultsOnly) {
  absl::StatusOr<AgentConfig> config = Build({});
  ASSERT_TRUE(config.ok()) << config.status();
  AgentConfig expected;
  expected.listen = {Tcp("127.0.0.1", 2222)};
  config::ResolveDefaults(expected);
  EXPECT_EQ(*config, expected);
}

TEST(BuildConfigTest, EmbeddedDefaultMatchesStructDefaults) {
  // agent/default_config.yaml and the struct initializers must not drift apart.
  AgentConfig from_yaml;
  ASSERT_TRUE(config::ApplyYaml(DefaultConfigYaml(), "<embedded default>", from_yaml).ok());
  AgentConfig expected;
  expected.listen = {Tcp("127.0.0.1", 2222)};
  EXPECT_EQ(from_yaml, expected);
}

TEST(BuildConfigTest, FlagsSetEveryField) {
  absl::StatusOr<AgentConfig> config = Build({"--state-dir",
                                              "/srv",
                                              "--listen",
                                              "tcp://0.0.0.0:22",
                                              "--host-key=/k1",
                                              "--authorized-keys",
                                              "/ak",
                                              "--workers",
                                              "3",
                                              "--login-grace-time",
                                              "1m",
                                              "--max-startups=50",
                                              "--per-source-max-startups",
                                              "5",
                                              "--max-sessions",
                                              "0",
                                              "--max-channels-per-session",
                                              "8",
                                              "--connect-timeout",
                                              "3s",
                                              "--shutdown-grace=0",
                                              "--log-level",
                                              "error",
                                              "--log-format",
                                              "json"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->state_dir, "/srv");
  EXPECT_EQ(config->listen, std::vector<EndpointUrl>{Tcp("0.0.0.0", 22)});
  EXPECT_EQ(config->host_keys, std::vector<std::string>{"/k1"});
  EXPECT_EQ(config->authorized_keys, std::vector<std::string>{"/ak"});
  EXPECT_EQ(config->workers, 3);
  EXPECT_EQ(config->limits.login_grace_time, absl::Minutes(1));
  EXPECT_EQ(config->limits.max_startups, 50);
  EXPECT_EQ(config->limits.per_source_max_startups, 5);
  EXPECT_EQ(config->limits.max_sessions, 0);
  EXPECT_EQ(config->limits.max_channels_per_session, 8);
  EXPECT_EQ(config->limits.connect_timeout, absl::Seconds(3));
  EXPECT_EQ(config->limits.shutdown_grace, absl::ZeroDuration());
  EXPECT_EQ(config->log.level, LogLevel::kError);
  EXPECT_EQ(config->log.format, LogFormat::kJson);
}

TEST(BuildConfigTest, PrecedenceDefaultThenFileThenFlags) {
  TempFile file(
      "state_dir: /from-file\n"
      "workers: 2\n"
      "limits:\n"
      "  max_startups: 40\n"
      "  connect_timeout: 20s\n"
      "log:\n"
      "  format: json\n");
  absl::StatusOr<AgentConfig> config =
      Build({"--config", file.path(), "--workers", "6", "--connect-timeout=1s"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->state_dir, "/from-file");  // file over default
  EXPECT_EQ(config->host_keys,                 // derived from the file's
            std::vector<std::string>{"/from-file/ssh_host_ed25519_key"});       // state_dir
  EXPECT_EQ(config->workers, 6);                                                // flag over file
  EXPECT_EQ(config->limits.max_startups, 40);                                   // file
  EXPECT_EQ(config->limits.connect_timeout, absl::Seconds(1));                  // flag over file
  EXPECT_EQ(config->limits.per_source_max_startups, 10);                        // default
  EXPECT_EQ(config->log.format, LogFormat::kJson);                              // file
  EXPECT_EQ(config->log.level, LogLevel::kInfo);                                // default
  EXPECT_EQ(config->listen, std::vector<EndpointUrl>{Tcp("127.0.0.1", 2222)});  // default

  // The last flag wins for scalars.
  absl::StatusOr<AgentConfig> twice = Build({"--workers", "6", "--workers=7"});
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(twice->workers, 7);
}

struct ListFlagCase {
  std::string name;
  std::vector<const char*> flags;
  std::vector<EndpointUrl> listen;
};

void PrintTo(const ListFlagCase& c, std::ostream* os) { *os << c.name; }

class ListFlagTest : public testing::TestWithParam<ListFlagCase> {};

TEST_P(ListFlagTest, FirstFlagReplacesFileListLaterOnesAppend) {
  TempFile file("listen:\n  - tcp://10.0.0.1:22\n  - tcp://10.0.0.2:22\n");
  std::vector<const char*> argv = {"alknet-agent", "--config", file.path()};
  argv.insert(argv.end(), GetParam().flags.begin(), GetParam().flags.end());
  absl::StatusOr<CommandLine> parsed = ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<AgentConfig> config = BuildConfig(*parsed, DefaultConfigYaml());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, GetParam().listen);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ListFlagTest,
    testing::Values(
        ListFlagCase{"NoFlagKeepsFileList", {}, {Tcp("10.0.0.1", 22), Tcp("10.0.0.2", 22)}},
        ListFlagCase{"OneFlagReplaces", {"--listen", "tcp://1.1.1.1:1"}, {Tcp("1.1.1.1", 1)}},
        ListFlagCase{"RepeatedFlagsAppend",
                     {"--listen=tcp://1.1.1.1:1", "--workers", "2", "--listen", "tcp://2.2.2.2:2"},
                     {Tcp("1.1.1.1", 1), Tcp("2.2.2.2", 2)}}),
    [](const testing::TestParamInfo<ListFlagCase>& info) { return info.param.name; });

TEST(BuildConfigTest, ListFlagsReplaceEmbeddedDefault) {
  absl::StatusOr<AgentConfig> config =
      Build({"--listen", "tcp://0.0.0.0:2022", "--host-key", "/a", "--host-key", "/b"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, std::vector<EndpointUrl>{Tcp("0.0.0.0", 2022)});
  EXPECT_EQ(config->host_keys, (std::vector<std::string>{"/a", "/b"}));
}

struct BuildErrorCase {
  std::string name;
  std::vector<const char*> args;
  std::string error;
};

void PrintTo(const BuildErrorCase& c, std::ostream* os) { *os << c.name; }

class BuildConfigErrorTest : public testing::TestWithParam<BuildErrorCase> {};

TEST_P(BuildConfigErrorTest, Rejects) {
  std::vector<const char*> argv = {"alknet-agent"};
  argv.insert(argv.end(), GetParam().args.begin(), GetParam().args.end());
  absl::StatusOr<CommandLine> parsed = ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<AgentConfig> config = BuildConfig(*parsed, DefaultConfigYaml());
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(Message(config.status()), GetParam().error);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BuildConfigErrorTest,
    testing::Values(
        BuildErrorCase{
            "BadInteger", {"--workers", "lots"}, "--workers: workers: 'lots' is not an integer"},
        BuildErrorCase{"OutOfRange",
                       {"--max-startups=0"},
                       "--max-startups: limits.max_startups: '0' is out of range (1..100000)"},
        BuildErrorCase{"QuicPayloadNotAnInteger",
                       {"--quic-max-udp-payload", "9k"},
                       "--quic-max-udp-payload: quic.max_udp_payload: '9k' is not an integer"},
        BuildErrorCase{"QuicPayloadTooLarge",
                       {"--quic-max-udp-payload", "65508"},
                       "--quic-max-udp-payload: quic.max_udp_payload: '65508' is out of range "
                       "(0..65507)"},
        BuildErrorCase{"QuicPayloadTooSmall",
                       {"--quic-max-udp-payload", "1199"},
                       "--quic-max-udp-payload: quic.max_udp_payload: '1199' is below QUIC's "
                       "1200-byte minimum (0: discover)"},
        BuildErrorCase{"BadDuration",
                       {"--login-grace-time", "soon"},
                       "--login-grace-time: limits.login_grace_time: invalid duration 'soon': "
                       "expected a number at offset 0"},
        BuildErrorCase{"BadListen",
                       {"--listen", "localhost"},
                       "--listen: listen: 'localhost' is not scheme://host:port (e.g. "
                       "tcp://127.0.0.1:2222)"},
        BuildErrorCase{"EmptyStateDir",
                       {"--state-dir="},
                       "--state-dir: state_dir: the path must not be empty"},
        BuildErrorCase{"CrossField",
                       {"--max-startups", "5"},
                       "invalid configuration: limits.per_source_max_startups (10) must not "
                       "exceed limits.max_startups (5)"},
        BuildErrorCase{"DuplicateListen",
                       {"--listen", "tcp://127.0.0.1:22", "--listen", "tcp://127.0.0.1:22"},
                       "invalid configuration: listen: 'tcp://127.0.0.1:22' is listed more than "
                       "once"},
        BuildErrorCase{"MissingConfigFile",
                       {"--config", "/nonexistent/agent.yaml"},
                       "cannot open config file '/nonexistent/agent.yaml': No such file or "
                       "directory"}),
    [](const testing::TestParamInfo<BuildErrorCase>& info) { return info.param.name; });

TEST(BuildConfigTest, ConfigFileErrorsCarryPathAndLine) {
  TempFile file("workers: 2\nlisten: [tcp://127.0.0.1:22]\nlimts: {}\n");
  absl::StatusOr<AgentConfig> config = Build({"--config", file.path()});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(Message(config.status()), std::string(file.path()) +
                                          ":3:1: unknown key 'limts' under 'root' (did you "
                                          "mean 'limits'?)");
}

TEST(BuildConfigTest, BadEmbeddedDefaultIsReported) {
  absl::StatusOr<CommandLine> parsed = Parse({});
  ASSERT_TRUE(parsed.ok());
  absl::StatusOr<AgentConfig> config = BuildConfig(*parsed, "workers: many\n");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(Message(config.status()), "<embedded default>:1:10: workers: 'many' is not an integer");
}

TEST(BuildConfigTest, PrintConfigOutputParsesBack) {
  TempFile file("state_dir: /srv/x\nlog: {level: warn}\nlimits: {shutdown_grace: 1m30s}\n");
  for (std::initializer_list<const char*> args :
       {std::initializer_list<const char*>{},
        {"--config", file.path(), "--listen", "tcp://[::1]:2200", "--listen", "tcp://0.0.0.0:22",
         "--workers", "5", "--connect-timeout", "1500ms"}}) {
    absl::StatusOr<AgentConfig> config = Build(args);
    ASSERT_TRUE(config.ok()) << config.status();
    std::string printed = config::ToYaml(*config);
    AgentConfig reloaded;
    absl::Status status = config::ApplyYaml(printed, "<print-config>", reloaded);
    ASSERT_TRUE(status.ok()) << status << "\n" << printed;
    EXPECT_EQ(reloaded, *config) << printed;

    // And the printed file works as a --config file giving the same effective config.
    TempFile printed_file(printed);
    absl::StatusOr<AgentConfig> again = Build({"--config", printed_file.path()});
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(*again, *config);
  }
}

TEST(CompletionCommandTest, TakesOneShell) {
  absl::StatusOr<CommandLine> bash = Parse({"completion", "bash"});
  ASSERT_TRUE(bash.ok()) << bash.status();
  EXPECT_EQ(bash->command, "completion");
  EXPECT_EQ(bash->shell, "bash");
  EXPECT_EQ(Parse({"completion"}).status().message(), "completion needs a shell: bash or zsh");
  EXPECT_EQ(Parse({"completion", "fish"}).status().message(), "completion: unknown shell 'fish' (bash or zsh)");
  EXPECT_FALSE(Parse({"completion", "bash", "zsh"}).ok());
  EXPECT_TRUE(Parse({"manpage"}).ok());
  // Per-command help: the upstream flags only for connect.
  EXPECT_NE(UsageText("connect").find("--server"), std::string::npos);
  EXPECT_EQ(UsageText("serve").find("Upstream flags"), std::string::npos);
}

TEST(UsageTextTest, ListsEveryFlagWithHelp) {
  std::string usage = UsageText();
  for (const config::FieldSpec& field : config::Fields()) {
    EXPECT_NE(usage.find("  " + std::string(field.flag) + " VALUE\n"), std::string::npos)
        << field.flag;
    EXPECT_NE(usage.find(std::string(field.help)), std::string::npos) << field.flag;
  }
  for (const char* option : {"--config FILE", "--print-config", "-h, --help", "--version"}) {
    EXPECT_NE(usage.find(option), std::string::npos) << option;
  }
}

// ---- ALKNET_* environment (container configuration) ----

absl::StatusOr<AgentConfig> BuildWithEnvironment(
    std::initializer_list<const char*> args,
    std::vector<std::pair<std::string, std::string>> environment) {
  absl::StatusOr<CommandLine> command_line = Parse(args);
  if (!command_line.ok()) return command_line.status();
  command_line->environment = std::move(environment);
  return BuildConfig(*command_line, DefaultConfigYaml());
}

TEST(EnvironmentTest, CaptureKeepsOnlyAlknetVariables) {
  const char* environ_like[] = {"PATH=/bin", "ALKNET_WORKERS=3", "ALKNET_CONFIG=/etc/a.yaml",
                                "ALKNETX=1", "ALKNET_LISTEN=tcp://a:1=b", nullptr};
  std::vector<std::pair<std::string, std::string>> captured = CaptureEnvironment(environ_like);
  ASSERT_EQ(captured.size(), 3u);
  EXPECT_EQ(captured[0], (std::pair<std::string, std::string>{"ALKNET_WORKERS", "3"}));
  EXPECT_EQ(captured[2], (std::pair<std::string, std::string>{"ALKNET_LISTEN", "tcp://a:1=b"}));
  EXPECT_EQ(EnvironmentName("limits.max_sessions"), "ALKNET_LIMITS_MAX_SESSIONS");
}

// metrics.listen from the embedded defaults may move to a free port; from any later source
// (file, variable, flag; even the default value itself) it is explicit and must bind as given.
TEST(MetricsListenTest, ExplicitOnlyWhenALaterSourceSetsIt) {
  absl::StatusOr<AgentConfig> defaults = BuildWithEnvironment({}, {});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_FALSE(defaults->metrics.listen_explicit);
  TempFile other("workers: 2\n");
  absl::StatusOr<AgentConfig> unrelated_file = BuildWithEnvironment({"--config", other.path()}, {});
  ASSERT_TRUE(unrelated_file.ok()) << unrelated_file.status();
  EXPECT_FALSE(unrelated_file->metrics.listen_explicit);

  TempFile file("metrics:\n  listen: 127.0.0.1:9464\n");
  absl::StatusOr<AgentConfig> from_file = BuildWithEnvironment({"--config", file.path()}, {});
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_TRUE(from_file->metrics.listen_explicit);
  absl::StatusOr<AgentConfig> from_env = BuildWithEnvironment({}, {{"ALKNET_METRICS_LISTEN", "127.0.0.1:9464"}});
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_TRUE(from_env->metrics.listen_explicit);
  absl::StatusOr<AgentConfig> from_flag = BuildWithEnvironment({"--metrics-listen", "127.0.0.1:9500"}, {});
  ASSERT_TRUE(from_flag.ok()) << from_flag.status();
  EXPECT_TRUE(from_flag->metrics.listen_explicit);
}

TEST(EnvironmentTest, VariablesSitBetweenTheFileAndTheFlags) {
  TempFile file("workers: 2\nlimits:\n  max_sessions: 10\n");
  absl::StatusOr<AgentConfig> config = BuildWithEnvironment(
      {"--workers", "5"},
      {{"ALKNET_CONFIG", file.path()}, {"ALKNET_WORKERS", "3"}, {"ALKNET_LIMITS_MAX_SESSIONS", "77"},
       {"ALKNET_LISTEN", "tcp://127.0.0.1:1, tcp://127.0.0.1:2"}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->workers, 5);                 // the flag wins
  EXPECT_EQ(config->limits.max_sessions, 77);    // the variable beats the file
  EXPECT_EQ(config->listen, (std::vector<EndpointUrl>{Tcp("127.0.0.1", 1), Tcp("127.0.0.1", 2)}));
}

TEST(EnvironmentTest, ConfigFlagBeatsAlknetConfig) {
  TempFile file("workers: 2\n");
  absl::StatusOr<AgentConfig> config =
      BuildWithEnvironment({"--config", file.path()}, {{"ALKNET_CONFIG", "/nonexistent.yaml"}});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->workers, 2);
}

TEST(EnvironmentTest, UnknownOrBadVariablesAreErrorsNamingThem) {
  absl::StatusOr<AgentConfig> unknown = BuildWithEnvironment({}, {{"ALKNET_WORKRES", "3"}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(Message(unknown.status()).find("ALKNET_WORKRES names no configuration field"),
            std::string::npos)
      << unknown.status();
  absl::StatusOr<AgentConfig> bad = BuildWithEnvironment({}, {{"ALKNET_WORKERS", "many"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(Message(bad.status()).rfind("ALKNET_WORKERS: ", 0), 0u) << bad.status();
}

TEST(ParseCommandLineTest, HealthIsACommand) {
  absl::StatusOr<CommandLine> parsed = Parse({"health", "--config", "/etc/a.yaml"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command, "health");
}

}  // namespace
}  // namespace alknet::agent
