// Reconnect delays: exponential backoff with jitter (1 s doubling to a 30 s cap by default),
// reset after a successful connection.
#pragma once

#include <functional>

#include "absl/time/time.h"

namespace alknet {

class Backoff {
 public:
  struct Delay {
    absl::Duration base;    // the deterministic step: 1s, 2s, 4s, ... cap
    absl::Duration actual;  // base scaled by the jitter factor (what the timer waits)
  };

  // `jitter` = 0.2 spreads the actual delay uniformly over [0.8, 1.2] x base.
  explicit Backoff(absl::Duration initial = absl::Seconds(1), absl::Duration cap = absl::Seconds(30),
                   double jitter = 0.2);

  // The next delay; `random01` returns a uniform value in [0, 1) (injectable for tests).
  Delay Next(const std::function<double()>& random01 = {});
  void Reset() { next_ = initial_; }

 private:
  absl::Duration initial_;
  absl::Duration cap_;
  double jitter_;
  absl::Duration next_;
};

}  // namespace alknet
