// ConnectionBudget (tls:// handshake and web budgets, item 3): caps, release, IPv6 per /64.
#include "server/common/connection_budget.h"

#include <gtest/gtest.h>

namespace alknet {
namespace {

TEST(ConnectionBudgetTest, SourceKeyGroupsIpv6PerSlash64) {
  EXPECT_EQ(BudgetSourceKey("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(BudgetSourceKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(BudgetSourceKey("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(BudgetSourceKey("::ffff:192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(BudgetSourceKey("not an address"), "not an address");
}

TEST(ConnectionBudgetTest, Item3WebBudgetCapsTotalPerSourceAndPerIpv6Slash64) {
  ConnectionBudget budget(4, 2);
  BudgetVerdict verdict;
  auto a1 = budget.TryAdmit("2001:db8:1:2::1", &verdict);
  auto a2 = budget.TryAdmit("2001:db8:1:2::ffff", &verdict);  // same /64
  ASSERT_NE(a1, nullptr);
  ASSERT_NE(a2, nullptr);
  EXPECT_EQ(budget.TryAdmit("2001:db8:1:2:1:2:3:4", &verdict), nullptr);
  EXPECT_EQ(verdict, BudgetVerdict::kSourceLimit);
  auto b1 = budget.TryAdmit("2001:db8:1:3::1", &verdict);  // next /64
  auto b2 = budget.TryAdmit("192.0.2.1", &verdict);
  ASSERT_NE(b1, nullptr);
  ASSERT_NE(b2, nullptr);
  EXPECT_EQ(budget.TryAdmit("192.0.2.2", &verdict), nullptr);
  EXPECT_EQ(verdict, BudgetVerdict::kTotalLimit);
  EXPECT_EQ(budget.in_use(), 4);
  EXPECT_EQ(budget.in_use_by("2001:db8:1:2::9"), 2);
  a1.reset();
  EXPECT_EQ(budget.in_use_by("2001:db8:1:2::9"), 1);
  EXPECT_NE(budget.TryAdmit("192.0.2.2", &verdict), nullptr);
  EXPECT_EQ(verdict, BudgetVerdict::kAdmitted);
}

}  // namespace
}  // namespace alknet
