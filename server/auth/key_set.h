// An immutable set of authorized keys, indexed by key blob for O(1) lookup at auth time.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/auth/authorized_keys.h"

namespace alknet::auth {

class KeySet {
 public:
  explicit KeySet(std::vector<AuthorizedKey> keys);

  // The entry for this key blob, or nullptr. When a key appears on several lines the first wins
  // (sshd also uses the first matching line).
  const AuthorizedKey* Find(std::string_view blob) const;
  size_t size() const { return keys_.size(); }
  const std::vector<AuthorizedKey>& keys() const { return keys_; }

 private:
  std::vector<AuthorizedKey> keys_;
  absl::flat_hash_map<std::string, size_t> by_blob_;
};

// The currently active KeySet, swappable at runtime (reload, admin API) while sessions read it.
class KeyStore {
 public:
  explicit KeyStore(std::shared_ptr<const KeySet> initial)
      : current_(std::move(initial)) {}
  std::shared_ptr<const KeySet> Current() const {
    absl::MutexLock lock(&mu_);
    return current_;
  }
  void Replace(std::shared_ptr<const KeySet> next) {
    absl::MutexLock lock(&mu_);
    current_ = std::move(next);
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const KeySet> current_;
};

}  // namespace alknet::auth
