// The agent's durable state file (<state_dir>/state.pb): what the admin API owns (keys, policy,
// forwards). Written atomically (temp file in the same directory, fsync, rename, fsync the
// directory), so a crash at any point leaves the old or the new file, never a mix.
//
// File layout (integers big-endian):
//   8 bytes  magic "ALKSTATE"
//   4 bytes  format version (kStateFormatVersion)
//   8 bytes  payload length
//   N bytes  payload: alknet.state.v1.State, protobuf binary
//  32 bytes  SHA-256 of everything before it
// A file with a newer format version, a bad magic, a wrong length or checksum, or a payload that
// does not parse is refused with a clear error and never overwritten.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "alknet/state/v1/state.pb.h"

namespace alknet::state {

inline constexpr uint32_t kStateFormatVersion = 1;

// The state file inside a state directory: <state_dir>/state.pb.
std::string StateFilePath(const std::string& state_dir);

// Serializes `state` into the file layout above.
std::string EncodeStateFile(const v1::State& state);

// Parses file bytes. FailedPrecondition for a newer format version, DataLoss for anything
// damaged. `name` (the path) appears in every error.
absl::StatusOr<v1::State> DecodeStateFile(std::string_view bytes, std::string_view name);

// Reads the state file: nullopt when it does not exist. Errors as DecodeStateFile, plus I/O.
absl::StatusOr<std::optional<v1::State>> ReadStateFile(const std::string& path);

// Test hook: called at each step of a write ("temp-created", "temp-written", "temp-synced",
// "renamed", "dir-synced"), so a test can simulate a crash there.
using WriteStepHook = std::function<void(std::string_view step)>;

// Test seam: fsyncs the directory holding the state file after the rename (null: open + fsync).
using DirectorySync = std::function<absl::Status(const std::string& dir)>;

// What a successful write leaves to report. Once the rename has happened the new state is the
// file (a restart reads it), so the write is committed: a failed fsync of the directory after
// it no longer undoes anything, it only means the rename may not survive a power loss.
struct WriteResult {
  std::string durability_warning;  // empty: durable; otherwise the failed directory fsync
};

// Replaces the file atomically and durably. An error means the old file is untouched (nothing
// changed); success means the new file is in place, durably unless `durability_warning` says
// otherwise. Never both.
absl::StatusOr<WriteResult> WriteStateFile(const std::string& path, const v1::State& state,
                                           const WriteStepHook& hook = nullptr,
                                           const DirectorySync& sync_directory = nullptr);

// Removes temp files a crash left next to `path` ("<name>.tmp.*"). Returns how many.
int RemoveStaleTempFiles(const std::string& path);

}  // namespace alknet::state
