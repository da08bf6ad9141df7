// StartupLimiter: global and per-source caps, release on ticket destruction.
#include "server/engine/startup_limiter.h"

#include <gtest/gtest.h>

namespace alknet {
namespace {

TEST(StartupLimiterTest, PerSourceCapOnlyBlocksThatSource) {
  StartupLimiter limiter(10, 2);
  StartupVerdict verdict;
  auto a1 = limiter.TryAdmit("192.0.2.1", &verdict);
  auto a2 = limiter.TryAdmit("192.0.2.1", &verdict);
  ASSERT_NE(a1, nullptr);
  ASSERT_NE(a2, nullptr);
  EXPECT_EQ(limiter.TryAdmit("192.0.2.1", &verdict), nullptr);
  EXPECT_EQ(verdict, StartupVerdict::kSourceLimit);
  EXPECT_NE(limiter.TryAdmit("192.0.2.2", &verdict), nullptr);
  EXPECT_EQ(verdict, StartupVerdict::kAdmitted);
}

TEST(StartupLimiterTest, GlobalCapAndReleaseOnDestructionOrExplicitly) {
  StartupLimiter limiter(2, 2);
  StartupVerdict verdict;
  auto a = limiter.TryAdmit("a", &verdict);
  auto b = limiter.TryAdmit("b", &verdict);
  EXPECT_EQ(limiter.TryAdmit("c", &verdict), nullptr);
  EXPECT_EQ(verdict, StartupVerdict::kGlobalLimit);
  EXPECT_EQ(limiter.unauthenticated(), 2);
  a.reset();
  EXPECT_EQ(limiter.unauthenticated(), 1);
  b->Release();
  b->Release();  // idempotent
  EXPECT_EQ(limiter.unauthenticated(), 0);
  b.reset();
  EXPECT_EQ(limiter.unauthenticated(), 0);
  EXPECT_NE(limiter.TryAdmit("c", &verdict), nullptr);
}

}  // namespace
}  // namespace alknet
