// A loop's liveness for /healthz: a timer on the loop stamps the time every second, and other
// threads read how long ago it last ran (a stuck loop stops stamping).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "server/loop/event_loop.h"

namespace alknet {

class LoopHeartbeat {
 public:
  // A loop that has not stamped for this long is stuck (/healthz 503, the client role not ready).
  static constexpr int64_t kStaleMillis = 5000;

  // Healthy from now until a beat is missed (call before the loop thread starts).
  void Reset();
  // Loop thread: stamps now, then again every second.
  void Beat(EventLoop& loop);
  int64_t millis_since() const;
  // Stamped within kStaleMillis. Thread-safe.
  bool fresh() const { return millis_since() < kStaleMillis; }

  // Tests only (before the loop thread starts): runs on the loop at every beat, before the
  // stamp. A hook that blocks stalls the loop exactly as a stuck handler would.
  void SetTestHook(std::function<void()> hook) { test_hook_ = std::move(hook); }

 private:
  std::atomic<int64_t> last_ms_{0};
  std::function<void()> test_hook_;
};

}  // namespace alknet
