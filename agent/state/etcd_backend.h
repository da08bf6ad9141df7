// The state kept in etcd for a fleet of replicas (docs/scale-out.md): one key <prefix>/state holds
// the whole state (the state file's bytes), written compare-and-swap on its mod revision and
// watched by every replica; a local copy in the state directory serves while etcd is away.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "agent/state/etcd_client.h"
#include "agent/state/state_backend.h"
#include "server/common/log.h"

namespace alknet::state {

class EtcdStateBackend final : public StateBackend {
 public:
  // `local` provides the state directory's lock and the state file that seeds an empty prefix;
  // the local copy of etcd's state is `local_copy_path`.
  EtcdStateBackend(std::unique_ptr<EtcdClient> client, EtcdOptions options,
                   std::unique_ptr<StateBackend> local, std::string local_copy_path,
                   Logger& logger);
  ~EtcdStateBackend() override;

  std::string Describe() const override;
  absl::Status Lock() override;
  void Unlock() override;
  // etcd's state; when etcd cannot be reached, the local copy (and etcd is reported away). An
  // empty prefix is seeded from the state file `local` holds, if any (moving one agent into a
  // fleet); the file is left as it was.
  absl::StatusOr<std::optional<v1::State>> Load() override;
  absl::StatusOr<CommitResult> Commit(uint64_t expected_generation, const v1::State& next) override;
  // Starts the watcher thread: it follows <prefix>/state, reloads in full after a compaction and
  // after etcd comes back, and reports reachability changes.
  absl::Status Watch(uint64_t from_generation, ChangeCallback on_change,
                     ReachabilityCallback on_reachable) override;

  bool shared() const override { return true; }
  // Puts `self` under <prefix>/replicas/<id> with a lease (10 s) that a thread renews every 3 s
  // and revokes when the backend is destroyed; re-announced after etcd lost the lease.
  absl::Status Announce(const v1::Replica& self) override;
  absl::StatusOr<std::vector<v1::Replica>> Replicas() override;
  // A thread watches <prefix>/kill/<self_id>/ and answers each request that is still there.
  absl::Status ServeKills(const std::string& self_id, KillHandler handler) override;
  // Puts the request under <prefix>/kill/<replica>/<nonce> with a lease it holds, polls for the
  // answer under <prefix>/killed/<nonce>, and revokes the lease (both keys go) either way.
  absl::StatusOr<uint32_t> RequestKill(const std::string& replica,
                                       const admin::v1::KillSessionsRequest& request,
                                       absl::Duration timeout) override;

  // The key holding the state.
  std::string StateKey() const;
  // True while the last call to etcd succeeded.
  bool reachable() const;

 private:
  // A state read from etcd (or the copy) at `mod_revision`: adopted when newer than the one known.
  // True if adopted (the caller reports it).
  bool Adopt(const v1::State& state, int64_t mod_revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteLocalCopy(const v1::State& state);
  // Load's answer when etcd holds no state: the local state file's, stored create-only.
  absl::StatusOr<std::optional<v1::State>> Seed();
  void SetReachable(bool reachable);
  void RunWatcher(ChangeCallback on_change);
  // Reads the state key once: the state if newer than the one known. Sets *revision to the store's.
  absl::StatusOr<std::optional<v1::State>> Sync(int64_t* store_revision);

  std::unique_ptr<EtcdClient> client_;
  EtcdOptions options_;
  std::unique_ptr<StateBackend> local_;
  std::string local_copy_path_;
  Logger& logger_;

  mutable absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;    // of the newest state known
  int64_t mod_revision_ ABSL_GUARDED_BY(mu_) = -1;  // of the state key then; -1: not read yet
  bool reachable_ ABSL_GUARDED_BY(mu_) = true;
  ReachabilityCallback on_reachable_ ABSL_GUARDED_BY(mu_);

  void RunAnnouncer();
  void RunKillServer(const std::string& self_id, const KillHandler& handler);
  // One request seen by the kill server: answered unless it was withdrawn meanwhile.
  void AnswerKill(const EtcdKeyValue& kv, const KillHandler& handler);
  // Sleeps `how_long` or until the backend is being destroyed.
  void Pause(absl::Duration how_long) const;

  EtcdWatchCancel cancel_;
  std::thread watcher_;
  std::optional<v1::Replica> self_ ABSL_GUARDED_BY(mu_);
  bool self_changed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time announced_at_ ABSL_GUARDED_BY(mu_);  // when self_ last changed
  std::thread announcer_;
  EtcdWatchCancel kill_cancel_;  // a second watch: each cancel ends one
  std::thread kill_server_;
};

}  // namespace alknet::state
