// An immutable set of authorized keys, indexed by key blob for O(1) lookup at auth time.
#include "server/auth/key_set.h"

#include <utility>

#include "server/common/strings.h"

namespace alknet::auth {

KeySet::KeySet(std::vector<AuthorizedKey> keys) : keys_(std::move(keys)) {
  by_blob_.reserve(keys_.size());
  for (size_t i = 0; i < keys_.size(); ++i) {
    // try_emplace keeps the existing index: the first line with a given key wins, as in sshd.
    by_blob_.try_emplace(keys_[i].blob, i);
    if (keys_[i].options.cert_authority) authority_by_blob_.try_emplace(keys_[i].blob, i);
  }
}

const AuthorizedKey* KeySet::FindCertAuthority(std::string_view blob) const {
  auto it = authority_by_blob_.find(Sv(blob));
  if (it == authority_by_blob_.end()) return nullptr;
  return &keys_[it->second];
}

const AuthorizedKey* KeySet::Find(std::string_view blob) const {
  auto it = by_blob_.find(Sv(blob));
  if (it == by_blob_.end()) return nullptr;
  return &keys_[it->second];
}

}  // namespace alknet::auth
