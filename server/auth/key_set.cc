// An immutable set of authorized keys, indexed by key blob for O(1) lookup at auth time.
#include "server/auth/key_set.h"

#include <utility>

namespace alknet::auth {

KeySet::KeySet(std::vector<AuthorizedKey> keys) : keys_(std::move(keys)) {
  by_blob_.reserve(keys_.size());
  for (size_t i = 0; i < keys_.size(); ++i) {
    // try_emplace keeps the existing index: the first line with a given key wins, as in sshd.
    by_blob_.try_emplace(keys_[i].blob, i);
  }
}

const AuthorizedKey* KeySet::Find(std::string_view blob) const {
  // Debian's Abseil has its own absl::string_view, which the heterogeneous lookup takes.
  auto it = by_blob_.find(absl::string_view(blob.data(), blob.size()));
  if (it == by_blob_.end()) return nullptr;
  return &keys_[it->second];
}

}  // namespace alknet::auth
