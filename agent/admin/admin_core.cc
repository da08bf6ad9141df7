// AdminCore's state: open, commit through the StateBackend, lock, reload, attach, Apply.
#include "agent/admin/admin_core.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "agent/admin/admin_internal.h"
#include "agent/admin/policy_sections.h"
#include "agent/state/file_backend.h"
#include "agent/state/state_store.h"

namespace alknet::admin {
namespace {

using internal::IsAdmin;
using internal::kKeyRemovedReason;

// A key of the stored state, parsed as the KeySet holds it.
absl::StatusOr<auth::AuthorizedKey> ParseStoredKey(const state::v1::StoredKey& stored) {
  absl::StatusOr<auth::AuthorizedKey> key = auth::ParseAuthorizedKeyLine(stored.authorized_keys_line());
  if (!key.ok()) return key.status();
  key->source = "api";
  key->admin_role = IsAdmin(stored.role());
  return key;
}

// What the API answers when the backend stored nothing; logged here. A lost compare-and-swap
// and an unreachable store keep their codes (the caller may retry), anything else is INTERNAL.
absl::Status CommitError(const absl::Status& status, const state::StateBackend& backend,
                         const std::string& path, Logger& logger) {
  const std::string error(status.message());
  switch (status.code()) {
    case absl::StatusCode::kAborted:
      logger.Warn("state", "state changed on another replica; nothing written",
                  {{"store", backend.Describe()}, {"error", error}});
      return absl::AbortedError("the state changed on another replica; retry");
    case absl::StatusCode::kUnavailable:
      logger.Error("state", "state store unreachable; nothing written",
                   {{"store", backend.Describe()}, {"error", error}});
      return absl::UnavailableError(
          absl::StrCat("the state store is unreachable; nothing changed: ", error));
    default:
      logger.Error("state", "cannot write state file", {{"path", path}, {"error", error}});
      return absl::InternalError(absl::StrCat("cannot write the state file (nothing changed): ", error));
  }
}

}  // namespace

std::string StateFilePath(const std::string& state_dir) { return state::StateFilePath(state_dir); }

AdminCore::AdminCore(const config::AgentConfig& config, Options options,
                     std::unique_ptr<state::StateBackend> backend, Logger& logger,
                     auth::KeyStore& keys)
    : options_(std::move(options)), logger_(logger), keys_(keys),
      state_path_(StateFilePath(config.state_dir)),
      tls_profile_(config.tls.effective_profile() == config::TlsProfile::kNginx ? "nginx"
                                                                               : "modern"),
      config_(config), replica_id_(options_.replica_id), backend_(std::move(backend)) {}

absl::StatusOr<std::unique_ptr<AdminCore>> AdminCore::Open(const config::AgentConfig& config,
                                                           Options options, Logger& logger,
                                                           auth::KeyStore& keys) {
  std::unique_ptr<state::StateBackend> backend = std::move(options.backend);
  if (backend == nullptr) {
    backend = std::make_unique<state::FileStateBackend>(config.state_dir, options.sync_state_directory);
  }
  if (absl::Status locked = backend->Lock(); !locked.ok()) return locked;
  std::unique_ptr<AdminCore> core(
      new AdminCore(config, std::move(options), std::move(backend), logger, keys));
  absl::StatusOr<std::optional<state::v1::State>> read = core->backend_->Load();
  if (!read.ok()) return read.status();

  uint64_t generation = 0;
  {
    absl::MutexLock lock_mu(&core->mu_);
    bool fresh = !read->has_value();
    state::v1::State state = fresh ? state::v1::State() : **read;
    for (int i = 0; i < state.keys_size(); ++i) {
      absl::StatusOr<auth::AuthorizedKey> key = ParseStoredKey(state.keys(i));
      if (!key.ok()) {
        return absl::DataLossError(absl::StrCat(
            "state file ", core->state_path_, ": key ", i + 1, " does not parse (",
            key.status().message(), "); refusing to start and leaving it untouched"));
      }
      core->api_keys_.push_back({state.keys(i), *std::move(key)});
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
    generation = core->state_.generation();
  }
  // Outside mu_: a backend may deliver a change from its own thread at once.
  AdminCore* watcher = core.get();
  absl::Status watching = core->backend_->Watch(
      generation, [watcher](state::v1::State next) { watcher->Apply(std::move(next)); },
      [watcher](bool reachable) { watcher->StoreReachable(reachable); });
  if (!watching.ok()) return watching;
  return core;
}

void AdminCore::StoreReachable(bool reachable) {
  std::function<void(bool)> observer;
  {
    absl::MutexLock lock(&store_mu_);
    store_reachable_ = reachable;
    observer = store_observer_;
  }
  if (observer) observer(reachable);
}

void AdminCore::SetStoreObserver(std::function<void(bool reachable)> observer) {
  bool reachable = true;
  {
    absl::MutexLock lock(&store_mu_);
    store_observer_ = observer;
    reachable = store_reachable_;
  }
  if (observer) observer(reachable);
}

void AdminCore::Apply(state::v1::State next) {
  ServerEngine* engine = nullptr;
  std::optional<config::AgentConfig> policy;
  std::vector<std::string> ended;  // keys removed with --kill elsewhere: their sessions end here
  size_t api_keys = 0;
  const uint64_t generation = next.generation();
  {
    absl::MutexLock lock(&mu_);
    if (generation <= state_.generation()) return;  // ours, or older than what we hold
    std::vector<ApiKey> keys;
    keys.reserve(static_cast<size_t>(next.keys_size()));
    for (int i = 0; i < next.keys_size(); ++i) {
      absl::StatusOr<auth::AuthorizedKey> key = ParseStoredKey(next.keys(i));
      if (!key.ok()) {
        logger_.Error("state", "key of a state stored elsewhere does not parse; skipped",
                      {{"store", backend_->Describe()}, {"generation", absl::StrCat(generation)},
                       {"key", absl::StrCat(i + 1)}, {"error", std::string(key.status().message())}});
        continue;
      }
      keys.push_back({next.keys(i), *std::move(key)});
    }
    absl::flat_hash_set<std::string> kept;
    for (const ApiKey& entry : keys) kept.insert(entry.key.fingerprint);
    for (const std::string& fingerprint : next.kill_sessions_of()) {
      bool had = std::any_of(api_keys_.begin(), api_keys_.end(),
                             [&](const ApiKey& entry) { return entry.key.fingerprint == fingerprint; });
      if (had && !kept.contains(fingerprint) &&
          std::find(ended.begin(), ended.end(), fingerprint) == ended.end()) {
        ended.push_back(fingerprint);
      }
    }
    absl::StatusOr<config::AgentConfig> candidate = PolicyCandidate(InForcePolicy(next.policy()));
    if (candidate.ok()) {
      InstallPolicy(*candidate);
      policy = *std::move(candidate);
    } else {
      logger_.Error("state", "policy of a state stored elsewhere is refused here; the policy in force stays",
                    {{"store", backend_->Describe()}, {"generation", absl::StrCat(generation)},
                     {"error", std::string(candidate.status().message())}});
    }
    api_keys_ = std::move(keys);
    api_keys = api_keys_.size();
    state::v1::State before = std::exchange(state_, std::move(next));
    SyncForwards(before);
    RebuildSources();
    PublishKeys();
    engine = engine_;
  }
  int killed = 0;
  if (engine != nullptr) {
    if (policy) engine->UpdatePolicy(*policy);
    for (const std::string& fingerprint : ended) {
      killed += KillKeySessions(*engine, fingerprint, kKeyRemovedReason);
    }
  }
  logger_.Info("state", "applied a state stored elsewhere",
               {{"store", backend_->Describe()}, {"generation", absl::StrCat(generation)},
                {"api_keys", absl::StrCat(api_keys)}, {"sessions_killed", absl::StrCat(killed)}});
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

absl::Status AdminCore::Commit(state::v1::State next) {
  const uint64_t current = state_.generation();
  next.set_generation(current + 1);
  absl::StatusOr<state::CommitResult> committed = backend_->Commit(current, next);
  if (!committed.ok()) return CommitError(committed.status(), *backend_, state_path_, logger_);
  if (!committed->durability_warning.empty()) {
    // The new file is in place and a restart reads it: the change is made, in memory too.
    logger_.Warn("state", "state file changed but not yet durable (directory fsync failed)",
                 {{"path", state_path_}, {"error", committed->durability_warning}});
  }
  state_ = std::move(next);
  return absl::OkStatus();
}

config::Limits AdminCore::limits() const {
  absl::MutexLock lock(&mu_);
  return config_.limits;
}

void AdminCore::CopyPolicyTo(config::AgentConfig& config) const {
  absl::MutexLock lock(&mu_);
  CopyPolicySections(config_, config);
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
        config.ssh != config_.ssh || config.tls != config_.tls || config.quic != config_.quic) {
      logger_.Warn("agent", "SIGHUP: changed listeners, host keys, workers, metrics, admin, tls, "
                            "quic or ssh algorithm settings take effect only after a restart");
    }
    state::v1::State merged = state_;
    next = MergeConfigPolicy(config, *merged.mutable_policy(), logger_);
    if (merged.SerializeAsString() != state_.SerializeAsString()) {
      if (absl::Status written = Commit(std::move(merged)); !written.ok()) {
        next = config;  // the state file is unchanged: keep the policy in force
        CopyPolicySections(config_, next);
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
  backend_->Unlock();
}

absl::Status AdminCore::RetakeStateLock() {
  absl::MutexLock lock(&mu_);
  return backend_->Lock();
}

}  // namespace alknet::admin
