// Parses alknet-agent's command line and layers defaults, config file and flags into one config.
#include "agent/command_line.h"

#include <algorithm>
#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/common/strings.h"
#include "server/config/config_yaml.h"

namespace alknet::agent {
namespace {

constexpr std::string_view kDefaultSource = "<embedded default>";

struct CommandSpec {
  std::string_view name;
  std::string_view args;  // for the synopsis
  std::string_view help;
};

// The commands; the first is the default.
constexpr CommandSpec kCommands[] = {
    {"serve", "",
     "run the agent (the default); upstreams: in the config file run the client role next to the "
     "server"},
    {"connect", "--server tcp://HOST:PORT|tls://HOST:PORT|quic://HOST:PORT --identity FILE [upstream flags...]",
     "client role only: one SSH connection to HOST with a SOCKS5 listener and -L / -R forwards "
     "(docs/configuration.md)"},
    {"proxy", "tls://HOST:PORT|quic://HOST:PORT|tcp://HOST:PORT [transport flags...]",
     "bridge stdin/stdout to one connection over the transport, for a stock ssh: "
     "ssh -o ProxyCommand='alknet-agent proxy tls://%h:%p --tls-fingerprint AB:CD:...' host "
     "(quic://: UDP). Takes connect's TLS flags, its --quic-* flags, --proxy (not with quic://) "
     "and --handshake-timeout"},
    {"health", "",
     "ask the running agent's /healthz (metrics.listen of the same config) and exit 0 if it answers "
     "200, else 1 (container HEALTHCHECK; needs no shell or curl)"},
    {"completion", "bash|zsh", "print the shell completion script (cmake --install installs both)"},
    {"manpage", "", "print the alknet-agent(1) manual page (roff)"},
};

struct OptionSpec {
  std::string_view name;
  std::string_view value;  // "" when the option takes none
  std::string_view help;
};

constexpr OptionSpec kOptions[] = {
    {"--config", "FILE", "YAML configuration file (docs/configuration.md)"},
    {"--print-config", "", "print the effective configuration as YAML and exit"},
    {"--help", "", "show this help (after a command: its own) and exit"},
    {"--version", "", "print the version and exit"},
};

// `text` wrapped to lines of at most `width` characters, each after `indent` spaces.
std::string Wrapped(std::string_view text, size_t indent, size_t width = 72) {
  std::string out;
  size_t column = 0;
  for (absl::string_view word : absl::StrSplit(Sv(text), ' ', absl::SkipEmpty())) {
    if (column > 0 && column + 1 + word.size() > width) {
      out += "\n" + std::string(indent, ' ');
      column = 0;
    }
    if (column > 0) {
      out += ' ';
      ++column;
    }
    absl::StrAppend(&out, word);
    column += word.size();
  }
  return out;
}

// The upstream flags `proxy` takes: how to reach and check the transport, nothing of SSH.
bool AppliesToProxy(const config::UpstreamFieldSpec& field) {
  return absl::StartsWith(Sv(field.key), "tls_") || absl::StartsWith(Sv(field.key), "quic_") ||
         field.key == "proxy" || field.key == "handshake_timeout";
}

absl::Status MissingValue(std::string_view flag) {
  return absl::InvalidArgumentError(absl::StrCat("flag '", Sv(flag), "' needs a value"));
}

}  // namespace

std::vector<std::pair<std::string, std::string>> CaptureEnvironment(const char* const* environ) {
  std::vector<std::pair<std::string, std::string>> captured;
  for (const char* const* entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text = *entry;
    size_t eq = text.find('=');
    if (eq == std::string_view::npos || !absl::StartsWith(Sv(text), "ALKNET_")) continue;
    captured.emplace_back(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  }
  return captured;
}

std::string EnvironmentName(std::string_view yaml_path) {
  std::string name = "ALKNET_";
  for (char c : yaml_path) {
    name.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return name;
}

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine result;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-' || arg == "--") {
      if (i == 1) {
        bool known = false;
        for (const CommandSpec& command : kCommands) known = known || command.name == arg;
        if (!known) {
          return absl::InvalidArgumentError(
              absl::StrCat("unknown command '", Sv(arg), "' (see --help)"));
        }
        result.command = std::string(arg);
        result.command_given = true;
        continue;
      }
      if (result.command == "proxy" && result.command_given && result.proxy_target.empty()) {
        result.proxy_target = std::string(arg);
        continue;
      }
      if (result.command == "completion" && result.shell.empty() && result.command_given &&
          i == 2) {
        if (arg != "bash" && arg != "zsh") {
          return absl::InvalidArgumentError(
              absl::StrCat("completion: unknown shell '", Sv(arg), "' (bash or zsh)"));
        }
        result.shell = std::string(arg);
        continue;
      }
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", Sv(arg), "'"));
    }

    std::string_view name = arg;
    std::optional<std::string_view> inline_value;
    if (size_t eq = arg.find('=');
        eq != std::string_view::npos && absl::StartsWith(Sv(arg), "--")) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    // The value of a flag: after '=' or the next argument (which must not look like a flag).
    auto take_value = [&]() -> absl::StatusOr<std::string> {
      if (inline_value.has_value()) return std::string(*inline_value);
      if (i + 1 >= argc || absl::StartsWith(argv[i + 1], "--")) return MissingValue(name);
      return std::string(argv[++i]);
    };
    auto no_value = [&]() -> absl::Status {
      if (inline_value.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat("flag '", Sv(name), "' takes no value"));
      }
      return absl::OkStatus();
    };

    const bool dials = result.command == "connect" || result.command == "proxy";
    if (name == "--help" || name == "-h") {
      if (absl::Status status = no_value(); !status.ok()) return status;
      result.help = true;
    } else if (name == "--version") {
      if (absl::Status status = no_value(); !status.ok()) return status;
      result.version = true;
    } else if (name == "--print-config") {
      if (absl::Status status = no_value(); !status.ok()) return status;
      result.print_config = true;
    } else if (name == "--config") {
      if (result.config_file.has_value()) {
        return absl::InvalidArgumentError("flag '--config' given more than once");
      }
      absl::StatusOr<std::string> value = take_value();
      if (!value.ok()) return value.status();
      if (value->empty()) return absl::InvalidArgumentError("flag '--config' needs a file name");
      result.config_file = *std::move(value);
    } else if (const config::UpstreamFieldSpec* upstream_field = config::FindUpstreamFieldByFlag(name);
               upstream_field != nullptr && (dials || config::FindFieldByFlag(name) == nullptr)) {
      // (The --quic-* flags both roles have are the upstream's on connect and proxy.)
      if (result.command == "proxy" && !AppliesToProxy(*upstream_field)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "flag '", Sv(name), "' does not apply to 'proxy' (it takes --tls-*, --quic-*, --proxy "
            "and --handshake-timeout; ssh itself authenticates)"));
      }
      if (!dials) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag '", Sv(name), "' belongs to the 'connect' command (see --help)"));
      }
      if (!upstream_field->takes_value) {
        if (absl::Status status = no_value(); !status.ok()) return status;
        result.upstream_settings.emplace_back(upstream_field, "true");
        continue;
      }
      absl::StatusOr<std::string> value = take_value();
      if (!value.ok()) return value.status();
      result.upstream_settings.emplace_back(upstream_field, *std::move(value));
    } else if (const config::FieldSpec* field = config::FindFieldByFlag(name); field != nullptr) {
      absl::StatusOr<std::string> value = take_value();
      if (!value.ok()) return value.status();
      result.settings.emplace_back(field, *std::move(value));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", Sv(name), "' (see --help)"));
    }
  }
  if (result.command == "completion" && result.shell.empty() && !result.help) {
    return absl::InvalidArgumentError("completion needs a shell: bash or zsh");
  }
  if (result.command == "proxy" && result.proxy_target.empty() && !result.help) {
    return absl::InvalidArgumentError(
        "proxy needs the server: tls://HOST:PORT, quic://HOST:PORT or tcp://HOST:PORT");
  }
  return result;
}

absl::StatusOr<config::AgentConfig> BuildConfig(const CommandLine& command_line,
                                                std::string_view default_yaml) {
  config::AgentConfig result;
  if (absl::Status status = config::ApplyYaml(default_yaml, kDefaultSource, result); !status.ok()) {
    return status;
  }
  result.metrics.listen_explicit = false;  // only a later source makes the address explicit
  auto variable = [&](std::string_view name) -> const std::string* {
    for (const auto& [key, value] : command_line.environment) {
      if (key == name) return &value;
    }
    return nullptr;
  };
  std::optional<std::string> config_file = command_line.config_file;
  if (const std::string* from_env = variable("ALKNET_CONFIG");
      !config_file.has_value() && from_env != nullptr && !from_env->empty()) {
    config_file = *from_env;
  }
  if (config_file.has_value()) {
    if (absl::Status status = config::ApplyYamlFile(*config_file, result); !status.ok()) {
      return status;
    }
  }
  // ALKNET_* variables, one per schema field; names that match no field are errors, so a typo
  // in a container's environment does not pass silently.
  for (const auto& [key, value] : command_line.environment) {
    // ALKNET_UPGRADE_FD: set by the agent for the binary it upgrades to (agent/upgrade), read
    // and unset by that process; not a config field.
    if (key == "ALKNET_CONFIG" || key == "ALKNET_UPGRADE_FD") continue;
    const config::FieldSpec* field = nullptr;
    for (const config::FieldSpec& candidate : config::Fields()) {
      if (EnvironmentName(candidate.yaml_path) == key) field = &candidate;
    }
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "environment variable ", key, " names no configuration field (docs/configuration.md)"));
    }
    std::vector<std::string> values = {value};
    if (field->kind == config::FieldKind::kList) {
      config::ClearListField(result, *field);
      values.clear();
      for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        values.emplace_back(absl::StripAsciiWhitespace(item));
      }
    }
    for (const std::string& item : values) {
      if (absl::Status status = config::SetField(result, *field, item); !status.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(key, ": ", status.message()));
      }
    }
  }
  // The first occurrence of a list flag replaces the list from the file; later ones append.
  std::vector<const config::FieldSpec*> cleared;
  for (const auto& [field, value] : command_line.settings) {
    if (field->kind == config::FieldKind::kList &&
        std::find(cleared.begin(), cleared.end(), field) == cleared.end()) {
      config::ClearListField(result, *field);
      cleared.push_back(field);
    }
    if (absl::Status status = config::SetField(result, *field, value); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(Sv(field->flag), ": ", status.message()));
    }
  }
  if (command_line.command == "connect") {
    // The connect flags describe exactly one upstream; it replaces the file's upstreams.
    config::UpstreamConfig upstream;
    for (const auto& [field, value] : command_line.upstream_settings) {
      if (absl::Status status = config::SetUpstreamField(upstream, *field, value); !status.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(Sv(field->flag), ": ", status.message()));
      }
    }
    if (upstream.server.address.host.empty()) {
      return absl::InvalidArgumentError("connect: --server tcp://HOST:PORT is required");
    }
    result.upstreams = {std::move(upstream)};
  }
  config::ResolveDefaults(result);
  if (absl::Status status = config::Validate(result); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid configuration: ", status.message()));
  }
  return result;
}

absl::StatusOr<config::UpstreamConfig> BuildProxyTarget(const CommandLine& command_line) {
  config::UpstreamConfig target;
  target.name = "proxy";
  const config::UpstreamFieldSpec* server = config::FindUpstreamFieldByFlag("--server");
  if (absl::Status status = config::SetUpstreamField(target, *server, command_line.proxy_target);
      !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("proxy: ", status.message()));
  }
  for (const auto& [field, value] : command_line.upstream_settings) {
    if (absl::Status status = config::SetUpstreamField(target, *field, value); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(Sv(field->flag), ": ", status.message()));
    }
  }
  if (absl::Status status = config::ValidateUpstreamTls(target); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("proxy: ", status.message()));
  }
  return target;
}

std::string UsageText(std::string_view command) {
  std::string text =
      "Usage: alknet-agent [serve] [--config FILE] [--print-config] [flags...]\n"
      "       alknet-agent connect|proxy URL|health|completion bash|zsh|manpage [flags...]\n"
      "\n"
      "Runs the alknet SSH tunnel agent. Settings come from the embedded defaults, then the\n"
      "--config file (or $ALKNET_CONFIG), then ALKNET_* environment variables (the field's\n"
      "YAML path in capitals, dots as underscores: ALKNET_LIMITS_MAX_SESSIONS; lists\n"
      "comma-separated), then the flags below (later sources win; a list flag given on the\n"
      "command line replaces that list from the file, and may be repeated).\n"
      "Flags take their value as '--flag value' or '--flag=value'.\n"
      "\n"
      "Commands:\n";
  for (const CommandSpec& spec : kCommands) {
    if (!command.empty() && spec.name != command) continue;
    std::string usage = spec.args.empty() ? std::string(spec.name) : absl::StrCat(Sv(spec.name), " ", Sv(spec.args));
    if (usage.size() <= 26) {
      absl::StrAppend(&text, "  ", usage, std::string(27 - usage.size(), ' '), Wrapped(spec.help, 29, 60), "\n");
    } else {
      absl::StrAppend(&text, "  ", usage, "\n", std::string(29, ' '), Wrapped(spec.help, 29, 60), "\n");
    }
  }
  absl::StrAppend(&text, "\nOptions:\n");
  for (const OptionSpec& option : kOptions) {
    std::string usage = option.name == "--help" ? "-h, --help" : std::string(option.name);
    if (!option.value.empty()) absl::StrAppend(&usage, " ", Sv(option.value));
    absl::StrAppend(&text, "  ", usage, std::string(27 - usage.size(), ' '), Sv(option.help), "\n");
  }
  absl::StrAppend(&text, "\nConfiguration flags:\n");
  for (const config::FieldSpec& field : config::Fields()) {
    absl::StrAppend(&text, "  ", Sv(field.flag), " VALUE\n      ", Sv(field.yaml_path), ": ",
                    Sv(field.help), "\n");
  }
  if (!command.empty() && command != "connect" && command != "proxy") return text;
  absl::StrAppend(&text, command == "proxy" ? "\nTransport flags (proxy):\n"
                                            : "\nUpstream flags (connect only; YAML: a list under upstreams:):\n");
  for (const config::UpstreamFieldSpec& field : config::UpstreamFields()) {
    if (command == "proxy" && !AppliesToProxy(field)) continue;
    absl::StrAppend(&text, "  ", Sv(field.flag), field.takes_value ? " VALUE" : "",
                    field.kind == config::FieldKind::kList ? " (repeatable)" : "", "\n      upstreams[].",
                    Sv(field.key), ": ", Sv(field.help), "\n");
  }
  return text;
}

cli::Program AgentProgram() {
  cli::Program program{
      .name = "alknet-agent",
      .summary = "SSH tunnel agent over pluggable transports (server and client role)",
      .synopsis = "[serve|connect|proxy|health|completion|manpage] [--config FILE] [flags...]",
      .description =
          "alknet-agent accepts SSH connections (serve) on TCP or TLS listeners and relays the "
          "tunnels its keys may open, or runs the client role (connect, or upstreams: next to "
          "serve): a SOCKS5 listener and -L / -R forwards over one SSH connection.\n\n"
          "Settings come from the embedded defaults, then the --config file (or $ALKNET_CONFIG), "
          "then ALKNET_* environment variables, then the flags (later sources win; a list flag "
          "given on the command line replaces that list from the file, and may be repeated). "
          "Flags take their value as --flag value or --flag=value. Every setting is described "
          "in docs/configuration.md.",
  };
  for (const CommandSpec& spec : kCommands) {
    cli::Command command{.words = {std::string(spec.name)}, .args = std::string(spec.args),
                         .help = std::string(spec.help)};
    if (spec.name == "connect" || spec.name == "proxy") {
      for (const config::UpstreamFieldSpec& field : config::UpstreamFields()) {
        if (spec.name == "proxy" && !AppliesToProxy(field)) continue;
        command.options.push_back({std::string(field.flag), field.takes_value ? "VALUE" : "",
                                   absl::StrCat("upstreams[].", Sv(field.key), ": ", Sv(field.help))});
      }
    }
    if (spec.name == "completion") command.choices = {"bash", "zsh"};
    program.commands.push_back(std::move(command));
  }
  cli::OptionGroup options{.title = "Options"};
  for (const OptionSpec& option : kOptions) {
    options.options.push_back({std::string(option.name), std::string(option.value),
                               absl::StrCat(Sv(option.help), option.name == "--help" ? "; also -h" : "")});
  }
  cli::OptionGroup flags{.title = "Configuration flags"};
  for (const config::FieldSpec& field : config::Fields()) {
    flags.options.push_back({std::string(field.flag), "VALUE",
                             absl::StrCat(Sv(field.yaml_path), ": ", Sv(field.help), "; environment ",
                                          EnvironmentName(field.yaml_path))});
  }
  program.global_options = {std::move(options), std::move(flags)};
  program.sections = {
      {"Environment",
       "ALKNET_CONFIG names the configuration file when --config is not given. Every configuration "
       "field can be set as ALKNET_ followed by its YAML path in capitals, dots as underscores "
       "(ALKNET_LIMITS_MAX_SESSIONS); list fields are comma-separated. A variable that names no "
       "field is an error."},
      {"Exit status",
       "0: stopped on SIGTERM/SIGINT, or a command such as --print-config or health succeeded. "
       "1: the start failed (a listener could not be bound, a key or state file is unusable), or "
       "health found the agent unhealthy. 2: a usage or configuration error."},
      {"Signals",
       "SIGTERM and SIGINT drain and stop the agent; SIGHUP re-reads the configuration file and the "
       "authorized_keys files."},
      {"See also", "alknet-admin(1), ssh(1); docs/configuration.md and docs/architecture.md in the "
                   "alknet sources."},
  };
  return program;
}

}  // namespace alknet::agent
