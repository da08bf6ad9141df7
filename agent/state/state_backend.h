// Where the admin API's state lives: one interface over the local state file and etcd (a fleet).
// The admin service (AdminCore) holds one and does not know which kind it has.
//
// Versioning: every stored state carries `generation` (state.proto). A write names the generation
// it was computed from and stores generation + 1, compare-and-swap: when another writer got
// there first (another replica), the write is refused with ABORTED and nothing is stored; the
// change that won arrives through Watch.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "alknet/admin/v1/sessions.pb.h"
#include "alknet/state/v1/state.pb.h"

namespace alknet::state {

// What a successful Commit leaves to report: the write is made; a warning says it may not be
// durable yet (file: the directory fsync after the rename failed).
struct CommitResult {
  std::string durability_warning;
};

// What fleet calls answer on a backend without a fleet (the file).
inline absl::Status NoFleetError() {
  return absl::FailedPreconditionError(
      "this agent's state is not shared (state.store is file): there is no fleet");
}

class StateBackend {
 public:
  virtual ~StateBackend() = default;

  // For status and logs: "file:/var/lib/alknet/state.pb", "etcd://h1:2379,h2:2379/alknet".
  virtual std::string Describe() const = 0;

  // Exclusive use of the local state directory (file backend: its flock; etcd: the local copy's
  // directory). A binary upgrade releases it for the new process and may take it back.
  virtual absl::Status Lock() = 0;
  virtual void Unlock() = 0;

  // The stored state, nullopt when nothing is stored yet. A damaged or newer state is an error
  // (DataLoss / FailedPrecondition) and is never overwritten.
  virtual absl::StatusOr<std::optional<v1::State>> Load() = 0;

  // Stores `next` (whose generation must be expected_generation + 1) if the stored state is still
  // at `expected_generation` (0: nothing stored). ABORTED: another writer came first; UNAVAILABLE:
  // the store cannot be reached; any other error: nothing was stored either.
  virtual absl::StatusOr<CommitResult> Commit(uint64_t expected_generation,
                                              const v1::State& next) = 0;

  // Calls `on_change` (on a backend thread) with each state stored by another writer after
  // `from_generation`, until the backend is destroyed. `on_reachable` reports the store going
  // away and coming back (true: reachable). A single-writer backend (the file) never calls them.
  using ChangeCallback = std::function<void(v1::State)>;
  using ReachabilityCallback = std::function<void(bool reachable)>;
  virtual absl::Status Watch(uint64_t from_generation, ChangeCallback on_change,
                             ReachabilityCallback on_reachable) = 0;

  // Whether other replicas share this state (a fleet): the calls below mean something.
  virtual bool shared() const { return false; }

  // Fleet membership. Announce keeps `self` listed while this process lives (a later call
  // replaces it; one that changes only session counters is published at most every 10 s);
  // Replicas lists every replica announced. A backend without a fleet (the file) announces
  // nothing and answers Replicas with NoFleetError().
  virtual absl::Status Announce(const v1::Replica& self) { return absl::OkStatus(); }
  virtual absl::StatusOr<std::vector<v1::Replica>> Replicas() { return NoFleetError(); }

  // Fleet-wide session kills. ServeKills runs `handler` (on a backend thread) for each request
  // addressed to replica `self_id`; RequestKill hands `request` to `replica` and waits up to
  // `timeout` for its answer: NOT_FOUND when no such replica is announced, UNAVAILABLE when it
  // does not answer (the request is then withdrawn). Without a fleet: nothing is served and
  // RequestKill answers NoFleetError().
  using KillHandler =
      std::function<absl::StatusOr<uint32_t>(const admin::v1::KillSessionsRequest& request)>;
  virtual absl::Status ServeKills(const std::string& self_id, KillHandler handler) {
    return absl::OkStatus();
  }
  virtual absl::StatusOr<uint32_t> RequestKill(const std::string& replica,
                                               const admin::v1::KillSessionsRequest& request,
                                               absl::Duration timeout) {
    return NoFleetError();
  }
};

}  // namespace alknet::state
