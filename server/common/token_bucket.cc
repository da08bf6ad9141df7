// A lock-free token bucket (GCRA) with an injected clock.
#include "server/common/token_bucket.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace alknet {

int64_t SteadyClock::NowNanos() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void TokenBucket::Configure(double rate, double burst, int64_t now_ns) {
  const double old_per = ns_per_token_.load(std::memory_order_relaxed);
  if (!(rate > 0)) {
    ns_per_token_.store(0, std::memory_order_relaxed);
    tat_.store(0, std::memory_order_relaxed);  // full when turned on again
    return;
  }
  const double per = 1e9 / rate;
  burst_.store(std::max(1.0, burst), std::memory_order_relaxed);
  ns_per_token_.store(per, std::memory_order_relaxed);
  if (old_per > 0 && old_per != per) {
    // Rescale the debt from time at the old rate to time at the new one (a race with a
    // concurrent take only moves a few tokens either way).
    int64_t tat = tat_.load(std::memory_order_relaxed);
    if (tat > now_ns) {
      const double missing = static_cast<double>(tat - now_ns) / old_per;
      tat_.store(now_ns + static_cast<int64_t>(missing * per), std::memory_order_relaxed);
    }
  }
}

bool TokenBucket::TryTake(int64_t now_ns, double n) {
  const double per = ns_per_token_.load(std::memory_order_relaxed);
  if (per <= 0) return true;
  const double burst_ns = burst_.load(std::memory_order_relaxed) * per;
  const auto cost = static_cast<int64_t>(std::llround(n * per));
  int64_t tat = tat_.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t next = std::max(tat, now_ns) + cost;
    if (static_cast<double>(next - now_ns) > burst_ns + 0.5) return false;
    if (tat_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return true;
  }
}

int64_t TokenBucket::Available(int64_t now_ns, int64_t cap) const {
  const double per = ns_per_token_.load(std::memory_order_relaxed);
  if (per <= 0) return cap;
  const double burst_ns = burst_.load(std::memory_order_relaxed) * per;
  const int64_t tat = std::max(tat_.load(std::memory_order_relaxed), now_ns);
  const double room_ns = burst_ns - static_cast<double>(tat - now_ns);
  if (room_ns <= 0) return 0;
  return std::min<int64_t>(cap, static_cast<int64_t>(room_ns / per));
}

void TokenBucket::Take(int64_t now_ns, int64_t n) {
  const double per = ns_per_token_.load(std::memory_order_relaxed);
  if (per <= 0 || n <= 0) return;
  const auto cost = static_cast<int64_t>(std::llround(static_cast<double>(n) * per));
  int64_t tat = tat_.load(std::memory_order_relaxed);
  while (!tat_.compare_exchange_weak(tat, std::max(tat, now_ns) + cost, std::memory_order_relaxed)) {
  }
}

int64_t TokenBucket::NanosUntil(int64_t now_ns, double n) const {
  const double per = ns_per_token_.load(std::memory_order_relaxed);
  if (per <= 0) return 0;
  const double burst = burst_.load(std::memory_order_relaxed);
  const double burst_ns = burst * per;
  const double need_ns = std::min(n, burst) * per;
  const int64_t tat = std::max(tat_.load(std::memory_order_relaxed), now_ns);
  // Room now is burst_ns - (tat - now); wait until it reaches need_ns.
  const double wait = static_cast<double>(tat - now_ns) - (burst_ns - need_ns);
  return wait <= 0 ? 0 : static_cast<int64_t>(std::ceil(wait));
}

}  // namespace alknet
