// The state in a local file (<state_dir>/state.pb, agent/state/state_store.h) behind the
// StateBackend interface: the default, one agent per state directory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/state/state_backend.h"
#include "agent/state/state_store.h"
#include "server/common/unique_fd.h"

namespace alknet::state {

// The state file's directory is held with flock(<state_dir>/state.lock), so this agent is the
// only writer: a Commit never loses a race, and Watch has nothing to report.
class FileStateBackend final : public StateBackend {
 public:
  // `sync_directory` and `write_step` are WriteStateFile's test seams (null: the real directory
  // fsync, no hook).
  explicit FileStateBackend(std::string state_dir, DirectorySync sync_directory = nullptr,
                            WriteStepHook write_step = nullptr);

  // The state file's path.
  const std::string& path() const { return path_; }

  // "file:<state_dir>/state.pb".
  std::string Describe() const override;
  // Takes the flock (FailedPrecondition naming the lock file when another agent holds it).
  // Holding it already is success.
  absl::Status Lock() override;
  void Unlock() override;
  // Removes the temp files an interrupted write left, then reads the file (ReadStateFile: errors
  // name the path). Logs nothing.
  absl::StatusOr<std::optional<v1::State>> Load() override;
  // Checks that `next` is expected_generation + 1 (InvalidArgument otherwise), then replaces the
  // file atomically (WriteStateFile). The stored generation is not re-read: the lock makes this
  // process the only writer.
  absl::StatusOr<CommitResult> Commit(uint64_t expected_generation, const v1::State& next) override;
  // Single writer: stores nothing, never calls back.
  absl::Status Watch(uint64_t from_generation, ChangeCallback on_change,
                     ReachabilityCallback on_reachable) override;

 private:
  const std::string state_dir_;
  const std::string path_;
  const DirectorySync sync_directory_;
  const WriteStepHook write_step_;
  absl::Mutex mu_;
  UniqueFd lock_fd_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alknet::state
