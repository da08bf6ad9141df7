// Caps unauthenticated connections globally and per source IP.
#include "server/engine/startup_limiter.h"

namespace alknet {

void StartupTicket::Release() {
  if (limiter_ != nullptr) {
    limiter_->Release(source_);
    limiter_ = nullptr;
  }
}

std::unique_ptr<StartupTicket> StartupLimiter::TryAdmit(const std::string& source_ip,
                                                        StartupVerdict* verdict) {
  absl::MutexLock lock(&mu_);
  if (total_ >= max_total_) {
    *verdict = StartupVerdict::kGlobalLimit;
    return nullptr;
  }
  int& from_source = per_source_[source_ip];
  if (from_source >= max_per_source_) {
    *verdict = StartupVerdict::kSourceLimit;
    return nullptr;
  }
  ++from_source;
  ++total_;
  *verdict = StartupVerdict::kAdmitted;
  return std::make_unique<StartupTicket>(this, source_ip);
}

void StartupLimiter::SetLimits(int max_total, int max_per_source) {
  absl::MutexLock lock(&mu_);
  max_total_ = max_total;
  max_per_source_ = max_per_source;
}

int StartupLimiter::unauthenticated() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

void StartupLimiter::Release(const std::string& source_ip) {
  absl::MutexLock lock(&mu_);
  --total_;
  auto it = per_source_.find(source_ip);
  if (it != per_source_.end() && --it->second <= 0) per_source_.erase(it);
}

}  // namespace alknet
