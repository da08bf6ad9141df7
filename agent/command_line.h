// Parses alknet-agent's command line and layers defaults, config file and flags into one config.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/cli_docs.h"
#include "server/config/config.h"
#include "server/config/config_schema.h"
#include "server/config/upstream_schema.h"

namespace alknet::agent {

struct CommandLine {
  std::string command = "serve";  // "serve" (default), "connect", "proxy", "health", "completion", "manpage"
  bool command_given = false;     // the command was named (its own --help then)
  std::string shell;              // `completion bash|zsh`
  std::string proxy_target;       // `proxy URL`
  std::optional<std::string> config_file;     // --config FILE
  bool print_config = false;                  // --print-config: print the effective YAML, exit
  bool help = false;                          // --help / -h
  bool version = false;                       // --version
  // Schema flags in the order given: (field, value). "--flag=value" and "--flag value" both work.
  std::vector<std::pair<const config::FieldSpec*, std::string>> settings;
  // `connect` only: flags of the one upstream it runs (--server, -L, ...), in order.
  std::vector<std::pair<const config::UpstreamFieldSpec*, std::string>> upstream_settings;
  // The ALKNET_* environment variables (CaptureEnvironment); BuildConfig reads only these.
  std::vector<std::pair<std::string, std::string>> environment;
};

// The ALKNET_* entries of an environ-style array ("NAME=value", null-terminated).
std::vector<std::pair<std::string, std::string>> CaptureEnvironment(const char* const* environ);

// The environment variable of a schema field: "limits.max_sessions" -> ALKNET_LIMITS_MAX_SESSIONS.
std::string EnvironmentName(std::string_view yaml_path);

// Unknown flags, missing values and a second positional command are errors naming the flag.
absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv);

// Embedded default YAML, then the config file (--config, else $ALKNET_CONFIG), then ALKNET_*
// variables (a list variable is comma-separated and replaces the list), then the flags (a list
// flag given on the command line replaces that list from earlier sources). Resolves defaults
// and validates.
absl::StatusOr<config::AgentConfig> BuildConfig(const CommandLine& command_line,
                                                std::string_view default_yaml);

// `proxy`: the server URL and its --tls-* / --proxy / --handshake-timeout flags, checked.
absl::StatusOr<config::UpstreamConfig> BuildProxyTarget(const CommandLine& command_line);

// Usage text listing every flag from the schema table; for a named command (not "") only the
// flags that apply to it.
std::string UsageText(std::string_view command = "");

// The command table (commands, options, schema flags) that --help, the completion scripts and
// the man page are written from.
cli::Program AgentProgram();

}  // namespace alknet::agent
