// A lock-free token bucket (GCRA: one atomic "theoretical arrival time"), shared across threads,
// with the clock injected (MonotonicClock) so tests step time by hand.
#pragma once

#include <atomic>
#include <cstdint>

namespace alknet {

// Monotonic nanoseconds. Production: SteadyClock; tests: a fake they advance.
class MonotonicClock {
 public:
  virtual ~MonotonicClock() = default;
  virtual int64_t NowNanos() const = 0;
};

class SteadyClock final : public MonotonicClock {
 public:
  int64_t NowNanos() const override;
};

// `rate` tokens per second, at most `burst` saved up. rate 0 means unlimited (every call
// succeeds, nothing is counted). All members are thread-safe and wait-free except the CAS
// retry loops, which only spin while another thread succeeds. Configure() applies at once:
// the tokens missing at `now_ns` stay missing and refill at the new rate.
class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(double rate, double burst) { Configure(rate, burst); }
  TokenBucket(const TokenBucket&) = delete;
  TokenBucket& operator=(const TokenBucket&) = delete;

  void Configure(double rate, double burst, int64_t now_ns = 0);
  bool unlimited() const { return ns_per_token_.load(std::memory_order_relaxed) <= 0; }

  // Takes `n` tokens if that many are there now.
  bool TryTake(int64_t now_ns, double n = 1);
  // Tokens there now (0 when empty or in debt), at most `cap`. Unlimited: `cap`.
  int64_t Available(int64_t now_ns, int64_t cap) const;
  // Takes `n` tokens whether or not they are there (the bucket may go into debt).
  void Take(int64_t now_ns, int64_t n);
  // Nanoseconds until `n` tokens (capped at the burst) are there; 0 if they are now.
  int64_t NanosUntil(int64_t now_ns, double n) const;

 private:
  // GCRA: the bucket is full when tat_ <= now; each token pushes tat_ by ns_per_token_; a
  // take is allowed while tat_ - now stays within burst_ns_.
  std::atomic<int64_t> tat_{0};
  std::atomic<double> ns_per_token_{0};
  std::atomic<double> burst_{0};
};

}  // namespace alknet
