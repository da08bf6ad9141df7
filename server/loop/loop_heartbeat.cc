// A loop's liveness for /healthz.
#include "server/loop/loop_heartbeat.h"

#include <chrono>

namespace alknet {
namespace {

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void LoopHeartbeat::Reset() { last_ms_.store(SteadyMillis()); }

void LoopHeartbeat::Beat(EventLoop& loop) {
  if (test_hook_) test_hook_();
  Reset();
  loop.AddTimer(absl::Seconds(1), [this, &loop] { Beat(loop); });
}

int64_t LoopHeartbeat::millis_since() const { return SteadyMillis() - last_ms_.load(); }

}  // namespace alknet
