// alknet-admin: parses the command line, connects (Unix socket, mutual-TLS TCP or SSH), calls
// one RPC and prints a table (or JSON with --json).
#include "admin-cli/admin_cli.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "admin-cli/command_table.h"
#include "admin-cli/ssh_bridge.h"
#include "agent/admin/policy_sections.h"
#include "server/config/config.h"
#include "server/common/net_address.h"
#include "server/config/config_yaml.h"
#include "alknet/admin/v1/agent.grpc.pb.h"
#include "alknet/admin/v1/forwards.grpc.pb.h"
#include "alknet/admin/v1/keys.grpc.pb.h"
#include "agent/admin/forwarding_proto.h"
#include "alknet/admin/v1/policy.grpc.pb.h"
#include "alknet/admin/v1/sessions.grpc.pb.h"
#include "server/common/strings.h"

namespace alknet::admin_cli {
namespace {

namespace v1 = ::alknet::admin::v1;

constexpr int kMaxMessageBytes = 64 << 20;

struct UsageError {
  std::string message;
};

// ---- command line ----

// The option `name` of the command table (global, or of any command); nullptr if none.
const cli::Option* FindOption(std::string_view name) {
  const cli::Program& program = AdminProgram();
  for (const cli::OptionGroup& group : program.global_options) {
    for (const cli::Option& option : group.options) {
      if (option.name == name) return &option;
    }
  }
  for (const cli::Command& command : program.commands) {
    for (const cli::Option& option : command.options) {
      if (option.name == name) return &option;
    }
  }
  return nullptr;
}

bool IsGlobalOption(std::string_view name) {
  for (const cli::OptionGroup& group : AdminProgram().global_options) {
    for (const cli::Option& option : group.options) {
      if (option.name == name) return true;
    }
  }
  return false;
}

struct CommandLine {
  std::vector<std::string> words;                          // command and positional arguments
  std::map<std::string, std::vector<std::string>> options;  // "--from" -> values ("" for flags)

  bool Has(std::string_view name) const { return options.count(std::string(name)) > 0; }
  std::string Get(std::string_view name, std::string fallback = "") const {
    auto it = options.find(std::string(name));
    return it == options.end() ? fallback : it->second.back();
  }
  const std::vector<std::string>& All(std::string_view name) const {
    static const std::vector<std::string> empty;
    auto it = options.find(std::string(name));
    return it == options.end() ? empty : it->second;
  }
};

CommandLine Parse(const std::vector<std::string>& args) {
  CommandLine line;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() > 1 && arg[0] == '-' && arg != "-") {
      std::string name = arg;
      std::optional<std::string> value;
      if (size_t eq = arg.find('='); eq != std::string::npos && arg.substr(0, 2) == "--") {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
      }
      if (name == "-h") name = "--help";
      const cli::Option* spec = FindOption(name);
      if (spec == nullptr) throw UsageError{absl::StrCat("unknown option '", name, "'")};
      if (!spec->value.empty()) {
        if (!value) {
          if (i + 1 >= args.size()) throw UsageError{absl::StrCat("option '", name, "' needs a value")};
          value = args[++i];
        }
      } else if (value) {
        throw UsageError{absl::StrCat("option '", name, "' takes no value")};
      }
      line.options[name].push_back(value.value_or(""));
    } else {
      line.words.push_back(arg);
    }
  }
  return line;
}

// The command of the table that `line` runs (its words are the first words of the line).
const cli::Command* CommandOf(const CommandLine& line) {
  const cli::Command* found = nullptr;
  for (const cli::Command& command : AdminProgram().commands) {
    if (command.words.size() <= line.words.size() &&
        std::equal(command.words.begin(), command.words.end(), line.words.begin()) &&
        (found == nullptr || command.words.size() > found->words.size())) {
      found = &command;
    }
  }
  return found;
}

// Only global options and the command's own options (command table) may appear with it.
void Allow(const CommandLine& line) {
  const cli::Command* command = CommandOf(line);
  for (const auto& [name, values] : line.options) {
    bool ok = IsGlobalOption(name);
    if (command != nullptr) {
      for (const cli::Option& option : command->options) ok = ok || option.name == name;
    }
    if (!ok) {
      throw UsageError{absl::StrCat("option '", name, "' does not apply to '",
                                    absl::StrJoin(line.words.begin(),
                                                  line.words.begin() + std::min<size_t>(2, line.words.size()), " "),
                                    "'")};
    }
  }
}

void ExpectWords(const CommandLine& line, size_t count, std::string_view usage) {
  if (line.words.size() != count) throw UsageError{absl::StrCat("usage: alknet-admin ", Sv(usage))};
}

std::string ReadInput(const std::string& path, std::istream& in) {
  std::stringstream buffer;
  if (path == "-") {
    buffer << in.rdbuf();
    return buffer.str();
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) throw UsageError{absl::StrCat("cannot read '", path, "'")};
  buffer << file.rdbuf();
  return buffer.str();
}

v1::KeyRole ParseRole(const std::string& text) {
  if (text.empty() || text == "tunnel" || text == "TUNNEL") return v1::KEY_ROLE_TUNNEL;
  if (text == "admin" || text == "ADMIN") return v1::KEY_ROLE_ADMIN;
  throw UsageError{absl::StrCat("--role: '", text, "' is not tunnel or admin")};
}

std::string RoleName(v1::KeyRole role) { return role == v1::KEY_ROLE_ADMIN ? "admin" : "tunnel"; }

// ---- connection ----

struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<SshBridge> bridge;  // --via: owns the SSH session behind `channel`
};

std::string ReadPemOption(const CommandLine& line, std::string_view option) {
  std::string path = line.Get(option);
  if (path.empty()) throw UsageError{absl::StrCat("--server needs ", Sv(option))};
  std::ifstream file(path, std::ios::binary);
  if (!file) throw UsageError{absl::StrCat(Sv(option), ": cannot read '", path, "'")};
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

// The agent's admin socket when --socket is not given: $ALKNET_ADMIN_SOCKET, else admin.socket of
// the agent's config file in $ALKNET_CONFIG (the variables the agent itself reads, so the image,
// the chart and a host agree without a flag), else ./var/admin.sock (the default state dir) when
// it exists, else admin.socket of the Debian package's /etc/alknet/agent.yaml when that exists.
// The Debian package's config file (deploy/debian/agent.yaml).
constexpr char kPackageConfig[] = "/etc/alknet/agent.yaml";

std::string DefaultSocket() {
  const char* socket = std::getenv("ALKNET_ADMIN_SOCKET");
  if (socket != nullptr && *socket != '\0') return socket;
  auto socket_of = [](const char* config_file) -> std::optional<std::string> {
    config::AgentConfig config;
    if (!config::ApplyYamlFile(config_file, config).ok()) return std::nullopt;
    config::ResolveDefaults(config);
    return config.admin.socket;
  };
  const char* config_file = std::getenv("ALKNET_CONFIG");
  if (config_file != nullptr && *config_file != '\0') {
    if (auto from_config = socket_of(config_file)) return *from_config;
  }
  constexpr char kLocal[] = "./var/admin.sock";
  if (::access(kLocal, F_OK) == 0) return kLocal;
  if (::access(kPackageConfig, R_OK) == 0) {
    if (auto from_package = socket_of(kPackageConfig)) return *from_package;
  }
  return kLocal;
}

absl::StatusOr<Connection> Connect(const CommandLine& line) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  Connection connection;
  int targets = line.Has("--server") + line.Has("--via") + line.Has("--socket");
  if (targets > 1) throw UsageError{"use one of --socket, --server and --via"};
  if (line.Has("--via")) {
    absl::StatusOr<SshTarget> target = ParseSshUrl(line.Get("--via"));
    if (!target.ok()) throw UsageError{std::string(target.status().message())};
    if (!line.Has("--identity")) throw UsageError{"--via needs --identity KEY"};
    HostKeyCheck check{.known_hosts = line.Get("--known-hosts"),
                       .fingerprint = line.Get("--host-key-fingerprint"),
                       .insecure_accept_any = line.Has("--insecure-accept-any-host-key")};
    absl::StatusOr<std::unique_ptr<SshBridge>> bridge = SshBridge::Open(*target, line.Get("--identity"), check);
    if (!bridge.ok()) return bridge.status();
    connection.bridge = *std::move(bridge);
    connection.channel = grpc::CreateCustomInsecureChannelFromFd("alknet-admin", connection.bridge->TakeGrpcFd(), args);
  } else if (line.Has("--server")) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadPemOption(line, "--tls-ca");
    ssl.pem_cert_chain = ReadPemOption(line, "--tls-cert");
    ssl.pem_private_key = ReadPemOption(line, "--tls-key");
    if (line.Has("--tls-server-name")) args.SetSslTargetNameOverride(line.Get("--tls-server-name"));
    connection.channel = grpc::CreateCustomChannel(line.Get("--server"), grpc::SslCredentials(ssl), args);
  } else {
    connection.channel = grpc::CreateCustomChannel(
        absl::StrCat("unix:", line.Has("--socket") ? line.Get("--socket") : DefaultSocket()),
        grpc::InsecureChannelCredentials(), args);
  }
  return connection;
}

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return absl::StrCat("CODE_", static_cast<int>(code));
  }
}

// ---- output ----

std::string Json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

std::string FormatTime(const google::protobuf::Timestamp& time, bool set) {
  if (!set) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(time.seconds()), absl::UTCTimeZone());
}

std::string FormatBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << value << " " << units[unit];
  return out.str();
}

void PrintTable(std::ostream& out, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto print = [&](const std::vector<std::string>& row) {
    std::string text;
    for (size_t c = 0; c < row.size(); ++c) {
      text += row[c];
      if (c + 1 < row.size()) text += std::string(width[c] - row[c].size() + 2, ' ');
    }
    out << text << "\n";
  };
  print(header);
  for (const auto& row : rows) print(row);
}

void PrintPolicy(std::ostream& out, const v1::PolicySpec& policy) {
  // The flat sections: every field, in the proto's (= the YAML's) order.
  for (const std::string& name : admin::FlatPolicySections()) {
    const google::protobuf::Message& section = admin::FlatSection(policy, name);
    const auto* descriptor = section.GetDescriptor();
    out << name << ":\n";
    for (int i = 0; i < descriptor->field_count(); ++i) {
      const auto* field = descriptor->field(i);
      out << "  " << field->name() << ": " << admin::FieldText(section, field).value_or("") << "\n";
    }
  }
  if (!policy.has_forwarding()) return;
  const v1::ForwardingPolicy& forwarding = policy.forwarding();
  out << "forwarding:\n"
      << "  default_action: " << forwarding.default_action() << "\n"
      << "  default_rules: " << (forwarding.default_rules() ? "true" : "false") << "\n"
      << "  allow_loopback: " << (forwarding.allow_loopback() ? "true" : "false") << "\n"
      << "  rules:" << (forwarding.rules().rules().empty() ? " []" : "") << "\n";
  auto list = [&](const char* key, const google::protobuf::RepeatedPtrField<std::string>& values) {
    if (values.empty()) return;
    out << "      " << key << ": [" << absl::StrJoin(values, ", ") << "]\n";
  };
  for (const v1::ForwardingRule& rule : forwarding.rules().rules()) {
    out << "    - name: " << rule.name() << "\n      action: " << rule.action() << "\n";
    list("hosts", rule.hosts());
    list("cidrs", rule.cidrs());
    if (!rule.ports().empty()) out << "      ports: " << rule.ports() << "\n";
    list("keys", rule.keys());
    list("roles", rule.roles());
    list("transports", rule.transports());
    if (!rule.direction().empty()) out << "      direction: " << rule.direction() << "\n";
  }
}

// "forwarding=FILE" (the file's `forwarding:` section replaces the policy's) or a scalar
// "forwarding.default_action=deny"; false when `assignment` is not about forwarding.
bool SetForwarding(v1::ForwardingPolicy& forwarding, const std::string& assignment, std::istream& in) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos) return false;
  std::string name = assignment.substr(0, eq);
  std::string value = assignment.substr(eq + 1);
  if (name == "forwarding") {
    config::AgentConfig parsed;
    if (absl::Status status = config::ApplyYaml(ReadInput(value, in), value == "-" ? "<stdin>" : value, parsed);
        !status.ok()) {
      throw UsageError{std::string(status.message())};
    }
    forwarding = admin::ForwardingToProto(parsed.forwarding);
    return true;
  }
  if (name.rfind("forwarding.", 0) != 0) return false;
  std::string key = name.substr(11);
  auto boolean = [&]() {
    if (value == "true" || value == "yes" || value == "on") return true;
    if (value == "false" || value == "no" || value == "off") return false;
    throw UsageError{absl::StrCat(name, ": '", value, "' is not true or false")};
  };
  if (key == "default_action") {
    forwarding.set_default_action(value);
  } else if (key == "default_rules") {
    forwarding.set_default_rules(boolean());
  } else if (key == "allow_loopback") {
    forwarding.set_allow_loopback(boolean());
  } else {
    throw UsageError{absl::StrCat("unknown forwarding field '", key,
                                  "' (known: default_action, default_rules, allow_loopback; "
                                  "forwarding=FILE for the rules)")};
  }
  return true;
}

// Sets one policy field from "name=value": "limits.max_sessions=10", "penalties.min=30s",
// "rate_limits.bandwidth_per_key=10MB", or a bare name ("max_sessions=10"), looked up in
// limits, penalties, then rate_limits.
void SetLimit(v1::PolicySpec& policy, const std::string& assignment) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos) throw UsageError{absl::StrCat("'", assignment, "' is not KEY=VALUE")};
  std::string name = assignment.substr(0, eq);
  std::string value = assignment.substr(eq + 1);
  std::vector<std::string> known;
  for (const std::string& section_name : admin::FlatPolicySections()) {
    std::string prefix = absl::StrCat(section_name, ".");
    std::string field_name = name;
    if (name.rfind(prefix, 0) == 0) {
      field_name = name.substr(prefix.size());
    } else if (name.find('.') != std::string::npos) {
      continue;  // qualified with another section
    }
    google::protobuf::Message& section = admin::FlatSection(policy, section_name);
    const auto* descriptor = section.GetDescriptor();
    if (const auto* field = descriptor->FindFieldByName(field_name); field != nullptr) {
      if (!admin::SetFieldText(section, field, value)) {
        throw UsageError{absl::StrCat(section_name, ".", field_name, ": '", value, "' is not ",
                                      field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_BOOL
                                          ? "true or false"
                                          : "a 32-bit integer")};
      }
      return;
    }
    for (int i = 0; i < descriptor->field_count(); ++i) {
      known.push_back(absl::StrCat(section_name, ".", descriptor->field(i)->name()));
    }
  }
  throw UsageError{absl::StrCat("unknown policy field '", name, "' (known: ", absl::StrJoin(known, ", "), ")")};
}

// ---- commands ----

class Commands {
 public:
  Commands(const CommandLine& line, std::istream& in, std::ostream& out, std::ostream& err)
      : line_(line), in_(in), out_(out), err_(err), json_(line.Has("--json")) {}

  int Dispatch() {
    const auto& w = line_.words;
    std::string group = w.empty() ? "" : w[0];
    std::string verb = w.size() > 1 ? w[1] : "";
    if (group == "status") return Status();
    if (group == "agent") {
      if (verb == "upgrade") return AgentUpgrade();
      throw UsageError{"usage: alknet-admin agent upgrade"};
    }
    if (group == "keys") {
      if (verb == "add") return KeysAdd();
      if (verb == "list" || verb == "ls") return KeysList();
      if (verb == "rm" || verb == "remove") return KeysRemove();
      if (verb == "import") return KeysImport();
      if (verb == "export") return KeysExport();
      throw UsageError{"usage: alknet-admin keys add|list|rm|import|export ..."};
    }
    if (group == "policy") {
      if (verb == "get") return PolicyGet();
      if (verb == "set") return PolicySet();
      if (verb == "check") return PolicyCheck();
      if (verb == "test") return PolicyTest();
      throw UsageError{"usage: alknet-admin policy get|set KEY=VALUE...|check FILE|test --key FP --to HOST:PORT"};
    }
    if (group == "penalties") {
      if (verb == "list" || verb == "ls") return PenaltiesList();
      if (verb == "clear") return PenaltiesClear();
      throw UsageError{"usage: alknet-admin penalties list|clear [SOURCE]"};
    }
    if (group == "sessions") {
      if (verb == "list" || verb == "ls") return SessionsList();
      if (verb == "kill") return SessionsKill();
      throw UsageError{"usage: alknet-admin sessions list|kill ID|kill --key FP"};
    }
    if (group == "forwards") {
      if (verb == "list" || verb == "ls") return ForwardsList();
      if (verb == "add") return ForwardsAdd();
      if (verb == "rm" || verb == "remove") return ForwardsRemove();
      throw UsageError{"usage: alknet-admin forwards list|add|rm ..."};
    }
    if (group == "completion") {
      Allow(line_);
      ExpectWords(line_, 2, "completion bash|zsh");
      if (verb == "bash") out_ << cli::BashCompletion(AdminProgram());
      else if (verb == "zsh") out_ << cli::ZshCompletion(AdminProgram());
      else throw UsageError{absl::StrCat("completion: unknown shell '", verb, "' (bash or zsh)")};
      return kExitOk;
    }
    if (group == "manpage") {
      Allow(line_);
      ExpectWords(line_, 1, "manpage");
      out_ << cli::ManPage(AdminProgram(), ALKNET_VERSION);
      return kExitOk;
    }
    if (group.empty()) throw UsageError{"no command (see --help)"};
    throw UsageError{absl::StrCat("unknown command '", group, "' (see --help)")};
  }

 private:
  // Connects lazily: usage errors are reported before any connection attempt.
  std::shared_ptr<grpc::Channel> Channel() {
    if (!connection_) {
      absl::StatusOr<Connection> connection = Connect(line_);
      if (!connection.ok()) throw connection.status();
      connection_ = std::make_unique<Connection>(*std::move(connection));
    }
    return connection_->channel;
  }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    double seconds = 30;
    if (line_.Has("--timeout") && (!absl::SimpleAtod(line_.Get("--timeout"), &seconds) || seconds <= 0)) {
      throw UsageError{"--timeout: expected a positive number of seconds"};
    }
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    return context;
  }

  int Fail(const grpc::Status& status) {
    err_ << "alknet-admin: " << CodeName(status.error_code()) << ": " << status.error_message() << "\n";
    return kExitServerError;
  }

  template <typename Stub, typename Request, typename Response>
  grpc::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                    std::unique_ptr<Stub>& stub, const Request& request, Response* response) {
    auto context = Context();
    return ((*stub).*method)(context.get(), request, response);
  }

  int Status() {
    Allow(line_);
    ExpectWords(line_, 1, "status [--all]");
    auto stub = v1::Agent::NewStub(Channel());
    v1::GetStatusRequest request;
    request.set_all(line_.Has("--all"));
    v1::GetStatusResponse response;
    if (auto s = Call(&v1::Agent::Stub::GetStatus, stub, request, &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
      return kExitOk;
    }
    out_ << "version:     " << response.version() << " (libssh " << response.libssh_version() << ")\n"
         << "ready:       " << (response.ready() ? "yes" : "no") << "\n"
         << "uptime:      " << absl::FormatDuration(absl::Seconds(response.uptime().seconds())) << "\n"
         << "started:     " << FormatTime(response.start_time(), response.has_start_time()) << "\n"
         << "sessions:    " << response.sessions() << "\n"
         << "keys:        " << response.keys() << "\n"
         << "state file:  " << response.state_file() << "\n";
    for (const v1::Listener& listener : response.listeners()) {
      out_ << "listener:    " << listener.kind() << " " << listener.address();
      if (!listener.tls_profile().empty()) out_ << " (tls profile " << listener.tls_profile() << ")";
      out_ << "\n";
    }
    if (request.all()) {
      std::vector<std::vector<std::string>> rows;
      for (const v1::ReplicaStatus& replica : response.replicas()) {
        rows.push_back({replica.id(), absl::StrCat(replica.pid()), replica.version(),
                        replica.ready() ? "yes" : "no", FormatTime(replica.start_time(), true),
                        absl::StrJoin(replica.listeners(), ",")});
      }
      out_ << "\n";
      PrintTable(out_, {"REPLICA", "PID", "VERSION", "READY", "STARTED", "LISTENERS"}, rows);
    }
    return kExitOk;
  }

  // Issue 20: binary upgrade; answers once the new process serves (its pid) or failed.
  int AgentUpgrade() {
    Allow(line_);
    ExpectWords(line_, 2, "agent upgrade");
    auto stub = v1::Agent::NewStub(Channel());
    v1::UpgradeResponse response;
    if (auto s = Call(&v1::Agent::Stub::Upgrade, stub, v1::UpgradeRequest(), &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
      return kExitOk;
    }
    out_ << "upgraded: new agent pid " << response.pid() << "\n";
    return kExitOk;
  }

  int KeysAdd() {
    Allow(line_);
    ExpectWords(line_, 3, "keys add FILE|- [--comment C] [--from P] [--permit-open H:P] "
                          "[--permit-listen [H:]P] [--expiry T] [--role tunnel|admin]");
    std::string text = ReadInput(line_.words[2], in_);
    std::vector<std::string> lines;
    for (absl::string_view piece : absl::StrSplit(text, '\n')) {
      std::string one(absl::StripAsciiWhitespace(piece));
      if (!one.empty() && one[0] != '#') lines.push_back(one);
    }
    if (lines.size() > 1) throw UsageError{"keys add takes one key; use 'keys import' for several"};
    v1::AddKeyRequest request;
    request.set_public_key(lines.empty() ? "" : lines[0]);
    request.set_comment(line_.Get("--comment"));
    for (const std::string& from : line_.All("--from")) {
      for (absl::string_view part : absl::StrSplit(from, ',')) request.add_from(std::string(part));
    }
    for (const std::string& value : line_.All("--permit-open")) request.add_permit_open(value);
    for (const std::string& value : line_.All("--permit-listen")) request.add_permit_listen(value);
    request.set_expiry(line_.Get("--expiry"));
    request.set_role(ParseRole(line_.Get("--role")));
    request.set_cert_authority(line_.Has("--cert-authority"));
    for (const std::string& value : line_.All("--principals")) {
      for (absl::string_view part : absl::StrSplit(value, ',')) request.add_principals(std::string(part));
    }
    auto stub = v1::Keys::NewStub(Channel());
    v1::AddKeyResponse response;
    if (auto s = Call(&v1::Keys::Stub::AddKey, stub, request, &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
    } else {
      out_ << "added " << response.key().fingerprint() << " (" << response.key().key_type() << ", role "
           << RoleName(response.key().role()) << ")\n";
    }
    return kExitOk;
  }

  int KeysList() {
    Allow(line_);
    ExpectWords(line_, 2, "keys list");
    auto stub = v1::Keys::NewStub(Channel());
    v1::ListKeysResponse response;
    if (auto s = Call(&v1::Keys::Stub::ListKeys, stub, v1::ListKeysRequest(), &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const v1::KeyInfo& key : response.keys()) {
      rows.push_back({key.fingerprint(), key.key_type(), RoleName(key.role()), key.source(),
                      absl::StrCat(key.active_sessions()), FormatTime(key.last_used(), key.has_last_used()),
                      key.comment().empty() ? "-" : key.comment(),
                      key.options().text().empty() ? "-" : key.options().text()});
    }
    PrintTable(out_, {"FINGERPRINT", "TYPE", "ROLE", "SOURCE", "SESSIONS", "LAST USED", "COMMENT", "OPTIONS"},
               rows);
    return kExitOk;
  }

  int KeysRemove() {
    Allow(line_);
    ExpectWords(line_, 3, "keys rm FINGERPRINT [--kill]");
    v1::RemoveKeyRequest request;
    request.set_fingerprint(line_.words[2]);
    request.set_kill_sessions(line_.Has("--kill"));
    auto stub = v1::Keys::NewStub(Channel());
    v1::RemoveKeyResponse response;
    if (auto s = Call(&v1::Keys::Stub::RemoveKey, stub, request, &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
    } else {
      out_ << "removed " << response.key().fingerprint();
      if (request.kill_sessions()) out_ << "; disconnected " << response.sessions_killed() << " session(s)";
      out_ << "\n";
    }
    return kExitOk;
  }

  int KeysImport() {
    Allow(line_);
    ExpectWords(line_, 3, "keys import FILE|- [--role tunnel|admin] [--skip-existing]");
    v1::ImportKeysRequest request;
    request.set_authorized_keys(ReadInput(line_.words[2], in_));
    request.set_role(ParseRole(line_.Get("--role")));
    request.set_skip_existing(line_.Has("--skip-existing"));
    auto stub = v1::Keys::NewStub(Channel());
    v1::ImportKeysResponse response;
    if (auto s = Call(&v1::Keys::Stub::ImportKeys, stub, request, &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
    } else {
      out_ << "imported " << response.keys_size() << " key(s), skipped " << response.skipped() << "\n";
    }
    return kExitOk;
  }

  int KeysExport() {
    Allow(line_);
    ExpectWords(line_, 2, "keys export [--include-files]");
    v1::ExportKeysRequest request;
    request.set_include_files(line_.Has("--include-files"));
    auto stub = v1::Keys::NewStub(Channel());
    v1::ExportKeysResponse response;
    if (auto s = Call(&v1::Keys::Stub::ExportKeys, stub, request, &response); !s.ok()) return Fail(s);
    out_ << (json_ ? Json(response) : response.authorized_keys());
    return kExitOk;
  }

  int PolicyGet() {
    Allow(line_);
    ExpectWords(line_, 2, "policy get");
    auto stub = v1::Policy::NewStub(Channel());
    v1::GetPolicyResponse response;
    if (auto s = Call(&v1::Policy::Stub::GetPolicy, stub, v1::GetPolicyRequest(), &response); !s.ok()) {
      return Fail(s);
    }
    if (json_) {
      out_ << Json(response);
    } else {
      PrintPolicy(out_, response.policy());
    }
    return kExitOk;
  }

  int PolicySet() {
    Allow(line_);
    if (line_.words.size() < 3) throw UsageError{"usage: alknet-admin policy set KEY=VALUE..."};
    v1::SetPolicyRequest request;
    for (size_t i = 2; i < line_.words.size(); ++i) {
      if (SetForwarding(*request.mutable_policy()->mutable_forwarding(), line_.words[i], in_)) continue;
      SetLimit(*request.mutable_policy(), line_.words[i]);
    }
    auto stub = v1::Policy::NewStub(Channel());
    v1::SetPolicyResponse response;
    if (auto s = Call(&v1::Policy::Stub::SetPolicy, stub, request, &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
    } else {
      PrintPolicy(out_, response.policy());
    }
    return kExitOk;
  }

  int PolicyTest() {
    Allow(line_);
    ExpectWords(line_, 2, "policy test --key FINGERPRINT --to HOST:PORT");
    if (!line_.Has("--to")) throw UsageError{"policy test: --to HOST:PORT is required"};
    absl::StatusOr<HostPort> to = ParseHostPort(line_.Get("--to"), /*allow_zero=*/false);
    if (!to.ok()) throw UsageError{absl::StrCat("--to: ", to.status().message())};
    v1::TestForwardRequest request;
    request.set_key_fingerprint(line_.Get("--key"));
    request.set_host(to->host);
    request.set_port(to->port);
    request.set_direction(line_.Get("--direction"));
    request.set_transport(line_.Get("--transport"));
    auto stub = v1::Policy::NewStub(Channel());
    v1::TestForwardResponse response;
    if (auto s = Call(&v1::Policy::Stub::TestForward, stub, request, &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
      return kExitOk;
    }
    auto verdict = [](const v1::ForwardDecision& d) {
      return absl::StrCat(d.allow() ? "allow" : "deny", " by ", d.rule(), " (", d.reason(), ")");
    };
    if (!response.needs_address()) {
      out_ << (response.by_name().allow() ? "allowed" : "denied") << ": " << verdict(response.by_name()) << "\n";
      return kExitOk;
    }
    out_ << "by name: " << response.by_name().reason() << "\n";
    if (!response.resolve_error().empty()) {
      out_ << "denied: the agent cannot resolve the host (" << response.resolve_error() << ")\n";
      return kExitOk;
    }
    for (const auto& row : response.addresses()) {
      out_ << "  " << row.address() << ": " << verdict(row.decision()) << "\n";
    }
    out_ << (response.allowed() ? "allowed: the agent connects to the allowed addresses only\n"
                                : "denied: every resolved address is denied\n");
    return kExitOk;
  }

  int PolicyCheck() {
    Allow(line_);
    ExpectWords(line_, 3, "policy check FILE");
    const std::string& path = line_.words[2];
    v1::ValidatePolicyRequest request;
    request.set_config_yaml(ReadInput(path, in_));
    auto stub = v1::Policy::NewStub(Channel());
    v1::ValidatePolicyResponse response;
    if (auto s = Call(&v1::Policy::Stub::ValidatePolicy, stub, request, &response); !s.ok()) {
      std::string message = s.error_message();
      if (message.rfind("config_yaml:", 0) == 0) message = path + message.substr(11);
      return Fail(grpc::Status(s.error_code(), message));
    }
    if (json_) {
      out_ << Json(response);
    } else {
      out_ << path << ": valid; the policy would be:\n";
      PrintPolicy(out_, response.policy());
    }
    return kExitOk;
  }

  int PenaltiesList() {
    Allow(line_);
    ExpectWords(line_, 2, "penalties list");
    auto stub = v1::Policy::NewStub(Channel());
    v1::ListPenaltiesResponse response;
    if (auto s = Call(&v1::Policy::Stub::ListPenalties, stub, v1::ListPenaltiesRequest(), &response);
        !s.ok()) {
      return Fail(s);
    }
    if (json_) {
      out_ << Json(response);
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const v1::PenalisedSource& source : response.sources()) {
      rows.push_back({source.netblock(), absl::StrCat((source.remaining_ms() + 999) / 1000, "s"),
                      source.refused() ? "refused" : "counting", source.last_event()});
    }
    PrintTable(out_, {"SOURCE", "REMAINING", "STATE", "LAST EVENT"}, rows);
    return kExitOk;
  }

  int PenaltiesClear() {
    Allow(line_);
    if (line_.words.size() > 3) throw UsageError{"usage: alknet-admin penalties clear [SOURCE]"};
    v1::ClearPenaltiesRequest request;
    if (line_.words.size() == 3) request.set_source(line_.words[2]);
    auto stub = v1::Policy::NewStub(Channel());
    v1::ClearPenaltiesResponse response;
    if (auto s = Call(&v1::Policy::Stub::ClearPenalties, stub, request, &response); !s.ok()) {
      return Fail(s);
    }
    if (json_) {
      out_ << Json(response);
    } else {
      out_ << "cleared " << response.cleared() << " source(s)\n";
    }
    return kExitOk;
  }

  int SessionsList() {
    Allow(line_);
    ExpectWords(line_, 2, "sessions list [--all]");
    auto stub = v1::Sessions::NewStub(Channel());
    v1::ListSessionsRequest request;
    request.set_all(line_.Has("--all"));
    v1::ListSessionsResponse response;
    if (auto s = Call(&v1::Sessions::Stub::ListSessions, stub, request, &response); !s.ok()) {
      return Fail(s);
    }
    if (json_) {
      out_ << Json(response);
      return kExitOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const v1::SessionInfo& session : response.sessions()) {
      std::string source = session.source_address().find(':') != std::string::npos
                               ? absl::StrCat("[", session.source_address(), "]:", session.source_port())
                               : absl::StrCat(session.source_address(), ":", session.source_port());
      rows.push_back({absl::StrCat(session.id()), session.user().empty() ? "-" : session.user(),
                      session.authenticated() ? session.key_fingerprint() : "(authenticating)", source,
                      session.transport(), FormatTime(session.start_time(), session.has_start_time()),
                      absl::StrCat(session.open_channels()), FormatBytes(session.bytes_up()),
                      FormatBytes(session.bytes_down())});
      if (request.all()) rows.back().insert(rows.back().begin(), session.replica());
    }
    std::vector<std::string> header = {"ID", "USER", "KEY", "SOURCE", "TRANSPORT", "STARTED", "CHANNELS", "UP", "DOWN"};
    if (request.all()) header.insert(header.begin(), "REPLICA");
    PrintTable(out_, header, rows);
    return kExitOk;
  }

  int SessionsKill() {
    Allow(line_);
    v1::KillSessionsRequest request;
    if (line_.Has("--key")) {
      ExpectWords(line_, 2, "sessions kill ID | sessions kill --key FINGERPRINT");
      request.set_key_fingerprint(line_.Get("--key"));
    } else {
      ExpectWords(line_, 3, "sessions kill ID | sessions kill --key FINGERPRINT");
      uint64_t id = 0;
      if (!absl::SimpleAtoi(line_.words[2], &id)) {
        throw UsageError{absl::StrCat("sessions kill: '", line_.words[2], "' is not a session id")};
      }
      request.set_id(id);
    }
    request.set_reason(line_.Get("--reason"));
    request.set_replica(line_.Get("--replica"));
    auto stub = v1::Sessions::NewStub(Channel());
    v1::KillSessionsResponse response;
    if (auto s = Call(&v1::Sessions::Stub::KillSessions, stub, request, &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
    } else {
      out_ << "disconnected " << response.killed() << " session(s)\n";
    }
    return kExitOk;
  }

  int ForwardsList() {
    Allow(line_);
    ExpectWords(line_, 2, "forwards list");
    auto stub = v1::Forwards::NewStub(Channel());
    v1::ListForwardsResponse response;
    if (auto s = Call(&v1::Forwards::Stub::ListForwards, stub, v1::ListForwardsRequest(), &response); !s.ok()) {
      return Fail(s);
    }
    if (json_) {
      out_ << Json(response);
      return kExitOk;
    }
    // A fleet's forwards name their replica: a REPLICA column then.
    const bool fleet = std::any_of(response.forwards().begin(), response.forwards().end(),
                                   [](const v1::ForwardInfo& info) { return !info.forward().replica().empty(); });
    std::vector<std::vector<std::string>> rows;
    for (const v1::ForwardInfo& info : response.forwards()) {
      const v1::Forward& f = info.forward();
      std::string kind = absl::AsciiStrToLower(v1::ForwardKind_Name(f.kind()));
      if (absl::StartsWith(kind, "forward_kind_")) kind.erase(0, 13);
      rows.push_back({f.id(), kind, f.upstream(), info.bound().empty() ? f.listen() : info.bound(),
                      f.target().empty() ? "-" : f.target(), info.state(), absl::StrCat(info.connections()),
                      absl::StrCat(info.bytes_in()), absl::StrCat(info.bytes_out()), info.source(),
                      info.last_error().empty() ? "-" : info.last_error()});
      if (fleet) rows.back().push_back(f.replica().empty() ? "*" : f.replica());
    }
    std::vector<std::string> header = {"ID", "KIND", "UPSTREAM", "LISTEN", "TARGET", "STATE", "CONNECTIONS",
                                       "BYTES IN", "BYTES OUT", "SOURCE", "LAST ERROR"};
    if (fleet) header.push_back("REPLICA");
    PrintTable(out_, header, rows);
    return kExitOk;
  }

  int ForwardsAdd() {
    Allow(line_);
    ExpectWords(line_, 2, "forwards add --kind dynamic|local|remote --upstream NAME --listen HOST:PORT "
                          "[--target HOST:PORT] [--id ID] [--replica ID|*]");
    v1::AddForwardRequest request;
    v1::Forward& forward = *request.mutable_forward();
    std::string kind = line_.Get("--kind");
    if (kind == "dynamic" || kind == "socks") {
      forward.set_kind(v1::FORWARD_KIND_DYNAMIC);
    } else if (kind == "local") {
      forward.set_kind(v1::FORWARD_KIND_LOCAL);
    } else if (kind == "remote") {
      forward.set_kind(v1::FORWARD_KIND_REMOTE);
    } else {
      throw UsageError{absl::StrCat("--kind: '", kind, "' is not dynamic, local or remote")};
    }
    forward.set_id(line_.Get("--id"));
    forward.set_upstream(line_.Get("--upstream"));
    forward.set_listen(line_.Get("--listen"));
    forward.set_target(line_.Get("--target"));
    forward.set_replica(line_.Get("--replica"));
    auto stub = v1::Forwards::NewStub(Channel());
    v1::AddForwardResponse response;
    if (auto s = Call(&v1::Forwards::Stub::AddForward, stub, request, &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
    } else {
      const v1::ForwardInfo& info = response.forward();
      out_ << "added forward " << info.forward().id() << " (" << info.state()
           << (info.bound().empty() ? "" : absl::StrCat(", listening on ", info.bound())) << ")\n";
    }
    return kExitOk;
  }

  int ForwardsRemove() {
    Allow(line_);
    ExpectWords(line_, 3, "forwards rm ID");
    v1::RemoveForwardRequest request;
    request.set_id(line_.words[2]);
    auto stub = v1::Forwards::NewStub(Channel());
    v1::RemoveForwardResponse response;
    if (auto s = Call(&v1::Forwards::Stub::RemoveForward, stub, request, &response); !s.ok()) return Fail(s);
    if (json_) {
      out_ << Json(response);
    } else {
      out_ << "removed forward " << request.id() << "\n";
    }
    return kExitOk;
  }

  const CommandLine& line_;
  std::istream& in_;
  std::ostream& out_;
  std::ostream& err_;
  bool json_;
  std::unique_ptr<Connection> connection_;
};

}  // namespace

std::string UsageText() { return cli::ProgramHelp(AdminProgram()); }

int Run(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err) {
  try {
    CommandLine line = Parse(args);
    // Aliases of the table's verbs.
    if (line.words.size() > 1 && line.words[1] == "ls") line.words[1] = "list";
    if (line.words.size() > 1 && line.words[1] == "remove") line.words[1] = "rm";
    if (line.Has("--help")) {
      // After a command: its own help; after a group ("keys"): the group's commands.
      const cli::Command* command = CommandOf(line);
      if (command != nullptr) {
        out << cli::CommandHelp(AdminProgram(), *command);
      } else if (!line.words.empty()) {
        out << cli::ProgramHelp(AdminProgram(), line.words);
      } else {
        out << UsageText();
      }
      return kExitOk;
    }
    return Commands(line, in, out, err).Dispatch();
  } catch (const UsageError& error) {
    err << "alknet-admin: " << error.message << "\n";
    return kExitUsage;
  } catch (const absl::Status& status) {
    std::string name = CodeName(static_cast<grpc::StatusCode>(status.code()));
    err << "alknet-admin: " << name << ": " << status.message() << "\n";
    return kExitServerError;
  }
}

}  // namespace alknet::admin_cli
