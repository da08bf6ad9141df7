// A timer re-armed again and again (a throttled relay's token timer) allocates nothing once the
// loop has a spare queue node: counted by replacing operator new in this test binary only.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "server/loop/event_loop.h"

namespace {
thread_local bool counting = false;
thread_local int allocations = 0;
}  // namespace

void* operator new(std::size_t size) {
  if (counting) ++allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

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
  counting = true;
  for (int i = 0; i < 100; ++i) {
    arm();
    (*loop)->RunOnce(absl::Milliseconds(50));
  }
  counting = false;
  EXPECT_EQ(fired, 104);
  EXPECT_EQ(allocations, 0);
  // Cancelled timers give their node back too.
  counting = true;
  allocations = 0;
  for (int i = 0; i < 100; ++i) {
    EventLoop::TimerId id = (*loop)->AddTimer(absl::Seconds(10), [&fired] { ++fired; });
    (*loop)->CancelTimer(id);
  }
  counting = false;
  EXPECT_EQ(allocations, 0);
}

}  // namespace
}  // namespace alknet
