// The admin API's logic: keys, policy, sessions and status over the engine's admin hooks.
#include "agent/admin/admin_core.h"
#include "agent/admin/api_errors.h"
#include "agent/admin/policy_sections.h"
#include "agent/admin/forwarding_proto.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include <libssh/libssh.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/state/state_store.h"
#include "server/auth/fingerprint.h"
#include "server/auth/key_text.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"
#include "server/config/config_schema.h"
#include "server/config/duration.h"
#include "server/config/config_yaml.h"

namespace alknet::admin {
namespace {

using google::protobuf::FieldDescriptor;

constexpr std::string_view kAdminRoleComment = "# alknet-role: admin";
constexpr std::string_view kTunnelRoleComment = "# alknet-role: tunnel";
constexpr size_t kMaxImportKeys = 100000;

void SetTimestamp(google::protobuf::Timestamp* out, absl::Time time) {
  int64_t nanos = absl::ToUnixNanos(time);
  int64_t seconds = nanos / 1000000000;
  int64_t rest = nanos % 1000000000;
  if (rest < 0) {
    rest += 1000000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rest));
}

bool IsAdmin(v1::KeyRole role) { return role == v1::KEY_ROLE_ADMIN; }

// Drops the option name a parser message starts with ("permitopen: invalid port").
std::string_view WithoutOptionName(std::string_view message) {
  for (std::string_view name : {"from: ", "permitopen: ", "permitlisten: ", "expiry-time: ", "principals: "}) {
    if (message.substr(0, name.size()) == name) return message.substr(name.size());
  }
  return message;
}

absl::Status CheckOptionValue(std::string_view field, std::string_view value) {
  if (value.empty()) return FieldError(field, "empty value");
  for (char c : value) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return FieldError(field, absl::StrCat("'", Shown(value),
                                            "' must not contain quotes, backslashes or control characters"));
    }
  }
  return absl::OkStatus();
}

// Checks one option on its own so that an error names the request field it came from.
absl::Status CheckOption(std::string_view field, const std::string& option,
                         const auth::AuthorizedKey& key) {
  absl::StatusOr<auth::AuthorizedKey> parsed = auth::ParseAuthorizedKeyLine(
      absl::StrCat(option, " ", key.key_type, " ", auth::Base64Encode(key.blob)));
  if (!parsed.ok()) return FieldError(field, WithoutOptionName(StdSv(parsed.status().message())));
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> LockStateDir(const std::string& state_dir) {
  std::string path = absl::StrCat(state_dir, "/state.lock");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("open ", path), errno);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "state directory ", state_dir, " is in use by another alknet-agent (", path, " is locked)"));
    }
    return ErrnoStatus(absl::StrCat("lock ", path), errno);
  }
  return fd;
}

}  // namespace

std::string StateFilePath(const std::string& state_dir) {
  if (!state_dir.empty() && state_dir.back() == '/') return state_dir + "state.pb";
  return state_dir + "/state.pb";
}

AdminCore::AdminCore(const config::AgentConfig& config, Options options, Logger& logger,
                     auth::KeyStore& keys)
    : options_(std::move(options)), logger_(logger), keys_(keys), state_dir_(config.state_dir),
      state_path_(StateFilePath(config.state_dir)),
      tls_profile_(config.tls.effective_profile() == config::TlsProfile::kNginx ? "nginx"
                                                                               : "modern"),
      config_(config) {}

absl::StatusOr<std::unique_ptr<AdminCore>> AdminCore::Open(const config::AgentConfig& config,
                                                           Options options, Logger& logger,
                                                           auth::KeyStore& keys) {
  absl::StatusOr<UniqueFd> lock = LockStateDir(config.state_dir);
  if (!lock.ok()) return lock.status();
  std::unique_ptr<AdminCore> core(new AdminCore(config, std::move(options), logger, keys));
  core->lock_fd_ = *std::move(lock);
  if (int removed = state::RemoveStaleTempFiles(core->state_path_); removed > 0) {
    logger.Info("state", "removed temp files of an interrupted write", {{"count", absl::StrCat(removed)}});
  }
  absl::StatusOr<std::optional<state::v1::State>> read = state::ReadStateFile(core->state_path_);
  if (!read.ok()) return read.status();

  absl::MutexLock lock_mu(&core->mu_);
  bool fresh = !read->has_value();
  state::v1::State state = fresh ? state::v1::State() : **read;
  for (int i = 0; i < state.keys_size(); ++i) {
    const state::v1::StoredKey& stored = state.keys(i);
    absl::StatusOr<auth::AuthorizedKey> key = auth::ParseAuthorizedKeyLine(stored.authorized_keys_line());
    if (!key.ok()) {
      return absl::DataLossError(absl::StrCat(
          "state file ", core->state_path_, ": key ", i + 1, " does not parse (",
          key.status().message(), "); refusing to start and leaving it untouched"));
    }
    key->source = "api";
    key->admin_role = IsAdmin(stored.role());
    core->api_keys_.push_back({stored, *std::move(key)});
  }
  state::v1::State merged = state;
  core->config_ = MergeConfigPolicy(config, *merged.mutable_policy(), logger);
  if (fresh || merged.SerializeAsString() != state.SerializeAsString()) {
    core->state_ = state;
    if (absl::Status written = core->Commit(std::move(merged)); !written.ok()) return written;
  } else {
    core->state_ = std::move(state);
  }
  logger.Info("state", fresh ? "created state file" : "loaded state file",
              {{"path", core->state_path_}, {"api_keys", absl::StrCat(core->api_keys_.size())},
               {"generation", absl::StrCat(core->state_.generation())}});
  core->LoadFileKeys(config);
  core->RebuildSources();
  core->PublishKeys();
  return core;
}

void AdminCore::LoadFileKeys(const config::AgentConfig& config) {
  file_keys_.clear();
  for (const std::string& path : config.authorized_keys) {
    auto parsed = auth::LoadAuthorizedKeysFile(path);
    if (!parsed.ok()) {
      logger_.Error("keys", "cannot read authorized keys",
                    {{"path", path}, {"error", std::string(parsed.status().message())}});
      continue;
    }
    for (const auth::ParseProblem& problem : parsed->problems) {
      logger_.Warn("keys", "skipped bad line", {{"at", problem.source}, {"error", problem.message}});
    }
    for (auth::AuthorizedKey& key : parsed->keys) {
      key.admin_role = false;
      file_keys_.push_back(std::move(key));
    }
  }
  logger_.Info("keys", "loaded authorized keys",
               {{"count", absl::StrCat(file_keys_.size())},
                {"api_keys", absl::StrCat(api_keys_.size())}});
  if (file_keys_.empty() && api_keys_.empty()) {
    std::string target = config.authorized_keys.empty() ? "authorized_keys" : config.authorized_keys[0];
    logger_.Warn("keys", "no authorized keys: nobody can log in yet",
                 {{"hint", absl::StrCat("alknet-admin --socket ", config.admin.socket,
                                        " keys add ~/.ssh/id_ed25519.pub (or append it to ", target,
                                        " and kill -HUP ", getpid(), ")")}});
  }
}

void AdminCore::PublishKeys() {
  std::vector<auth::AuthorizedKey> all;
  all.reserve(api_keys_.size() + file_keys_.size());
  for (const ApiKey& entry : api_keys_) all.push_back(entry.key);
  for (const auth::AuthorizedKey& key : file_keys_) all.push_back(key);
  keys_.Replace(std::make_shared<const auth::KeySet>(std::move(all)));
}

void AdminCore::RebuildSources() {
  source_by_blob_.clear();
  source_by_blob_.reserve(api_keys_.size() + file_keys_.size());
  for (const ApiKey& entry : api_keys_) source_by_blob_.try_emplace(entry.key.blob, "api");
  for (const auth::AuthorizedKey& key : file_keys_) {
    source_by_blob_.try_emplace(key.blob, absl::StrCat("file:", key.source));
  }
}

absl::Status AdminCore::WriteStateFile(const state::v1::State& state) {
  absl::StatusOr<state::WriteResult> written =
      state::WriteStateFile(state_path_, state, nullptr, options_.sync_state_directory);
  if (!written.ok()) {
    logger_.Error("state", "cannot write state file",
                  {{"path", state_path_}, {"error", std::string(written.status().message())}});
    return absl::InternalError(absl::StrCat("cannot write the state file (nothing changed): ",
                                            written.status().message()));
  }
  if (!written->durability_warning.empty()) {
    // The new file is in place and a restart reads it: the change is made, in memory too.
    logger_.Warn("state", "state file changed but not yet durable (directory fsync failed)",
                 {{"path", state_path_}, {"error", written->durability_warning}});
  }
  return absl::OkStatus();
}

absl::Status AdminCore::WriteState() {
  state_.set_generation(state_.generation() + 1);
  if (absl::Status written = WriteStateFile(state_); !written.ok()) {
    state_.set_generation(state_.generation() - 1);
    return written;
  }
  return absl::OkStatus();
}

absl::Status AdminCore::Commit(state::v1::State next) {
  next.set_generation(state_.generation() + 1);
  if (absl::Status written = WriteStateFile(next); !written.ok()) return written;
  state_ = std::move(next);
  return absl::OkStatus();
}

config::Limits AdminCore::limits() const {
  absl::MutexLock lock(&mu_);
  return config_.limits;
}

void AdminCore::CopyPolicyTo(config::AgentConfig& config) const {
  absl::MutexLock lock(&mu_);
  config.limits = config_.limits;
  config.penalties = config_.penalties;
  config.rate_limits = config_.rate_limits;
  config.forwarding = config_.forwarding;
}

void AdminCore::AttachEngine(ServerEngine* engine) {
  absl::MutexLock lock(&mu_);
  engine_ = engine;
}

void AdminCore::SetAdminListeners(std::vector<std::string> addresses) {
  absl::MutexLock lock(&mu_);
  admin_listeners_ = std::move(addresses);
}

void AdminCore::Reload(const config::AgentConfig& config) {
  ServerEngine* engine = nullptr;
  config::AgentConfig next;
  {
    absl::MutexLock lock(&mu_);
    if (config.listen != config_.listen || config.host_keys != config_.host_keys ||
        config.workers != config_.workers || config.admin != config_.admin ||
        config.metrics != config_.metrics || config.state_dir != config_.state_dir ||
        config.ssh != config_.ssh || config.tls != config_.tls) {
      logger_.Warn("agent", "SIGHUP: changed listeners, host keys, workers, metrics, admin, tls or "
                            "ssh algorithm settings take effect only after a restart");
    }
    state::v1::State merged = state_;
    next = MergeConfigPolicy(config, *merged.mutable_policy(), logger_);
    if (merged.SerializeAsString() != state_.SerializeAsString()) {
      if (absl::Status written = Commit(std::move(merged)); !written.ok()) {
        next = config;  // the state file is unchanged: keep the policy in force
        next.limits = config_.limits;
        next.penalties = config_.penalties;
        next.rate_limits = config_.rate_limits;
        next.forwarding = config_.forwarding;
      }
    }
    config_ = next;
    LoadFileKeys(config_);
    RebuildSources();
    PublishKeys();
    engine = engine_;
  }
  if (engine != nullptr) engine->UpdatePolicy(next);
}

// ---- keys ----

std::optional<std::string> AdminCore::ExistingSource(const std::string& blob) const {
  auto it = source_by_blob_.find(blob);
  if (it == source_by_blob_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<AdminCore::ApiKey> AdminCore::BuildKey(const v1::AddKeyRequest& request,
                                                      absl::Time now) const {
  std::string_view line = StdSv(absl::StripAsciiWhitespace(Sv(request.public_key())));
  if (line.empty()) return FieldError("public_key", "required (an OpenSSH public key line)");
  if (line.find('\n') != std::string_view::npos) {
    return FieldError("public_key", "expected one authorized_keys line, got several");
  }
  absl::StatusOr<auth::AuthorizedKey> base = auth::ParseAuthorizedKeyLine(line);
  if (!base.ok()) return FieldError("public_key", StdSv(base.status().message()));
  if (base->key_type == "ssh-rsa") {
    int bits = auth::RsaModulusBits(base->blob);
    if (bits < kMinimumApiRsaBits) {
      return FieldError("public_key",
                        absl::StrCat("RSA key too short (", bits, " bits; the admin API requires at least ",
                                     kMinimumApiRsaBits, ")"));
    }
  }
  if (request.role() != v1::KEY_ROLE_UNSPECIFIED && request.role() != v1::KEY_ROLE_TUNNEL &&
      request.role() != v1::KEY_ROLE_ADMIN) {
    return FieldError("role", absl::StrCat("unknown role ", request.role()));
  }

  std::vector<std::string> options;
  if (std::string own = auth::OptionsText(line, *base); !own.empty()) options.push_back(std::move(own));
  auto add_option = [&](std::string_view field, std::string option) -> absl::Status {
    if (absl::Status status = CheckOption(field, option, *base); !status.ok()) return status;
    options.push_back(std::move(option));
    return absl::OkStatus();
  };
  if (request.from_size() > 0) {
    for (const std::string& entry : request.from()) {
      if (absl::Status s = CheckOptionValue("from", entry); !s.ok()) return s;
    }
    if (absl::Status s = add_option("from", absl::StrCat("from=\"", absl::StrJoin(request.from(), ","), "\""));
        !s.ok()) {
      return s;
    }
  }
  for (const std::string& entry : request.permit_open()) {
    if (absl::Status s = CheckOptionValue("permit_open", entry); !s.ok()) return s;
    if (absl::Status s = add_option("permit_open", absl::StrCat("permitopen=\"", entry, "\"")); !s.ok()) return s;
  }
  for (const std::string& entry : request.permit_listen()) {
    if (absl::Status s = CheckOptionValue("permit_listen", entry); !s.ok()) return s;
    if (absl::Status s = add_option("permit_listen", absl::StrCat("permitlisten=\"", entry, "\"")); !s.ok()) {
      return s;
    }
  }
  if (!request.expiry().empty()) {
    if (absl::Status s = CheckOptionValue("expiry", request.expiry()); !s.ok()) return s;
    if (absl::Status s = add_option("expiry", absl::StrCat("expiry-time=\"", request.expiry(), "\"")); !s.ok()) {
      return s;
    }
  }
  if (request.cert_authority()) options.push_back("cert-authority");
  if (request.principals_size() > 0) {
    if (!request.cert_authority() && !base->options.cert_authority) {
      return FieldError("principals", "only valid with cert_authority");
    }
    for (const std::string& entry : request.principals()) {
      if (absl::Status s = CheckOptionValue("principals", entry); !s.ok()) return s;
    }
    if (absl::Status s = add_option("principals", absl::StrCat("cert-authority,principals=\"",
                                                               absl::StrJoin(request.principals(), ","), "\""));
        !s.ok()) {
      return s;
    }
    options.back() = absl::StrCat("principals=\"", absl::StrJoin(request.principals(), ","), "\"");
  }
  auth::AuthorizedKey key = *base;
  if (!request.comment().empty()) {
    for (char c : request.comment()) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return FieldError("comment", "must not contain control characters");
      }
    }
    key.comment = request.comment();
  }
  std::string final_line = auth::KeyLine(absl::StrJoin(options, ","), key);
  absl::StatusOr<auth::AuthorizedKey> parsed = auth::ParseAuthorizedKeyLine(final_line);
  if (!parsed.ok()) return FieldError("public_key", StdSv(parsed.status().message()));
  parsed->source = "api";
  parsed->admin_role = IsAdmin(request.role());
  ApiKey entry;
  entry.stored.set_authorized_keys_line(final_line);
  entry.stored.set_role(request.role() == v1::KEY_ROLE_ADMIN ? v1::KEY_ROLE_ADMIN : v1::KEY_ROLE_TUNNEL);
  entry.stored.set_added_unix_seconds(absl::ToUnixSeconds(now));
  entry.key = *std::move(parsed);
  return entry;
}

absl::flat_hash_map<std::string, uint32_t> AdminCore::SessionsPerKey() {
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
  }
  absl::flat_hash_map<std::string, uint32_t> counts;
  if (engine == nullptr) return counts;
  for (const SessionSnapshot& session : engine->ListSessions()) {
    if (session.authenticated) ++counts[session.key_fingerprint];
  }
  return counts;
}

v1::KeyInfo AdminCore::Describe(const auth::AuthorizedKey& key, const state::v1::StoredKey* stored,
                                const absl::flat_hash_map<std::string, uint32_t>& sessions) const {
  v1::KeyInfo info;
  info.set_fingerprint(key.fingerprint);
  info.set_key_type(key.key_type);
  info.set_comment(key.comment);
  v1::KeyOptions& options = *info.mutable_options();
  for (const std::string& from : key.options.from) options.add_from(from);
  for (const auto& pattern : key.options.permit_open) options.add_permit_open(auth::RenderHostPort(pattern));
  for (const auto& pattern : key.options.permit_listen) options.add_permit_listen(auth::RenderHostPort(pattern));
  if (key.options.expiry) SetTimestamp(options.mutable_expiry(), *key.options.expiry);
  options.set_cert_authority(key.options.cert_authority);
  for (const std::string& principal : key.options.principals) options.add_principals(principal);
  options.set_restrict(key.options.restrict);
  options.set_port_forwarding(key.options.port_forwarding);
  if (stored != nullptr) {
    options.set_text(auth::OptionsText(stored->authorized_keys_line(), key));
    info.set_role(stored->role());
    info.set_source("api");
    info.set_read_only(false);
    SetTimestamp(info.mutable_added_time(), absl::FromUnixSeconds(stored->added_unix_seconds()));
    info.set_authorized_keys_line(stored->authorized_keys_line());
  } else {
    options.set_text(auth::RenderOptions(key.options));
    info.set_role(v1::KEY_ROLE_TUNNEL);
    info.set_source(absl::StrCat("file:", key.source));
    info.set_read_only(true);
    info.set_authorized_keys_line(auth::KeyLine(options.text(), key));
  }
  if (std::optional<absl::Time> used = keys_.LastUsed(key.fingerprint)) {
    SetTimestamp(info.mutable_last_used(), *used);
  }
  auto it = sessions.find(key.fingerprint);
  info.set_active_sessions(it == sessions.end() ? 0 : it->second);
  return info;
}

absl::StatusOr<v1::AddKeyResponse> AdminCore::AddKey(const v1::AddKeyRequest& request) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<ApiKey> entry = BuildKey(request, absl::Now());
  if (!entry.ok()) return entry.status();
  if (std::optional<std::string> source = ExistingSource(entry->key.blob)) {
    return absl::AlreadyExistsError(absl::StrCat("public_key: key ", entry->key.fingerprint,
                                                 " is already present (source ", *source, ")"));
  }
  // Changed in place (no copy of a large state): undone if the write fails.
  *state_.add_keys() = entry->stored;
  if (absl::Status status = WriteState(); !status.ok()) {
    state_.mutable_keys()->RemoveLast();
    return status;
  }
  source_by_blob_.try_emplace(entry->key.blob, "api");
  api_keys_.push_back(*entry);
  PublishKeys();
  logger_.Info("admin", "key added",
               {{"key", entry->key.fingerprint},
                {"role", IsAdmin(entry->stored.role()) ? "admin" : "tunnel"},
                {"comment", entry->key.comment}});
  v1::AddKeyResponse response;
  *response.mutable_key() = Describe(entry->key, &entry->stored, {});
  return response;
}

v1::ListKeysResponse AdminCore::ListKeys() {
  absl::flat_hash_map<std::string, uint32_t> sessions = SessionsPerKey();
  absl::MutexLock lock(&mu_);
  v1::ListKeysResponse response;
  response.mutable_keys()->Reserve(static_cast<int>(api_keys_.size() + file_keys_.size()));
  for (const ApiKey& entry : api_keys_) *response.add_keys() = Describe(entry.key, &entry.stored, sessions);
  for (const auth::AuthorizedKey& key : file_keys_) *response.add_keys() = Describe(key, nullptr, sessions);
  return response;
}

absl::StatusOr<v1::RemoveKeyResponse> AdminCore::RemoveKey(const v1::RemoveKeyRequest& request) {
  const std::string& fingerprint = request.fingerprint();
  if (!absl::StartsWith(fingerprint, "SHA256:") || fingerprint.size() < 8) {
    return FieldError("fingerprint", absl::StrCat("'", Shown(fingerprint), "' is not a SHA256:... key fingerprint"));
  }
  v1::RemoveKeyResponse response;
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    size_t index = api_keys_.size();
    for (size_t i = 0; i < api_keys_.size(); ++i) {
      if (api_keys_[i].key.fingerprint == fingerprint) {
        index = i;
        break;
      }
    }
    if (index == api_keys_.size()) {
      for (const auth::AuthorizedKey& key : file_keys_) {
        if (key.fingerprint == fingerprint) {
          std::string path = key.source.substr(0, key.source.rfind(':'));
          return absl::FailedPreconditionError(absl::StrCat(
              "fingerprint: key ", fingerprint, " comes from the authorized_keys file ", path,
              " (file:", key.source, "); remove it there and send SIGHUP"));
        }
      }
      return absl::NotFoundError(absl::StrCat("fingerprint: no key ", fingerprint));
    }
    const int position = static_cast<int>(index);
    state::v1::StoredKey removed = state_.keys(position);
    state_.mutable_keys()->DeleteSubrange(position, 1);
    if (absl::Status status = WriteState(); !status.ok()) {
      *state_.add_keys() = std::move(removed);  // back to its place
      for (int i = state_.keys_size() - 1; i > position; --i) state_.mutable_keys()->SwapElements(i, i - 1);
      return status;
    }
    *response.mutable_key() = Describe(api_keys_[index].key, &api_keys_[index].stored, {});
    std::string blob = api_keys_[index].key.blob;
    api_keys_.erase(api_keys_.begin() + static_cast<std::ptrdiff_t>(index));
    source_by_blob_.erase(blob);
    for (const auth::AuthorizedKey& key : file_keys_) {
      if (key.blob == blob) {
        source_by_blob_.try_emplace(blob, absl::StrCat("file:", key.source));
        break;
      }
    }
    PublishKeys();
    engine = engine_;
  }
  if (request.kill_sessions() && engine != nullptr) {
    int killed = engine->KillSessions(
        [&](const SessionSnapshot& session) {
          return session.authenticated && session.key_fingerprint == fingerprint;
        },
        "key removed by admin");
    response.set_sessions_killed(static_cast<uint32_t>(killed));
  }
  logger_.Info("admin", "key removed",
               {{"key", fingerprint}, {"sessions_killed", absl::StrCat(response.sessions_killed())}});
  return response;
}

absl::StatusOr<v1::ImportKeysResponse> AdminCore::ImportKeys(const v1::ImportKeysRequest& request) {
  absl::MutexLock lock(&mu_);
  absl::Time now = absl::Now();
  std::vector<ApiKey> added;
  absl::flat_hash_map<std::string, size_t> seen;  // blob -> line
  uint32_t skipped = 0;
  int next_role = -1;  // from a role comment, for the next key only
  size_t line_number = 0;
  for (absl::string_view raw : absl::StrSplit(Sv(request.authorized_keys()), '\n')) {
    ++line_number;
    std::string_view line = StdSv(absl::StripAsciiWhitespace(raw));
    if (line.empty()) continue;
    if (line.front() == '#') {
      if (line == kAdminRoleComment) next_role = v1::KEY_ROLE_ADMIN;
      if (line == kTunnelRoleComment) next_role = v1::KEY_ROLE_TUNNEL;
      continue;
    }
    v1::AddKeyRequest one;
    one.set_public_key(std::string(line));
    one.set_role(next_role >= 0 ? static_cast<v1::KeyRole>(next_role) : request.role());
    next_role = -1;
    absl::StatusOr<ApiKey> entry = BuildKey(one, now);
    std::string where = absl::StrCat("authorized_keys line ", line_number);
    if (!entry.ok()) {
      return absl::Status(entry.status().code(), absl::StrCat(where, ": ", entry.status().message()));
    }
    std::optional<std::string> source = ExistingSource(entry->key.blob);
    if (!source) {
      if (auto it = seen.find(entry->key.blob); it != seen.end()) {
        source = absl::StrCat("authorized_keys line ", it->second);
      }
    }
    if (source) {
      if (request.skip_existing()) {
        ++skipped;
        continue;
      }
      return absl::AlreadyExistsError(absl::StrCat(where, ": key ", entry->key.fingerprint,
                                                   " is already present (source ", *source, ")"));
    }
    seen.emplace(entry->key.blob, line_number);
    added.push_back(*std::move(entry));
    if (added.size() > kMaxImportKeys) {
      return FieldError("authorized_keys", absl::StrCat("more than ", kMaxImportKeys, " keys"));
    }
  }
  v1::ImportKeysResponse response;
  response.set_skipped(skipped);
  if (!added.empty()) {
    const int before = state_.keys_size();
    for (const ApiKey& entry : added) *state_.add_keys() = entry.stored;
    if (absl::Status status = WriteState(); !status.ok()) {
      state_.mutable_keys()->DeleteSubrange(before, state_.keys_size() - before);
      return status;
    }
    for (ApiKey& entry : added) {
      *response.add_keys() = Describe(entry.key, &entry.stored, {});
      source_by_blob_.try_emplace(entry.key.blob, "api");
      api_keys_.push_back(std::move(entry));
    }
    PublishKeys();
  }
  logger_.Info("admin", "keys imported",
               {{"added", absl::StrCat(added.size())}, {"skipped", absl::StrCat(skipped)}});
  return response;
}

v1::ExportKeysResponse AdminCore::ExportKeys(const v1::ExportKeysRequest& request) {
  absl::MutexLock lock(&mu_);
  std::string text = "# alknet admin API keys (alknet-admin keys export)\n";
  for (const ApiKey& entry : api_keys_) {
    if (IsAdmin(entry.stored.role())) absl::StrAppend(&text, Sv(kAdminRoleComment), "\n");
    absl::StrAppend(&text, entry.stored.authorized_keys_line(), "\n");
  }
  if (request.include_files()) {
    for (const auth::AuthorizedKey& key : file_keys_) {
      absl::StrAppend(&text, "# file:", key.source, " (read-only): ",
                      auth::KeyLine(auth::RenderOptions(key.options), key), "\n");
    }
  }
  v1::ExportKeysResponse response;
  response.set_authorized_keys(std::move(text));
  return response;
}

// ---- policy ----

v1::GetPolicyResponse AdminCore::GetPolicy() {
  absl::MutexLock lock(&mu_);
  v1::GetPolicyResponse response;
  *response.mutable_policy() = PolicyToProto(config_);
  return response;
}

absl::StatusOr<v1::SetPolicyResponse> AdminCore::SetPolicy(const v1::SetPolicyRequest& request) {
  if (!request.has_policy()) return FieldError("policy", "required");
  config::AgentConfig candidate;
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    candidate = config_;
    if (absl::Status status = ApplyPolicyProto(request.policy(), candidate); !status.ok()) return status;
    if (absl::Status status = config::Validate(candidate); !status.ok()) {
      return absl::InvalidArgumentError(status.message());
    }
    state::v1::StoredPolicy previous = state_.policy();
    v1::PolicySpec stored = PolicyToProto(candidate);
    state::v1::StoredPolicy& policy = *state_.mutable_policy();
    *policy.mutable_limits() = stored.limits();
    *policy.mutable_penalties() = stored.penalties();
    *policy.mutable_rate_limits() = stored.rate_limits();
    *policy.mutable_forwarding() = stored.forwarding();
    if (absl::Status status = WriteState(); !status.ok()) {
      *state_.mutable_policy() = std::move(previous);
      return status;
    }
    config_.limits = candidate.limits;
    config_.penalties = candidate.penalties;
    config_.rate_limits = candidate.rate_limits;
    config_.forwarding = candidate.forwarding;
    engine = engine_;
  }
  if (engine != nullptr) engine->UpdatePolicy(candidate);
  v1::SetPolicyResponse response;
  *response.mutable_policy() = PolicyToProto(candidate);
  logger_.Info("admin", "policy changed",
               {{"limits", response.policy().limits().ShortDebugString()},
                {"penalties", response.policy().penalties().ShortDebugString()},
                {"rate_limits", response.policy().rate_limits().ShortDebugString()},
                {"forwarding_rules", absl::StrCat(candidate.forwarding.rules.size())}});
  return response;
}

absl::StatusOr<v1::ValidatePolicyResponse> AdminCore::ValidatePolicy(
    const v1::ValidatePolicyRequest& request) {
  config::AgentConfig candidate;
  {
    absl::MutexLock lock(&mu_);
    candidate = config_;
  }
  if (request.has_config_yaml()) {
    if (absl::Status status = config::ApplyYaml(request.config_yaml(), "config_yaml", candidate);
        !status.ok()) {
      return absl::InvalidArgumentError(status.message());
    }
  } else if (request.has_policy()) {
    if (absl::Status status = ApplyPolicyProto(request.policy(), candidate); !status.ok()) return status;
  } else {
    return FieldError("source", "a policy or config_yaml is required");
  }
  if (absl::Status status = config::Validate(candidate); !status.ok()) {
    return absl::InvalidArgumentError(status.message());
  }
  v1::ValidatePolicyResponse response;
  *response.mutable_policy() = PolicyToProto(candidate);
  return response;
}

// ---- sessions ----

v1::ListSessionsResponse AdminCore::ListSessions() {
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
  }
  v1::ListSessionsResponse response;
  if (engine == nullptr) return response;
  for (const SessionSnapshot& snapshot : engine->ListSessions()) {
    v1::SessionInfo& info = *response.add_sessions();
    info.set_id(snapshot.id);
    info.set_key_fingerprint(snapshot.key_fingerprint);
    info.set_user(snapshot.user);
    info.set_source_address(snapshot.peer.ip);
    info.set_source_port(snapshot.peer.port);
    info.set_transport(snapshot.transport);
    SetTimestamp(info.mutable_start_time(), snapshot.started);
    info.set_open_channels(snapshot.open_channels);
    info.set_channels_opened(snapshot.channels_opened);
    info.set_bytes_up(snapshot.bytes_upstream);
    info.set_bytes_down(snapshot.bytes_downstream);
    info.set_authenticated(snapshot.authenticated);
  }
  return response;
}

v1::ListPenaltiesResponse AdminCore::ListPenalties() {
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
  }
  v1::ListPenaltiesResponse response;
  if (engine == nullptr) return response;
  for (const PenaltyEntry& entry : engine->penalties().List()) {
    v1::PenalisedSource* source = response.add_sources();
    source->set_netblock(entry.netblock);
    source->set_remaining_ms(absl::ToInt64Milliseconds(entry.remaining));
    source->set_refused(entry.refused);
    source->set_last_event(std::string(PenaltyEventName(entry.last_event)));
  }
  return response;
}

absl::StatusOr<v1::ClearPenaltiesResponse> AdminCore::ClearPenalties(
    const v1::ClearPenaltiesRequest& request) {
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
  }
  v1::ClearPenaltiesResponse response;
  if (engine == nullptr) return response;
  absl::StatusOr<int> cleared = engine->penalties().Clear(request.source());
  if (!cleared.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("source: ", cleared.status().message()));
  }
  response.set_cleared(static_cast<uint32_t>(*cleared));
  logger_.Info("admin", "penalties cleared",
               {{"source", request.source().empty() ? "all" : request.source()},
                {"cleared", absl::StrCat(*cleared)}});
  return response;
}

absl::StatusOr<v1::KillSessionsResponse> AdminCore::KillSessions(const v1::KillSessionsRequest& request) {
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
  }
  std::string reason = request.reason().empty() ? "killed by admin" : request.reason();
  for (char& c : reason) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  v1::KillSessionsResponse response;
  switch (request.target_case()) {
    case v1::KillSessionsRequest::kId: {
      uint64_t id = request.id();
      int killed = engine == nullptr ? 0
                                     : engine->KillSessions(
                                           [id](const SessionSnapshot& s) { return s.id == id; }, reason);
      if (killed == 0) return absl::NotFoundError(absl::StrCat("id: no session ", id));
      response.set_killed(static_cast<uint32_t>(killed));
      break;
    }
    case v1::KillSessionsRequest::kKeyFingerprint: {
      const std::string& fingerprint = request.key_fingerprint();
      if (!absl::StartsWith(fingerprint, "SHA256:")) {
        return FieldError("key_fingerprint",
                          absl::StrCat("'", Shown(fingerprint), "' is not a SHA256:... key fingerprint"));
      }
      int killed = engine == nullptr ? 0
                                     : engine->KillSessions(
                                           [&](const SessionSnapshot& s) {
                                             return s.authenticated && s.key_fingerprint == fingerprint;
                                           },
                                           reason);
      response.set_killed(static_cast<uint32_t>(killed));
      break;
    }
    default:
      return FieldError("target", "an id or a key_fingerprint is required");
  }
  logger_.Info("admin", "sessions killed", {{"count", absl::StrCat(response.killed())}, {"reason", reason}});
  return response;
}

// ---- agent ----

v1::GetStatusResponse AdminCore::GetStatus() {
  v1::GetStatusResponse response;
  response.set_version(options_.version);
  response.set_libssh_version(ssh_version(0));
  response.set_pid(static_cast<uint32_t>(::getpid()));
  SetTimestamp(response.mutable_start_time(), started_);
  absl::Duration uptime = absl::Now() - started_;
  response.mutable_uptime()->set_seconds(absl::ToInt64Seconds(uptime));
  response.mutable_uptime()->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(uptime - absl::Seconds(absl::ToInt64Seconds(uptime)))));
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
    response.set_keys(static_cast<uint32_t>(api_keys_.size() + file_keys_.size()));
    response.set_state_file(state_path_);
    for (const std::string& address : admin_listeners_) {
      v1::Listener& listener = *response.add_listeners();
      listener.set_kind("admin");
      listener.set_address(address);
    }
  }
  if (engine != nullptr) {
    for (const EndpointUrl& url : engine->bound_endpoints()) {
      v1::Listener& listener = *response.add_listeners();
      listener.set_kind("ssh");
      listener.set_address(url.ToString());
      if (url.scheme == "tls") listener.set_tls_profile(tls_profile_);
    }
    if (std::string metrics = engine->metrics_url(); !metrics.empty()) {
      v1::Listener& listener = *response.add_listeners();
      listener.set_kind("metrics");
      listener.set_address(metrics);
    }
    response.set_ready(engine->Ready());
    response.set_sessions(static_cast<uint32_t>(engine->active_sessions()));
  }
  return response;
}

// ---- binary upgrade (issue 20) ----

void AdminCore::SetUpgradeHandler(std::function<absl::StatusOr<uint32_t>()> handler) {
  absl::MutexLock lock(&mu_);
  upgrade_handler_ = std::move(handler);
}

absl::StatusOr<v1::UpgradeResponse> AdminCore::Upgrade() {
  std::function<absl::StatusOr<uint32_t>()> handler;
  {
    absl::MutexLock lock(&mu_);
    handler = upgrade_handler_;
  }
  if (!handler) return absl::UnimplementedError("this agent cannot upgrade itself");
  absl::StatusOr<uint32_t> pid = handler();
  if (!pid.ok()) return pid.status();
  v1::UpgradeResponse response;
  response.set_pid(*pid);
  return response;
}

void AdminCore::ReleaseStateLock() {
  absl::MutexLock lock(&mu_);
  lock_fd_.reset();
}

absl::Status AdminCore::RetakeStateLock() {
  absl::StatusOr<UniqueFd> taken = LockStateDir(state_dir_);
  if (!taken.ok()) return taken.status();
  absl::MutexLock lock(&mu_);
  lock_fd_ = *std::move(taken);
  return absl::OkStatus();
}

}  // namespace alknet::admin
