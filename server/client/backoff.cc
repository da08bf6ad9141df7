// Reconnect delays: exponential backoff with jitter.
#include "server/client/backoff.h"

#include <algorithm>
#include <random>

namespace alknet {

Backoff::Backoff(absl::Duration initial, absl::Duration cap, double jitter)
    : initial_(initial), cap_(cap), jitter_(jitter), next_(initial) {}

Backoff::Delay Backoff::Next(const std::function<double()>& random01) {
  Delay delay;
  delay.base = next_;
  double unit;
  if (random01) {
    unit = random01();
  } else {
    thread_local std::mt19937_64 engine{std::random_device{}()};
    unit = std::uniform_real_distribution<double>(0.0, 1.0)(engine);
  }
  double factor = 1.0 + jitter_ * (2.0 * unit - 1.0);
  delay.actual = absl::Milliseconds(static_cast<int64_t>(absl::ToDoubleMilliseconds(delay.base) * factor));
  next_ = std::min(next_ * 2, cap_);
  return delay;
}

}  // namespace alknet
