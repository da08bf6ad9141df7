// The rate limits shared by the acceptor and every worker: new connections per source, new
// sessions and concurrent sessions / -R listeners per key, the per-key bandwidth buckets, and
// the throttle that logs a rejection once per source per interval. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/common/token_bucket.h"

namespace alknet {

// Rates are per second; 0 turns a rule off. A burst of 0 means one second of the rate (at
// least 1). See docs/configuration.md, section rate_limits.
struct RateLimitSettings {
  double connections_per_source = 0;
  double connections_per_source_burst = 0;
  double channels_per_session = 0;
  double channels_per_session_burst = 0;
  double sessions_per_key = 0;
  double sessions_per_key_burst = 0;
  int max_sessions_per_key = 0;
  int max_remote_forwards_per_key = 0;
  int64_t bandwidth_per_key = 0;        // bytes per second, each direction
  int64_t bandwidth_per_key_burst = 0;  // bytes
  std::vector<std::string> bandwidth_exempt_keys;  // "SHA256:..." fingerprints, unthrottled
  bool operator==(const RateLimitSettings&) const = default;
};

// The burst a rule uses: the configured one, or one second of the rate (at least 1).
double EffectiveBurst(double rate, double burst);

// One key's shared state: every session of the key, on any worker, holds a pointer to the same
// object, so its buckets are shared without a lock (TokenBucket is lock-free).
struct KeyLimits {
  TokenBucket session_rate;
  TokenBucket upload;    // client -> targets
  TokenBucket download;  // targets -> client
  std::atomic<int> sessions{0};
  std::atomic<int> remote_forwards{0};
  // Times a relay of this key stopped for lack of tokens (tests and metrics read it).
  std::atomic<uint64_t> bandwidth_waits{0};
};

// One session of a key: counted in KeyLimits::sessions until destroyed.
class KeySessionLease {
 public:
  explicit KeySessionLease(std::shared_ptr<KeyLimits> key) : key_(std::move(key)) {}
  KeySessionLease(const KeySessionLease&) = delete;
  KeySessionLease& operator=(const KeySessionLease&) = delete;
  ~KeySessionLease() { key_->sessions.fetch_sub(1, std::memory_order_relaxed); }
  KeyLimits& key() const { return *key_; }
  const std::shared_ptr<KeyLimits>& shared() const { return key_; }

 private:
  std::shared_ptr<KeyLimits> key_;
};

enum class SessionVerdict { kAdmitted, kSessionRate, kSessionsPerKey, kKeyTableFull };

class RateLimiter {
 public:
  // Table bounds. Sources: when full, sources whose bucket has refilled are dropped (they are
  // indistinguishable from new ones); if none has, a new source is admitted untracked (the
  // max_startups caps still hold). Keys: when full, keys with no live session are dropped; if
  // every key has one, the new key's session is refused (key-table-full). Log throttle: when
  // full, entries older than the interval are dropped; if none is, the line is skipped (the
  // metric still counts it).
  static constexpr size_t kMaxSources = 65536;
  static constexpr size_t kMaxKeys = 65536;
  static constexpr size_t kMaxLogSources = 4096;
  static constexpr int64_t kLogIntervalNanos = int64_t{10} * 1000 * 1000 * 1000;

  RateLimiter(const MonotonicClock& clock, RateLimitSettings settings);
  // Tests: smaller tables.
  RateLimiter(const MonotonicClock& clock, RateLimitSettings settings, size_t max_sources,
              size_t max_keys);

  // Applies at once: new connections, sessions and channels, and the bandwidth buckets of
  // every known key (running transfers).
  void Update(const RateLimitSettings& settings);
  RateLimitSettings settings() const;
  // The channels_per_session rule (rate, effective burst): what a channel open needs.
  std::pair<double, double> channel_rate() const;
  int max_remote_forwards_per_key() const;
  const MonotonicClock& clock() const { return clock_; }

  // conn-rate: a new connection from `ip` (IPv6 counted per /64). False: refuse it.
  bool AdmitConnection(std::string_view ip);
  // At authentication success: sessions-per-key rate and cap. Admitted: `lease` counts the
  // session until destroyed and gives its key's shared buckets.
  SessionVerdict AdmitSession(const std::string& key_fingerprint,
                              std::unique_ptr<KeySessionLease>& lease);
  // True when a rejection line of `rule` for `source` may be written now (once per rule and
  // source per kLogIntervalNanos).
  bool ShouldLog(std::string_view rule, std::string_view source);

  size_t tracked_sources() const;
  size_t tracked_keys() const;

 private:
  void ConfigureKey(const std::string& fingerprint, KeyLimits& key, int64_t now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const MonotonicClock& clock_;
  const size_t max_sources_;
  const size_t max_keys_;
  mutable absl::Mutex mu_;
  RateLimitSettings settings_ ABSL_GUARDED_BY(mu_);
  absl::node_hash_map<std::string, TokenBucket> sources_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<KeyLimits>> keys_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> logged_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alknet
