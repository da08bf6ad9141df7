// TokenBucket and RateLimiter against a fake clock: rates, bursts, live changes, table bounds.
#include "server/common/rate_limiter.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace alknet {
namespace {

constexpr int64_t kSecond = 1000 * 1000 * 1000;

class FakeClock final : public MonotonicClock {
 public:
  int64_t NowNanos() const override { return now; }
  int64_t now = 1000 * kSecond;
};

TEST(TokenBucketTest, ZeroRateIsUnlimited) {
  TokenBucket bucket(0, 0);
  EXPECT_TRUE(bucket.unlimited());
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(bucket.TryTake(0));
  EXPECT_EQ(bucket.Available(0, 77), 77);
  EXPECT_EQ(bucket.NanosUntil(0, 1e9), 0);
}

TEST(TokenBucketTest, BurstThenRate) {
  FakeClock clock;
  TokenBucket bucket(2, 5);  // 2 per second, 5 saved up
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(bucket.TryTake(clock.now)) << i;
  EXPECT_FALSE(bucket.TryTake(clock.now));
  EXPECT_EQ(bucket.NanosUntil(clock.now, 1), kSecond / 2);
  clock.now += kSecond / 2 - 1;
  EXPECT_FALSE(bucket.TryTake(clock.now));
  clock.now += 1;
  EXPECT_TRUE(bucket.TryTake(clock.now));
  EXPECT_FALSE(bucket.TryTake(clock.now));
  // A long pause refills to the burst, never more.
  clock.now += 100 * kSecond;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(bucket.TryTake(clock.now)) << i;
  EXPECT_FALSE(bucket.TryTake(clock.now));
}

TEST(TokenBucketTest, BytesAvailableTakeAndDebt) {
  FakeClock clock;
  TokenBucket bucket(10'000'000, 1'000'000);  // 10 MB/s, 1 MB burst
  EXPECT_EQ(bucket.Available(clock.now, 1 << 30), 1'000'000);
  EXPECT_EQ(bucket.Available(clock.now, 4096), 4096);
  bucket.Take(clock.now, 1'000'000);
  EXPECT_EQ(bucket.Available(clock.now, 1 << 30), 0);
  // 1 ms later: 10 kB.
  clock.now += kSecond / 1000;
  EXPECT_EQ(bucket.Available(clock.now, 1 << 30), 10'000);
  // Debt: taking more than is there pushes the refill further out.
  bucket.Take(clock.now, 60'000);
  EXPECT_EQ(bucket.Available(clock.now, 1 << 30), 0);
  EXPECT_EQ(bucket.NanosUntil(clock.now, 10'000), 6 * kSecond / 1000);
  // 100 MB at 10 MB/s with a 1 MB burst takes 9.9 s of clock time at the least.
  FakeClock fresh;
  TokenBucket cap(10'000'000, 1'000'000);
  int64_t moved = 0;
  const int64_t start = fresh.now;
  while (moved < 100'000'000) {
    int64_t take = cap.Available(fresh.now, 256 * 1024);
    if (take == 0) {
      fresh.now += std::max<int64_t>(cap.NanosUntil(fresh.now, 64 * 1024), 1);
      continue;
    }
    cap.Take(fresh.now, take);
    moved += take;
  }
  EXPECT_GE(fresh.now - start, 99 * kSecond / 10);
  EXPECT_LE(fresh.now - start, 100 * kSecond / 10);
}

TEST(TokenBucketTest, ConfigureAppliesLive) {
  FakeClock clock;
  TokenBucket bucket(1, 1);
  EXPECT_TRUE(bucket.TryTake(clock.now));
  EXPECT_FALSE(bucket.TryTake(clock.now));
  bucket.Configure(1000, 1000, clock.now);  // the missing token now refills in 1 ms
  EXPECT_EQ(bucket.Available(clock.now, 1 << 20), 999);
  clock.now += kSecond / 1000;
  EXPECT_EQ(bucket.Available(clock.now, 1 << 20), 1000);
  bucket.Take(clock.now, 1000);
  bucket.Configure(1, 1000, clock.now);  // lowered: the 1000 missing tokens take 1000 s now
  clock.now += 500 * kSecond;
  EXPECT_EQ(bucket.Available(clock.now, 1 << 20), 500);
  bucket.Configure(0, 0);
  EXPECT_TRUE(bucket.unlimited());
}

TEST(TokenBucketTest, ConcurrentTakersNeverExceedTheBurst) {
  FakeClock clock;  // frozen: only the burst is there
  TokenBucket bucket(1, 1000);
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (bucket.TryTake(clock.now)) taken.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(taken.load(), 1000);
}

TEST(RateLimiterTest, ConnectionsPerSourceAndIpv6Prefix) {
  FakeClock clock;
  RateLimiter limiter(clock, {.connections_per_source = 1, .connections_per_source_burst = 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.AdmitConnection("127.0.0.2")) << i;
  EXPECT_FALSE(limiter.AdmitConnection("127.0.0.2"));
  EXPECT_TRUE(limiter.AdmitConnection("127.0.0.3"));  // another source has its own bucket
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.AdmitConnection("2001:db8::1"));
  EXPECT_FALSE(limiter.AdmitConnection("2001:db8::ffff"));  // same /64
  EXPECT_TRUE(limiter.AdmitConnection("2001:db8:0:1::1"));
  clock.now += kSecond;
  EXPECT_TRUE(limiter.AdmitConnection("127.0.0.2"));
  EXPECT_FALSE(limiter.AdmitConnection("127.0.0.2"));
  // Turned off live.
  limiter.Update({});
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(limiter.AdmitConnection("127.0.0.2"));
  EXPECT_EQ(limiter.tracked_sources(), 0u);
}

TEST(RateLimiterTest, SourceTableOverflowDropsRefilledThenAdmitsUntracked) {
  FakeClock clock;
  RateLimiter limiter(clock, {.connections_per_source = 1, .connections_per_source_burst = 1}, 2, 2);
  EXPECT_TRUE(limiter.AdmitConnection("10.0.0.1"));
  EXPECT_TRUE(limiter.AdmitConnection("10.0.0.2"));
  // Full, nothing refilled: a new source is admitted untracked.
  EXPECT_TRUE(limiter.AdmitConnection("10.0.0.3"));
  EXPECT_TRUE(limiter.AdmitConnection("10.0.0.3"));
  EXPECT_EQ(limiter.tracked_sources(), 2u);
  EXPECT_FALSE(limiter.AdmitConnection("10.0.0.1"));  // tracked ones stay limited
  clock.now += 2 * kSecond;                            // every bucket refilled: swept
  EXPECT_TRUE(limiter.AdmitConnection("10.0.0.3"));
  EXPECT_FALSE(limiter.AdmitConnection("10.0.0.3"));
}

TEST(RateLimiterTest, SessionsPerKeyCapAndRate) {
  FakeClock clock;
  RateLimiter limiter(clock, {.sessions_per_key = 1, .sessions_per_key_burst = 3,
                              .max_sessions_per_key = 2});
  std::unique_ptr<KeySessionLease> a, b, c;
  EXPECT_EQ(limiter.AdmitSession("SHA256:a", a), SessionVerdict::kAdmitted);
  EXPECT_EQ(limiter.AdmitSession("SHA256:a", b), SessionVerdict::kAdmitted);
  EXPECT_EQ(limiter.AdmitSession("SHA256:a", c), SessionVerdict::kSessionsPerKey);
  EXPECT_EQ(c, nullptr);
  EXPECT_EQ(&a->key(), &b->key());  // one shared state per key
  EXPECT_EQ(a->key().sessions.load(), 2);
  b.reset();
  EXPECT_EQ(limiter.AdmitSession("SHA256:a", c), SessionVerdict::kAdmitted);
  c.reset();
  // The third token is gone: the rate refuses now, not the cap.
  EXPECT_EQ(limiter.AdmitSession("SHA256:a", c), SessionVerdict::kSessionRate);
  clock.now += kSecond;
  EXPECT_EQ(limiter.AdmitSession("SHA256:a", c), SessionVerdict::kAdmitted);
  std::unique_ptr<KeySessionLease> other;
  EXPECT_EQ(limiter.AdmitSession("SHA256:b", other), SessionVerdict::kAdmitted);
}

TEST(RateLimiterTest, KeyTableOverflowDropsIdleKeysOnly) {
  FakeClock clock;
  RateLimiter limiter(clock, {}, 2, 2);
  std::unique_ptr<KeySessionLease> a, b, c;
  EXPECT_EQ(limiter.AdmitSession("SHA256:a", a), SessionVerdict::kAdmitted);
  EXPECT_EQ(limiter.AdmitSession("SHA256:b", b), SessionVerdict::kAdmitted);
  EXPECT_EQ(limiter.AdmitSession("SHA256:c", c), SessionVerdict::kKeyTableFull);
  b.reset();  // key b has no live session any more: it may be dropped
  EXPECT_EQ(limiter.AdmitSession("SHA256:c", c), SessionVerdict::kAdmitted);
  EXPECT_EQ(limiter.tracked_keys(), 2u);
}

TEST(RateLimiterTest, BandwidthUpdateReachesLiveKeys) {
  FakeClock clock;
  RateLimiter limiter(clock, {});
  std::unique_ptr<KeySessionLease> a;
  ASSERT_EQ(limiter.AdmitSession("SHA256:a", a), SessionVerdict::kAdmitted);
  EXPECT_TRUE(a->key().download.unlimited());
  limiter.Update({.bandwidth_per_key = 1000, .bandwidth_per_key_burst = 500});
  EXPECT_FALSE(a->key().download.unlimited());
  EXPECT_EQ(a->key().upload.Available(clock.now, 1 << 20), 500);
  limiter.Update({.bandwidth_per_key = 1000});  // burst 0: one second of the rate
  EXPECT_EQ(a->key().download.Available(clock.now, 1 << 20), 1000);
  // Another key has buckets of its own; an exempt key has none that bind.
  std::unique_ptr<KeySessionLease> b;
  ASSERT_EQ(limiter.AdmitSession("SHA256:b", b), SessionVerdict::kAdmitted);
  EXPECT_NE(&a->key(), &b->key());
  a->key().download.Take(clock.now, 1000);
  EXPECT_EQ(b->key().download.Available(clock.now, 1 << 20), 1000);
  limiter.Update({.bandwidth_per_key = 1000, .bandwidth_exempt_keys = {"SHA256:b"}});
  EXPECT_TRUE(b->key().download.unlimited());
  EXPECT_FALSE(a->key().download.unlimited());
}

TEST(RateLimiterTest, LogThrottleOncePerSourcePerInterval) {
  FakeClock clock;
  RateLimiter limiter(clock, {});
  EXPECT_TRUE(limiter.ShouldLog("conn-rate", "127.0.0.2"));
  EXPECT_FALSE(limiter.ShouldLog("conn-rate", "127.0.0.2"));
  EXPECT_TRUE(limiter.ShouldLog("conn-rate", "127.0.0.3"));
  EXPECT_TRUE(limiter.ShouldLog("channel-rate", "127.0.0.2"));
  clock.now += RateLimiter::kLogIntervalNanos;
  EXPECT_TRUE(limiter.ShouldLog("conn-rate", "127.0.0.2"));
  EXPECT_FALSE(limiter.ShouldLog("conn-rate", "127.0.0.2"));
}

}  // namespace
}  // namespace alknet

// ---- the rate_limits config section's values (server/config/rate_units) ----
#include "server/config/config_schema.h"
#include "server/config/config_yaml.h"
#include "server/config/rate_units.h"

namespace alknet::config {
namespace {

TEST(RateUnitsTest, RatesParseAndPrint) {
  RateSpec rate;
  ASSERT_TRUE(ParseRate("20", rate).ok());
  EXPECT_EQ(FormatRate(rate), "20/s");
  ASSERT_TRUE(ParseRate("30/m", rate).ok());
  EXPECT_DOUBLE_EQ(rate.per_second(), 0.5);
  EXPECT_EQ(FormatRate(rate), "30/m");
  ASSERT_TRUE(ParseRate("0", rate).ok());
  EXPECT_EQ(FormatRate(rate), "0");
  for (const char* bad : {"", "-1", "1/d", "1.5", "x", "1000001", "5/ s"}) {
    EXPECT_FALSE(ParseRate(bad, rate).ok()) << bad;
  }
}

TEST(RateUnitsTest, ByteSizesParseAndPrint) {
  int64_t bytes = 0;
  ASSERT_TRUE(ParseByteSize("10MB", bytes).ok());
  EXPECT_EQ(bytes, 10'000'000);
  EXPECT_EQ(FormatByteSize(bytes), "10MB");
  ASSERT_TRUE(ParseByteSize("512KiB/s", bytes).ok());
  EXPECT_EQ(bytes, 512 * 1024);
  EXPECT_EQ(FormatByteSize(bytes), "512KiB");
  ASSERT_TRUE(ParseByteSize("1G", bytes).ok());
  EXPECT_EQ(bytes, 1'000'000'000);
  ASSERT_TRUE(ParseByteSize("65537", bytes).ok());
  EXPECT_EQ(FormatByteSize(bytes), "65537");
  for (const char* bad : {"", "MB", "10XB", "10 MB", "2TB", "-1", "10MBB"}) {
    EXPECT_FALSE(ParseByteSize(bad, bytes).ok()) << bad;
  }
}

TEST(RateUnitsTest, YamlSectionRoundTripsAndNamesTheField) {
  AgentConfig config;
  const std::string exempt(50, 'x');
  ASSERT_TRUE(ApplyYaml("rate_limits:\n  bandwidth_per_key: 10MB\n  max_sessions_per_key: 2\n"
                        "  bandwidth_exempt_keys: SHA256:" + exempt.substr(7) + "\n"
                        "  channels_per_session: 5/s\n  channels_per_session_burst: 3\n",
                        "test.yaml", config)
                  .ok());
  EXPECT_EQ(config.rate_limits.bandwidth_per_key, 10'000'000);
  EXPECT_EQ(config.rate_limits.max_sessions_per_key, 2);
  RateLimitSettings settings = ToRateLimitSettings(config.rate_limits);
  EXPECT_DOUBLE_EQ(settings.channels_per_session, 5);
  EXPECT_DOUBLE_EQ(settings.channels_per_session_burst, 3);
  AgentConfig again;
  ASSERT_TRUE(ApplyYaml(ToYaml(config), "printed.yaml", again).ok());
  EXPECT_EQ(again.rate_limits, config.rate_limits);
  EXPECT_EQ(again.rate_limits.bandwidth_exempt_keys.size(), 1u);
  AgentConfig defaults;
  AgentConfig defaults_again;
  ASSERT_TRUE(ApplyYaml(ToYaml(defaults), "defaults.yaml", defaults_again).ok());
  EXPECT_EQ(defaults_again.rate_limits, defaults.rate_limits);
  absl::Status bad = ApplyYaml("rate_limits:\n  bandwidth_per_key: lots\n", "bad.yaml", config);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("rate_limits.bandwidth_per_key"), std::string::npos) << bad;
}

}  // namespace
}  // namespace alknet::config
