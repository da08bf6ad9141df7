// A loop's liveness for /healthz: a timer on the loop stamps the time every second, and other
// threads read how long ago it last ran (a stuck loop stops stamping).
#pragma once

#include <atomic>
#include <cstdint>

#include "server/loop/event_loop.h"

namespace alknet {

class LoopHeartbeat {
 public:
  // Healthy from now until a beat is missed (call before the loop thread starts).
  void Reset();
  // Loop thread: stamps now, then again every second.
  void Beat(EventLoop& loop);
  int64_t millis_since() const;

 private:
  std::atomic<int64_t> last_ms_{0};
};

}  // namespace alknet
