// The state file behind StateBackend: the directory's flock, generation-checked atomic writes.
#include "agent/state/file_backend.h"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"

namespace alknet::state {
namespace {

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

FileStateBackend::FileStateBackend(std::string state_dir, DirectorySync sync_directory,
                                   WriteStepHook write_step)
    : state_dir_(std::move(state_dir)), path_(StateFilePath(state_dir_)),
      sync_directory_(std::move(sync_directory)), write_step_(std::move(write_step)) {}

std::string FileStateBackend::Describe() const { return absl::StrCat("file:", path_); }

absl::Status FileStateBackend::Lock() {
  absl::MutexLock lock(&mu_);
  if (lock_fd_.valid()) return absl::OkStatus();
  absl::StatusOr<UniqueFd> taken = LockStateDir(state_dir_);
  if (!taken.ok()) return taken.status();
  lock_fd_ = *std::move(taken);
  return absl::OkStatus();
}

void FileStateBackend::Unlock() {
  absl::MutexLock lock(&mu_);
  lock_fd_.reset();
}

absl::StatusOr<std::optional<v1::State>> FileStateBackend::Load() {
  RemoveStaleTempFiles(path_);
  return ReadStateFile(path_);
}

absl::StatusOr<CommitResult> FileStateBackend::Commit(uint64_t expected_generation,
                                                      const v1::State& next) {
  if (next.generation() != expected_generation + 1) {
    return absl::InvalidArgumentError(absl::StrCat("state generation ", next.generation(),
                                                   " does not follow ", expected_generation));
  }
  absl::StatusOr<WriteResult> written = WriteStateFile(path_, next, write_step_, sync_directory_);
  if (!written.ok()) return written.status();
  return CommitResult{.durability_warning = std::move(written->durability_warning)};
}

absl::Status FileStateBackend::Watch(uint64_t /*from_generation*/, ChangeCallback /*on_change*/,
                                     ReachabilityCallback /*on_reachable*/) {
  return absl::OkStatus();
}

}  // namespace alknet::state
