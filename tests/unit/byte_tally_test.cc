// Per-worker byte tallies: each worker adds to its own cells, a scrape folds them into the
// alknet_forwarded_bytes_total and alknet_key_forwarded_bytes_total counters (issue 17).
#include "server/metrics/byte_tally.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/metrics/engine_metrics.h"

namespace alknet {
namespace {

constexpr char kLabelled[] = "SHA256:labelled";

// The value of the counter series whose labels (sorted by name, as collected) are `labels`.
double CounterValue(EngineMetrics& metrics, const std::string& family, const std::string& labels) {
  for (const auto& f : metrics.Collect()) {
    if (f.name != family) continue;
    for (const auto& metric : f.metric) {
      std::string rendered;
      for (const auto& label : metric.label) {
        if (!rendered.empty()) rendered += ",";
        rendered += label.name + "=" + label.value;
      }
      if (rendered == labels) return metric.counter.value;
    }
  }
  ADD_FAILURE() << "no series " << family << "{" << labels << "}";
  return -1;
}

class ByteTallyTest : public ::testing::Test {
 protected:
  EngineMetrics metrics_{std::make_shared<prometheus::Registry>(), {{kLabelled, "ops"}}, "test"};
};

TEST_F(ByteTallyTest, WorkersTalliesAreSummedAtScrapeTime) {
  ByteTally& first = metrics_.NewByteTally();
  ByteTally& second = metrics_.NewByteTally();
  ByteCounters a = metrics_.BytesFor(first, TransportLabel::kTls, "SHA256:unlabelled");
  ByteCounters b = metrics_.BytesFor(second, TransportLabel::kTls, "SHA256:unlabelled");
  ByteTally::Add(a.upstream, 1000);
  ByteTally::Add(b.upstream, 24);
  ByteTally::Add(b.downstream, 7);
  EXPECT_EQ(a.key_upstream, nullptr);  // unlabelled keys have no per-key series
  EXPECT_EQ(CounterValue(metrics_, "alknet_forwarded_bytes_total", "direction=upstream,transport=tls"), 1024);
  EXPECT_EQ(CounterValue(metrics_, "alknet_forwarded_bytes_total", "direction=downstream,transport=tls"), 7);
  EXPECT_EQ(CounterValue(metrics_, "alknet_forwarded_bytes_total", "direction=upstream,transport=tcp"), 0);
}

TEST_F(ByteTallyTest, EachScrapeAddsOnlyWhatWasCountedSinceTheLast) {
  ByteTally& tally = metrics_.NewByteTally();
  ByteCounters counters = metrics_.BytesFor(tally, TransportLabel::kTcp, kLabelled);
  ByteTally::Add(counters.downstream, 100);
  ByteTally::Add(counters.key_downstream, 100);
  EXPECT_EQ(CounterValue(metrics_, "alknet_forwarded_bytes_total", "direction=downstream,transport=tcp"), 100);
  EXPECT_EQ(CounterValue(metrics_, "alknet_forwarded_bytes_total", "direction=downstream,transport=tcp"), 100);
  ByteTally::Add(counters.downstream, 50);
  ByteTally::Add(counters.key_downstream, 50);
  ByteTally::Add(counters.key_upstream, 5);
  EXPECT_EQ(CounterValue(metrics_, "alknet_forwarded_bytes_total", "direction=downstream,transport=tcp"), 150);
  EXPECT_EQ(CounterValue(metrics_, "alknet_key_forwarded_bytes_total", "direction=downstream,key=ops"), 150);
  EXPECT_EQ(CounterValue(metrics_, "alknet_key_forwarded_bytes_total", "direction=upstream,key=ops"), 5);
}

TEST_F(ByteTallyTest, ScrapesWhileWorkersCountSeeEveryByteInTheEnd) {
  constexpr int kWorkers = 4;
  constexpr int kChunks = 20000;
  std::vector<ByteCounters> counters;
  for (int i = 0; i < kWorkers; ++i) {
    counters.push_back(metrics_.BytesFor(metrics_.NewByteTally(), TransportLabel::kQuic, kLabelled));
  }
  std::atomic<int> finished{0};
  std::vector<std::thread> workers;
  for (int i = 0; i < kWorkers; ++i) {
    workers.emplace_back([&, i] {
      for (int c = 0; c < kChunks; ++c) {
        ByteTally::Add(counters[i].upstream, 3);
        ByteTally::Add(counters[i].key_upstream, 3);
      }
      finished.fetch_add(1);
    });
  }
  double previous = 0;
  while (finished.load() < kWorkers) {  // never decreasing while they count
    double now = CounterValue(metrics_, "alknet_forwarded_bytes_total", "direction=upstream,transport=quic");
    EXPECT_GE(now, previous);
    previous = now;
  }
  for (auto& worker : workers) worker.join();
  const double total = 3.0 * kWorkers * kChunks;
  EXPECT_EQ(CounterValue(metrics_, "alknet_forwarded_bytes_total", "direction=upstream,transport=quic"), total);
  EXPECT_EQ(CounterValue(metrics_, "alknet_key_forwarded_bytes_total", "direction=upstream,key=ops"), total);
}

TEST(ByteTallyAddTest, ANullCellCountsNothing) {
  ByteTally::Add(nullptr, 10);  // no crash: a relay without metrics has null cells
  ByteTally tally(1);
  ByteTally::Add(tally.cell(0, 1), 10);
  ByteTally::Add(tally.cell(0, 1), 5);
  EXPECT_EQ(tally.value(0, 1), 15u);
  EXPECT_EQ(tally.value(0, 0), 0u);
}

}  // namespace
}  // namespace alknet
