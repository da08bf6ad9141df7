// Caps unauthenticated connections globally and per source IP (OpenSSH MaxStartups and
// PerSourceMaxStartups analogues). Thread-safe; tickets release their slot when destroyed.
#pragma once

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace alknet {

class StartupLimiter;

// Holds one unauthenticated slot until Release() or destruction.
class StartupTicket {
 public:
  StartupTicket(StartupLimiter* limiter, std::string source) : limiter_(limiter), source_(std::move(source)) {}
  StartupTicket(const StartupTicket&) = delete;
  StartupTicket& operator=(const StartupTicket&) = delete;
  ~StartupTicket() { Release(); }
  void Release();

 private:
  StartupLimiter* limiter_;
  std::string source_;
};

enum class StartupVerdict { kAdmitted, kGlobalLimit, kSourceLimit };

class StartupLimiter {
 public:
  StartupLimiter(int max_total, int max_per_source)
      : max_total_(max_total), max_per_source_(max_per_source) {}

  // A ticket when admitted; otherwise nullptr and `verdict` says which cap was hit.
  std::unique_ptr<StartupTicket> TryAdmit(const std::string& source_ip, StartupVerdict* verdict);

  void SetLimits(int max_total, int max_per_source);
  int unauthenticated() const;

 private:
  friend class StartupTicket;
  void Release(const std::string& source_ip);

  mutable absl::Mutex mu_;
  int max_total_ ABSL_GUARDED_BY(mu_);
  int max_per_source_ ABSL_GUARDED_BY(mu_);
  int total_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, int> per_source_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alknet
