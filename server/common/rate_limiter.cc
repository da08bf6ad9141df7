// The rate limits shared by the acceptor and every worker (see rate_limiter.h).
#include "server/common/rate_limiter.h"

#include <algorithm>
#include <vector>

#include "server/common/connection_budget.h"
#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet {

double EffectiveBurst(double rate, double burst) {
  if (burst > 0) return burst;
  return std::max(1.0, rate);
}

RateLimiter::RateLimiter(const MonotonicClock& clock, RateLimitSettings settings)
    : RateLimiter(clock, settings, kMaxSources, kMaxKeys) {}

RateLimiter::RateLimiter(const MonotonicClock& clock, RateLimitSettings settings,
                         size_t max_sources, size_t max_keys)
    : clock_(clock), max_sources_(max_sources), max_keys_(max_keys), settings_(settings) {}

void RateLimiter::ConfigureKey(const std::string& fingerprint, KeyLimits& key, int64_t now) const {
  key.session_rate.Configure(
      settings_.sessions_per_key,
      EffectiveBurst(settings_.sessions_per_key, settings_.sessions_per_key_burst), now);
  const std::vector<std::string>& exempt = settings_.bandwidth_exempt_keys;
  const bool is_exempt = std::find(exempt.begin(), exempt.end(), fingerprint) != exempt.end();
  const auto rate = is_exempt ? 0.0 : static_cast<double>(settings_.bandwidth_per_key);
  const double burst = EffectiveBurst(rate, static_cast<double>(settings_.bandwidth_per_key_burst));
  key.upload.Configure(rate, burst, now);
  key.download.Configure(rate, burst, now);
}

void RateLimiter::Update(const RateLimitSettings& settings) {
  const int64_t now = clock_.NowNanos();
  absl::MutexLock lock(&mu_);
  settings_ = settings;
  const double rate = settings_.connections_per_source;
  const double burst = EffectiveBurst(rate, settings_.connections_per_source_burst);
  for (auto& [source, bucket] : sources_) bucket.Configure(rate, burst, now);
  for (auto& [fingerprint, key] : keys_) ConfigureKey(fingerprint, *key, now);
}

RateLimitSettings RateLimiter::settings() const {
  absl::MutexLock lock(&mu_);
  return settings_;
}

std::pair<double, double> RateLimiter::channel_rate() const {
  absl::MutexLock lock(&mu_);
  return {settings_.channels_per_session,
          EffectiveBurst(settings_.channels_per_session, settings_.channels_per_session_burst)};
}

int RateLimiter::max_remote_forwards_per_key() const {
  absl::MutexLock lock(&mu_);
  return settings_.max_remote_forwards_per_key;
}

bool RateLimiter::AdmitConnection(std::string_view ip) {
  const int64_t now = clock_.NowNanos();
  std::string source = BudgetSourceKey(ip);
  absl::MutexLock lock(&mu_);
  const double rate = settings_.connections_per_source;
  if (rate <= 0) {
    if (!sources_.empty()) sources_.clear();
    return true;
  }
  const double burst = EffectiveBurst(rate, settings_.connections_per_source_burst);
  auto it = sources_.find(source);
  if (it == sources_.end()) {
    if (sources_.size() >= max_sources_) {
      // A source whose bucket has refilled is no different from one never seen.
      absl::erase_if(sources_, [&](const auto& entry) {
        return entry.second.NanosUntil(now, burst) == 0;
      });
      if (sources_.size() >= max_sources_) return true;  // untracked (documented)
    }
    it = sources_.try_emplace(std::move(source)).first;
    it->second.Configure(rate, burst, now);
  }
  return it->second.TryTake(now);
}

SessionVerdict RateLimiter::AdmitSession(const std::string& key_fingerprint,
                                         std::unique_ptr<KeySessionLease>& lease) {
  const int64_t now = clock_.NowNanos();
  absl::MutexLock lock(&mu_);
  auto it = keys_.find(key_fingerprint);
  if (it == keys_.end()) {
    if (keys_.size() >= max_keys_) {
      absl::erase_if(keys_, [](const auto& entry) { return entry.second.use_count() == 1; });
      if (keys_.size() >= max_keys_) return SessionVerdict::kKeyTableFull;
    }
    it = keys_.try_emplace(key_fingerprint, std::make_shared<KeyLimits>()).first;
    ConfigureKey(key_fingerprint, *it->second, now);
  }
  KeyLimits& key = *it->second;
  const int cap = settings_.max_sessions_per_key;
  if (cap > 0 && key.sessions.load(std::memory_order_relaxed) >= cap) {
    return SessionVerdict::kSessionsPerKey;
  }
  if (!key.session_rate.TryTake(now)) return SessionVerdict::kSessionRate;
  key.sessions.fetch_add(1, std::memory_order_relaxed);
  lease = std::make_unique<KeySessionLease>(it->second);
  return SessionVerdict::kAdmitted;
}

bool RateLimiter::ShouldLog(std::string_view rule, std::string_view source) {
  const int64_t now = clock_.NowNanos();
  std::string entry = absl::StrCat(Sv(rule), " ", Sv(source));
  absl::MutexLock lock(&mu_);
  auto it = logged_.find(entry);
  if (it != logged_.end()) {
    if (now - it->second < kLogIntervalNanos) return false;
    it->second = now;
    return true;
  }
  if (logged_.size() >= kMaxLogSources) {
    absl::erase_if(logged_, [&](const auto& entry) { return now - entry.second >= kLogIntervalNanos; });
    if (logged_.size() >= kMaxLogSources) return false;
  }
  logged_.emplace(std::move(entry), now);
  return true;
}

size_t RateLimiter::tracked_sources() const {
  absl::MutexLock lock(&mu_);
  return sources_.size();
}

size_t RateLimiter::tracked_keys() const {
  absl::MutexLock lock(&mu_);
  return keys_.size();
}

}  // namespace alknet
