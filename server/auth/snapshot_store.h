// An immutable snapshot that a reloader swaps while workers read it (the KeyStore pattern of
// key_set.h, for any state): readers take a shared_ptr and keep using it as long as they like.
#pragma once

#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"

namespace alknet::auth {

template <typename T>
class SnapshotStore {
 public:
  explicit SnapshotStore(std::shared_ptr<const T> initial = std::make_shared<const T>())
      : current_(std::move(initial)) {}
  SnapshotStore(const SnapshotStore&) = delete;
  SnapshotStore& operator=(const SnapshotStore&) = delete;

  std::shared_ptr<const T> Current() const {
    absl::MutexLock lock(&mu_);
    return current_;
  }
  void Replace(std::shared_ptr<const T> next) {
    absl::MutexLock lock(&mu_);
    current_ = std::move(next);
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const T> current_;
};

}  // namespace alknet::auth
