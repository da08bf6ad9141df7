// The old process's view of the state file after a binary upgrade: removed API keys.
#include "agent/upgrade/state_follower.h"

#include <algorithm>
#include <iterator>

#include "agent/state/state_store.h"
#include "server/auth/authorized_keys.h"

namespace alknet::agent {

StateFollower::StateFollower(std::string path, Logger& logger)
    : path_(std::move(path)), logger_(logger) {
  Changed();
  bool ok = false;
  keys_ = ReadFingerprints(&ok);
}

bool StateFollower::Changed() {
  struct stat now {};
  if (::stat(path_.c_str(), &now) != 0) return false;
  // The file is replaced by rename: a new inode on every write.
  bool changed = now.st_ino != last_.st_ino || now.st_size != last_.st_size ||
                 now.st_mtim.tv_sec != last_.st_mtim.tv_sec ||
                 now.st_mtim.tv_nsec != last_.st_mtim.tv_nsec;
  last_ = now;
  return changed;
}

std::set<std::string> StateFollower::ReadFingerprints(bool* ok) {
  std::set<std::string> fingerprints;
  auto read = state::ReadStateFile(path_);
  *ok = read.ok();
  if (!read.ok()) {
    logger_.Warn("upgrade", "cannot read the state file the new process writes",
                 {{"error", std::string(read.status().message())}});
    return fingerprints;
  }
  if (!read->has_value()) return fingerprints;
  for (const auto& stored : (*read)->keys()) {
    auto key = auth::ParseAuthorizedKeyLine(stored.authorized_keys_line());
    if (key.ok()) fingerprints.insert(key->fingerprint);
  }
  return fingerprints;
}

std::vector<std::string> StateFollower::PollRemoved() {
  if (!Changed()) return {};
  bool ok = false;
  std::set<std::string> now = ReadFingerprints(&ok);
  if (!ok) return {};
  std::vector<std::string> removed;
  std::set_difference(keys_.begin(), keys_.end(), now.begin(), now.end(),
                      std::back_inserter(removed));
  keys_ = std::move(now);
  return removed;
}

}  // namespace alknet::agent
