// The admin API's logic, independent of gRPC: keys (API-owned in the state file, plus
// read-only keys from authorized_keys files), policy (limits), sessions and status. It adapts the
// engine from outside (ListSessions, KillSessions, UpdateLimits); the engine knows nothing of it.
//
// Every mutation is all-or-nothing: the new state is stored first (StateBackend; by default the
// state file, written atomically), and only then swapped in (KeyStore::Replace,
// ServerEngine::UpdateLimits) and answered.
//
// One file per job: admin_core.cc (opening and committing the state, the lock, reloads),
// admin_keys.cc, admin_policy.cc, admin_sessions.cc, admin_agent.cc, admin_forwards.cc and
// admin_forwarding.cc (TestForward); admin_internal.h holds what several of them share.
#pragma once

#include <functional>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "alknet/admin/v1/agent.pb.h"
#include "alknet/admin/v1/forwards.pb.h"
#include "alknet/admin/v1/keys.pb.h"
#include "alknet/admin/v1/policy.pb.h"
#include "alknet/admin/v1/sessions.pb.h"
#include "agent/state/state_backend.h"
#include "agent/state/state_store.h"
#include "alknet/state/v1/state.pb.h"
#include "server/auth/authorized_keys.h"
#include "server/auth/key_set.h"
#include "server/client/client_engine.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/engine/server_engine.h"

namespace alknet::admin {

// RSA keys added through the API need at least this many bits (sshd accepts 1024).
inline constexpr int kMinimumApiRsaBits = 2048;
// A replica publishes at most this many sessions to its fleet (etcd's values stay far below its
// 1.5 MiB request limit); the rest are counted.
inline constexpr int kMaxPublishedSessions = 2000;

// The state file inside a state directory.
std::string StateFilePath(const std::string& state_dir);

class AdminCore {
 public:
  struct Options {
    std::string version;  // reported by GetStatus
    // Test seam: the state directory's fsync after each rename (null: the real one), for the
    // file backend made when `backend` is null.
    state::DirectorySync sync_state_directory;
    // Where the state is stored (null: a FileStateBackend for config.state_dir).
    std::unique_ptr<state::StateBackend> backend;
    // This agent's name in a fleet (state.replica_id or the host name): which stored forwards
    // it runs, and whose kill requests it answers once announced.
    std::string replica_id;
  };

  // Locks the state directory (backend->Lock()), reads the state (or seeds it from `config` on
  // first start), merges the config file's limits (last writer wins), reads the authorized_keys
  // files and installs the keys into `keys`. A corrupted or newer state file is an error.
  static absl::StatusOr<std::unique_ptr<AdminCore>> Open(const config::AgentConfig& config,
                                                         Options options, Logger& logger,
                                                         auth::KeyStore& keys);

  // The limits in force (the engine is built with these).
  config::Limits limits() const;
  // The policy in force (limits, penalties, rate_limits, forwarding: the state file's merged with
  // the config file's, agent/admin/policy_sections.h) copied into `config`.
  void CopyPolicyTo(config::AgentConfig& config) const;
  // Once the engine has started; before that, session calls see no sessions.
  void AttachEngine(ServerEngine* engine);
  // Once the client role has started (nullptr before it stops): restores the forwards stored in
  // the state file into it. A stored forward that cannot run (its upstream is gone from the
  // configuration, its address is taken) stays stored and is listed as inactive.
  void AttachClient(ClientEngine* client);
  // Addresses the admin server listens on ("unix:/...", "127.0.0.1:7000"), for GetStatus.
  void SetAdminListeners(std::vector<std::string> addresses);

  // SIGHUP: re-reads the authorized_keys files of `config` and merges its limits.
  void Reload(const config::AgentConfig& config);

  // A state stored by another writer (another replica, through StateBackend::Watch): makes it
  // the state unless it is not newer than the one held (by generation). Its keys replace the API
  // keys (a key that does not parse is logged and skipped), its policy becomes the policy in
  // force as SetPolicy makes it (a policy this agent refuses is logged and the one in force
  // kept), and the sessions of a removed key listed in kill_sessions_of end here too.
  void Apply(state::v1::State next);

  // `observer` hears whether the state store can be written (now, then at each change); the
  // agent mirrors it in alknet_state_store_up. Called on the backend's thread.
  void SetStoreObserver(std::function<void(bool reachable)> observer);

  // ---- the API; status codes as documented in proto/alknet/admin/v1 ----
  absl::StatusOr<v1::AddKeyResponse> AddKey(const v1::AddKeyRequest& request);
  v1::ListKeysResponse ListKeys();
  absl::StatusOr<v1::RemoveKeyResponse> RemoveKey(const v1::RemoveKeyRequest& request);
  absl::StatusOr<v1::ImportKeysResponse> ImportKeys(const v1::ImportKeysRequest& request);
  v1::ExportKeysResponse ExportKeys(const v1::ExportKeysRequest& request);

  v1::GetPolicyResponse GetPolicy();
  absl::StatusOr<v1::SetPolicyResponse> SetPolicy(const v1::SetPolicyRequest& request);
  absl::StatusOr<v1::ValidatePolicyResponse> ValidatePolicy(const v1::ValidatePolicyRequest& request);
  // Per-source penalties of the engine (empty before it has started).
  v1::ListPenaltiesResponse ListPenalties();
  absl::StatusOr<v1::ClearPenaltiesResponse> ClearPenalties(const v1::ClearPenaltiesRequest& request);
  // Which forwarding rule decides (admin_forwarding_test.cc); resolves on this thread.
  absl::StatusOr<v1::TestForwardResponse> TestForward(const v1::TestForwardRequest& request);
  // The forwarding policy in force (state file over config, as for the limits).
  fwd::ForwardingPolicy forwarding() const;

  // This agent's sessions.
  v1::ListSessionsResponse ListSessions();
  // With request.all: every replica's (FAILED_PRECONDITION without a fleet).
  absl::StatusOr<v1::ListSessionsResponse> ListSessions(const v1::ListSessionsRequest& request);
  // Here, or on request.replica through the state backend (StateBackend::RequestKill).
  absl::StatusOr<v1::KillSessionsResponse> KillSessions(const v1::KillSessionsRequest& request);

  v1::GetStatusResponse GetStatus();
  // With request.all: also every replica of the fleet (FAILED_PRECONDITION without one).
  absl::StatusOr<v1::GetStatusResponse> GetStatus(const v1::GetStatusRequest& request);
  // Announces this agent to the fleet as `id` (StateBackend::Announce): version, pid, start,
  // bound SSH listeners, readiness and sessions as they are now; the agent calls it every second
  // (the backend publishes what changed). The first call also starts answering other replicas'
  // kill requests for `id`. Nothing without a fleet.
  void AnnounceReplica(const std::string& id);
  // The id last announced (empty before).
  std::string replica_id() const;

  // Binary upgrade (issue 20, agent/upgrade): the runner's handler, called by the Upgrade RPC
  // (blocks until the new process serves or failed). Without one the RPC is UNIMPLEMENTED.
  void SetUpgradeHandler(std::function<absl::StatusOr<uint32_t>()> handler);
  absl::StatusOr<v1::UpgradeResponse> Upgrade();
  // The new process takes the state directory's lock; a failed upgrade takes it back.
  void ReleaseStateLock();
  absl::Status RetakeStateLock();

  // Forwards (agent/admin/admin_forwards.cc).
  absl::StatusOr<v1::AddForwardResponse> AddForward(const v1::AddForwardRequest& request);
  v1::ListForwardsResponse ListForwards();
  absl::StatusOr<v1::RemoveForwardResponse> RemoveForward(const v1::RemoveForwardRequest& request);

 private:
  struct ApiKey {
    state::v1::StoredKey stored;
    auth::AuthorizedKey key;
  };

  AdminCore(const config::AgentConfig& config, Options options,
            std::unique_ptr<state::StateBackend> backend, Logger& logger, auth::KeyStore& keys);

  // Builds the entry for one AddKey-style request (validation only, nothing applied).
  absl::StatusOr<ApiKey> BuildKey(const v1::AddKeyRequest& request, absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Where a key blob is already present ("api", "file:<path>:<line>"), if anywhere.
  std::optional<std::string> ExistingSource(const std::string& blob) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The one way the state changes: stores `next` with the next generation through the backend
  // (compare-and-swap on state_'s generation), then makes it state_. On error nothing changed:
  // ABORTED (another replica wrote first) and UNAVAILABLE (store unreachable) keep their
  // codes, anything else is INTERNAL "cannot write the state file (nothing changed): ...". A
  // failed directory fsync after the rename is logged as a warning: the change stands, it may
  // only not survive a power loss.
  absl::Status Commit(state::v1::State next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The policy in force with `policy`'s fields set over it, validated: what SetPolicy and Apply
  // install. Errors are INVALID_ARGUMENT naming the field.
  absl::StatusOr<config::AgentConfig> PolicyCandidate(const v1::PolicySpec& policy) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Makes `policy`'s sections the ones in force; the caller then hands `policy` to the engine
  // (ServerEngine::UpdatePolicy, outside mu_).
  void InstallPolicy(const config::AgentConfig& policy) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The engine once attached (null before).
  ServerEngine* AttachedEngine();
  // KillSessions on this agent's engine (also for requests other replicas send), the reason
  // sanitised here.
  absl::StatusOr<v1::KillSessionsResponse> KillHere(const v1::KillSessionsRequest& request);
  // Ends the authenticated sessions of the key `fingerprint`; returns how many.
  static int KillKeySessions(ServerEngine& engine, const std::string& fingerprint,
                             std::string_view reason);
  // Whether this agent runs the stored forward (its replica is this one, "*" or empty).
  bool RunsHere(const v1::Forward& forward) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Starts a stored forward in the client role; one that cannot run is kept as inactive.
  void StartStoredForward(const v1::Forward& stored) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a state stored elsewhere: stops the forwards of `before` that no longer run here (or
  // changed) and starts the new ones.
  void SyncForwards(const state::v1::State& before) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Installs api_keys_ + file_keys_ as the KeySet sessions see.
  void PublishKeys() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // source_by_blob_ from scratch (start, reload); changes update it incrementally.
  void RebuildSources() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoadFileKeys(const config::AgentConfig& config) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::KeyInfo Describe(const auth::AuthorizedKey& key, const state::v1::StoredKey* stored,
                       const absl::flat_hash_map<std::string, uint32_t>& sessions) const;
  absl::flat_hash_map<std::string, uint32_t> SessionsPerKey();

  Options options_;
  Logger& logger_;
  auth::KeyStore& keys_;
  const absl::Time started_ = absl::Now();
  std::function<absl::StatusOr<uint32_t>()> upgrade_handler_;
  std::string state_path_;
  const std::string tls_profile_;  // tls.profile in force (fixed at start, like the listeners)

  // The store's reachability (StateBackend::Watch) and who wants to hear it.
  void StoreReachable(bool reachable);
  absl::Mutex store_mu_;
  bool store_reachable_ ABSL_GUARDED_BY(store_mu_) = true;
  std::function<void(bool)> store_observer_ ABSL_GUARDED_BY(store_mu_);

  mutable absl::Mutex mu_;
  config::AgentConfig config_ ABSL_GUARDED_BY(mu_);  // limits = the limits in force
  state::v1::State state_ ABSL_GUARDED_BY(mu_);
  std::vector<ApiKey> api_keys_ ABSL_GUARDED_BY(mu_);
  std::vector<auth::AuthorizedKey> file_keys_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> source_by_blob_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> admin_listeners_ ABSL_GUARDED_BY(mu_);
  ServerEngine* engine_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string replica_id_ ABSL_GUARDED_BY(mu_);
  bool serving_kills_ ABSL_GUARDED_BY(mu_) = false;
  ClientEngine* client_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Stored forwards the client role does not run, by id, with the reason.
  absl::flat_hash_map<std::string, std::string> inactive_forwards_ ABSL_GUARDED_BY(mu_);
  // Last member: destroyed first, so a backend's watch stops calling back before the rest goes.
  const std::unique_ptr<state::StateBackend> backend_;
};

}  // namespace alknet::admin
