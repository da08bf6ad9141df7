// AdminCore's state: opening and committing it, the state directory's lock, SIGHUP reloads,
// attaching the engine and the client role. The API's calls live in admin_keys.cc,
// admin_policy.cc, admin_sessions.cc, admin_agent.cc and admin_forwards.cc.
#include "agent/admin/admin_core.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "agent/admin/admin_internal.h"
#include "agent/admin/policy_sections.h"
#include "agent/state/state_store.h"
#include "server/common/errno_status.h"

namespace alknet::admin {
namespace {

using internal::IsAdmin;

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
