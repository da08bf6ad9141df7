// An immutable set of authorized keys, indexed by key blob for O(1) lookup at auth time.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/auth/authorized_keys.h"

namespace alknet::auth {

class KeySet {
 public:
  explicit KeySet(std::vector<AuthorizedKey> keys);

  // The entry for this key blob, or nullptr. When a key appears on several lines the first wins
  // (sshd also uses the first matching line).
  const AuthorizedKey* Find(std::string_view blob) const;
  // The first `cert-authority` line for this CA key blob, or nullptr (sshd skips other lines).
  const AuthorizedKey* FindCertAuthority(std::string_view blob) const;
  size_t size() const { return keys_.size(); }
  const std::vector<AuthorizedKey>& keys() const { return keys_; }

 private:
  std::vector<AuthorizedKey> keys_;
  absl::flat_hash_map<std::string, size_t> by_blob_;
  absl::flat_hash_map<std::string, size_t> authority_by_blob_;
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

  // Last successful authentication per key fingerprint since start (the admin API lists it).
  void NoteUsed(const std::string& fingerprint, absl::Time when) {
    absl::MutexLock lock(&used_mu_);
    last_used_[fingerprint] = when;
  }
  std::optional<absl::Time> LastUsed(const std::string& fingerprint) const {
    absl::MutexLock lock(&used_mu_);
    auto it = last_used_.find(fingerprint);
    if (it == last_used_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const KeySet> current_;
  mutable absl::Mutex used_mu_;
  absl::flat_hash_map<std::string, absl::Time> last_used_;
};

}  // namespace alknet::auth
