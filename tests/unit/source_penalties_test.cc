// SourcePenalties with a fake clock: accumulation, threshold, cap, decay, netblocks, exempt
// list, both overflow rules, clear; and the CIDR parser behind them.
#include "server/engine/source_penalties.h"

#include <gtest/gtest.h>

namespace alknet {
namespace {

class SourcePenaltiesTest : public ::testing::Test {
 protected:
  SourcePenalties Make(SourcePenaltyOptions options) {
    return SourcePenalties(std::move(options), [this] { return now_; });
  }
  absl::Time now_ = absl::FromUnixSeconds(1000000);
};

TEST_F(SourcePenaltiesTest, RefusedOnceThePenaltyReachesMinUntilItRunsDown) {
  SourcePenaltyOptions options;  // sshd 9.8 values: authfail 5s, min 15s
  SourcePenalties table = Make(options);
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(table.Check("192.0.2.7").refused) << i;
    table.Penalise("192.0.2.7", PenaltyEvent::kAuthFail);
  }
  PenaltyCheck check = table.Check("192.0.2.7");
  EXPECT_TRUE(check.refused);
  EXPECT_TRUE(check.log);
  EXPECT_FALSE(table.Check("192.0.2.7").log);  // throttled
  EXPECT_FALSE(table.Check("192.0.2.8").refused);
  now_ += absl::Seconds(14);
  EXPECT_TRUE(table.Check("192.0.2.7").refused);
  now_ += absl::Seconds(1);
  EXPECT_FALSE(table.Check("192.0.2.7").refused);
  EXPECT_EQ(table.size(), 0u);
}

TEST_F(SourcePenaltiesTest, BelowMinIsNotRefusedAndDecays) {
  SourcePenalties table = Make({});
  table.Penalise("192.0.2.7", PenaltyEvent::kAuthFail);
  table.Penalise("192.0.2.7", PenaltyEvent::kAuthFail);
  EXPECT_FALSE(table.Check("192.0.2.7").refused);
  now_ += absl::Seconds(10);  // ran down completely
  table.Penalise("192.0.2.7", PenaltyEvent::kAuthFail);
  EXPECT_FALSE(table.Check("192.0.2.7").refused);
}

TEST_F(SourcePenaltiesTest, CappedAtMax) {
  SourcePenaltyOptions options;
  options.max = absl::Seconds(30);
  SourcePenalties table = Make(options);
  for (int i = 0; i < 100; ++i) table.Penalise("192.0.2.7", PenaltyEvent::kGraceExceeded);
  ASSERT_EQ(table.List().size(), 1u);
  EXPECT_EQ(table.List()[0].remaining, absl::Seconds(30));
  now_ += absl::Seconds(30);
  EXPECT_FALSE(table.Check("192.0.2.7").refused);
}

TEST_F(SourcePenaltiesTest, EachEventHasItsOwnPenalty) {
  SourcePenaltyOptions options;
  options.noauth = absl::Seconds(1);
  options.probe = absl::Seconds(7);
  options.grace_exceeded = absl::Seconds(20);
  SourcePenalties table = Make(options);
  table.Penalise("192.0.2.1", PenaltyEvent::kNoAuth);
  table.Penalise("192.0.2.2", PenaltyEvent::kProbe);
  table.Penalise("192.0.2.3", PenaltyEvent::kGraceExceeded);
  std::vector<PenaltyEntry> list = table.List();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].remaining, absl::Seconds(1));
  EXPECT_EQ(list[1].remaining, absl::Seconds(7));
  EXPECT_EQ(list[2].remaining, absl::Seconds(20));
  EXPECT_TRUE(list[2].refused);
  EXPECT_EQ(list[2].netblock, "192.0.2.3/32");
  EXPECT_EQ(PenaltyEventName(list[1].last_event), "probe");
}

TEST_F(SourcePenaltiesTest, Ipv6CountsPerSlash64AndMappedIpv4AsIpv4) {
  SourcePenalties table = Make({});
  table.Penalise("2001:db8:1:2::1", PenaltyEvent::kGraceExceeded);
  EXPECT_TRUE(table.Check("2001:db8:1:2:ffff::9").refused);
  EXPECT_FALSE(table.Check("2001:db8:1:3::1").refused);
  table.Penalise("::ffff:192.0.2.9", PenaltyEvent::kGraceExceeded);
  EXPECT_TRUE(table.Check("192.0.2.9").refused);
}

TEST_F(SourcePenaltiesTest, NetblockSizesAreConfigurable) {
  SourcePenaltyOptions options;
  options.ipv4_netblock = 24;
  options.ipv6_netblock = 128;
  SourcePenalties table = Make(options);
  table.Penalise("192.0.2.7", PenaltyEvent::kGraceExceeded);
  EXPECT_TRUE(table.Check("192.0.2.200").refused);
  table.Penalise("2001:db8::1", PenaltyEvent::kGraceExceeded);
  EXPECT_FALSE(table.Check("2001:db8::2").refused);
}

TEST_F(SourcePenaltiesTest, ExemptSourcesAreNeverPenalised) {
  SourcePenaltyOptions options;
  options.exempt.push_back(*ParseCidr("10.0.0.0/8"));
  SourcePenalties table = Make(options);
  table.Penalise("10.1.2.3", PenaltyEvent::kGraceExceeded);
  EXPECT_FALSE(table.Check("10.1.2.3").refused);
  EXPECT_EQ(table.size(), 0u);
}

TEST_F(SourcePenaltiesTest, DisabledDoesNothing) {
  SourcePenaltyOptions options;
  options.enabled = false;
  SourcePenalties table = Make(options);
  table.Penalise("192.0.2.7", PenaltyEvent::kGraceExceeded);
  EXPECT_FALSE(table.Check("192.0.2.7").refused);
}

TEST_F(SourcePenaltiesTest, OverflowPermissiveLeavesNewSourcesOutAndKeepsOldPenalties) {
  SourcePenaltyOptions options;
  options.max_sources = 2;
  SourcePenalties table = Make(options);
  table.Penalise("192.0.2.1", PenaltyEvent::kGraceExceeded);
  table.Penalise("192.0.2.2", PenaltyEvent::kGraceExceeded);
  table.Penalise("192.0.2.3", PenaltyEvent::kGraceExceeded);
  EXPECT_TRUE(table.Check("192.0.2.1").refused);
  EXPECT_TRUE(table.Check("192.0.2.2").refused);
  EXPECT_FALSE(table.Check("192.0.2.3").refused);
  EXPECT_FALSE(table.Check("192.0.2.4").refused);
  EXPECT_EQ(table.size(), 2u);
  now_ += absl::Seconds(21);  // both expired: room again
  table.Penalise("192.0.2.3", PenaltyEvent::kGraceExceeded);
  EXPECT_TRUE(table.Check("192.0.2.3").refused);
}

TEST_F(SourcePenaltiesTest, OverflowDenyAllRefusesEveryoneButExemptUntilAnEntryExpires) {
  SourcePenaltyOptions options;
  options.max_sources = 2;
  options.overflow = PenaltyOverflow::kDenyAll;
  options.exempt.push_back(*ParseCidr("192.0.2.100"));
  SourcePenalties table = Make(options);
  table.Penalise("192.0.2.1", PenaltyEvent::kAuthFail);
  table.Penalise("192.0.2.2", PenaltyEvent::kAuthFail);
  EXPECT_FALSE(table.Check("192.0.2.4").refused);
  table.Penalise("192.0.2.3", PenaltyEvent::kAuthFail);
  PenaltyCheck check = table.Check("192.0.2.4");
  EXPECT_TRUE(check.refused);
  EXPECT_TRUE(check.overflow);
  EXPECT_TRUE(table.Check("192.0.2.3").refused);
  EXPECT_FALSE(table.Check("192.0.2.100").refused);
  now_ += absl::Seconds(6);
  EXPECT_FALSE(table.Check("192.0.2.4").refused);
}

TEST_F(SourcePenaltiesTest, ClearLiftsAtOnceWithOrWithoutFilter) {
  SourcePenalties table = Make({});
  table.Penalise("192.0.2.1", PenaltyEvent::kGraceExceeded);
  table.Penalise("198.51.100.1", PenaltyEvent::kGraceExceeded);
  EXPECT_EQ(*table.Clear("192.0.2.0/24"), 1);
  EXPECT_FALSE(table.Check("192.0.2.1").refused);
  EXPECT_TRUE(table.Check("198.51.100.1").refused);
  EXPECT_FALSE(table.Clear("not-an-ip").ok());
  EXPECT_EQ(*table.Clear(""), 1);
  EXPECT_FALSE(table.Check("198.51.100.1").refused);
}

TEST(CidrTest, ParsesAndRefuses) {
  EXPECT_EQ(ParseCidr("10.0.0.0/8")->ToString(), "10.0.0.0/8");
  EXPECT_EQ(ParseCidr("2001:db8::/32")->ToString(), "2001:db8::/32");
  EXPECT_EQ(ParseCidr("127.0.0.2")->ToString(), "127.0.0.2/32");
  EXPECT_EQ(ParseCidr("0.0.0.0/0")->ToString(), "0.0.0.0/0");
  for (const char* bad : {"", "10.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/+8",
                          "10.0.0.0/08x", "host.example", "10.0.0.0/8/8", "[::1]"}) {
    EXPECT_FALSE(ParseCidr(bad).ok()) << bad;
  }
  EXPECT_TRUE(ParseCidr("10.0.0.0/8")->Contains(*ParseIpAddress("10.255.0.1")));
  EXPECT_FALSE(ParseCidr("10.0.0.0/8")->Contains(*ParseIpAddress("11.0.0.1")));
  EXPECT_FALSE(ParseCidr("::/0")->Contains(*ParseIpAddress("10.0.0.1")));
}

}  // namespace
}  // namespace alknet
