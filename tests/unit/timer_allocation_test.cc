// A timer re-armed again and again (a throttled relay's token timer) allocates nothing once the
// loop has a spare queue node: counted by the operator new of alknet_counting_new.
#include <gtest/gtest.h>

#include <cstdint>

#include "bench/counting_new.h"
#include "server/loop/event_loop.h"

namespace alknet {
namespace {

TEST(TimerAllocationTest, RearmingAOneShotTimerAllocatesNothingInSteadyState) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  int fired = 0;
  auto arm = [&] { (*loop)->AddTimer(absl::ZeroDuration(), [&fired] { ++fired; }); };
  // Warm up: the first arming creates the queue node and the map's slots.
  for (int i = 0; i < 4; ++i) {
    arm();
    (*loop)->RunOnce(absl::Milliseconds(50));
  }
  ASSERT_EQ(fired, 4);
  uint64_t before = OperatorNewCount();
  for (int i = 0; i < 100; ++i) {
    arm();
    (*loop)->RunOnce(absl::Milliseconds(50));
  }
  EXPECT_EQ(OperatorNewCount() - before, 0u);
  EXPECT_EQ(fired, 104);
  // Cancelled timers give their node back too.
  before = OperatorNewCount();
  for (int i = 0; i < 100; ++i) {
    EventLoop::TimerId id = (*loop)->AddTimer(absl::Seconds(10), [&fired] { ++fired; });
    (*loop)->CancelTimer(id);
  }
  EXPECT_EQ(OperatorNewCount() - before, 0u);
}

}  // namespace
}  // namespace alknet
