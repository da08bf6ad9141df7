// The etcd state backend against a real etcd (Debian's etcd-server): compare-and-swap between
// replicas, the watch, an outage (local copy, UNAVAILABLE writes, resync) and a compaction past
// a replica's watch (full reload).
#include "agent/state/etcd_backend.h"

#include <sys/stat.h>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "agent/state/file_backend.h"
#include "tests/support/agent_process.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/test_ports.h"

namespace alknet::state {
namespace {

using testing::EtcdCluster;
using testing::TempDir;

// The lock of the state directory is the file backend's business; here nothing to lock.
class NoLock final : public StateBackend {
 public:
  std::string Describe() const override { return "none"; }
  absl::Status Lock() override { return absl::OkStatus(); }
  void Unlock() override {}
  absl::StatusOr<std::optional<v1::State>> Load() override { return std::nullopt; }
  absl::StatusOr<CommitResult> Commit(uint64_t, const v1::State&) override { return CommitResult{}; }
  absl::Status Watch(uint64_t, ChangeCallback, ReachabilityCallback) override {
    return absl::OkStatus();
  }
};

v1::State StateWithKeys(uint64_t generation, int keys) {
  v1::State state;
  state.set_generation(generation);
  for (int i = 0; i < keys; ++i) {
    state.add_keys()->set_authorized_keys_line(absl::StrCat("ssh-ed25519 AAAA", i, " key", i));
  }
  return state;
}

// One replica's backend, with what its watch reported.
class Replica {
 public:
  Replica(const std::string& endpoints, const std::string& dir,
          std::unique_ptr<StateBackend> local = std::make_unique<NoLock>())
      : sink_(std::tmpfile()), logger_(LogLevel::kInfo, LogFormat::kText, sink_) {
    EtcdOptions options;
    options.url = *config::ParseStateStoreUrl(absl::StrCat("etcd://", endpoints, "/test"));
    options.call_timeout = absl::Seconds(2);
    auto client = EtcdClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    backend_ = std::make_unique<EtcdStateBackend>(*std::move(client), options,
                                                  std::move(local), dir + "/etcd-state.pb",
                                                  logger_);
  }
  ~Replica() {
    backend_.reset();
    std::fclose(sink_);
  }
  EtcdStateBackend& backend() { return *backend_; }
  void StartWatch() {
    ASSERT_TRUE(backend_
                    ->Watch(
                        0,
                        [this](v1::State state) {
                          absl::MutexLock lock(&mu_);
                          seen_.push_back(state.generation());
                        },
                        [this](bool reachable) {
                          absl::MutexLock lock(&mu_);
                          reachability_.push_back(reachable);
                        })
                    .ok());
  }
  // Waits until the watch reported generation `generation`.
  bool WaitForGeneration(uint64_t generation, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      {
        absl::MutexLock lock(&mu_);
        for (uint64_t seen : seen_) {
          if (seen == generation) return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  bool WaitForReachable(bool reachable, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (backend_->reachable() == reachable) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  std::vector<bool> reachability() {
    absl::MutexLock lock(&mu_);
    return reachability_;
  }
  std::string Log() {
    std::fflush(sink_);
    std::rewind(sink_);
    std::string text;
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, sink_)) > 0) text.append(buffer, n);
    std::fseek(sink_, 0, SEEK_END);
    return text;
  }

 private:
  std::FILE* sink_;
  Logger logger_;
  std::unique_ptr<EtcdStateBackend> backend_;
  absl::Mutex mu_;
  std::vector<uint64_t> seen_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> reachability_ ABSL_GUARDED_BY(mu_);
};

#define REQUIRE_CLUSTER(cluster) \
  if (!(cluster).available()) GTEST_SKIP() << (cluster).why()

TEST(EtcdBackendTest, ReplicasCompareAndSwapAndWatchEachOther) {
  TempDir dir;
  EtcdCluster cluster(dir, 1);
  REQUIRE_CLUSTER(cluster);
  Replica a(cluster.Endpoints(), dir.File("a"));
  Replica b(cluster.Endpoints(), dir.File("b"));
  ::mkdir(dir.File("a").c_str(), 0700);
  ::mkdir(dir.File("b").c_str(), 0700);

  auto loaded = a.backend().Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  ASSERT_TRUE(b.backend().Load().ok());
  b.StartWatch();

  ASSERT_TRUE(a.backend().Commit(0, StateWithKeys(1, 1)).ok());
  // B computed its change from generation 0 too: refused, nothing stored.
  auto conflict = b.backend().Commit(0, StateWithKeys(1, 5));
  EXPECT_TRUE(absl::IsAborted(conflict.status())) << conflict.status();
  EXPECT_TRUE(b.WaitForGeneration(1, std::chrono::seconds(1)));
  // Now B knows generation 1 and may write on top of it; A then is the one behind.
  ASSERT_TRUE(b.backend().Commit(1, StateWithKeys(2, 2)).ok());
  EXPECT_TRUE(absl::IsAborted(a.backend().Commit(1, StateWithKeys(2, 3)).status()));
  auto reread = a.backend().Load();
  ASSERT_TRUE(reread.ok() && reread->has_value());
  EXPECT_EQ((*reread)->generation(), 2u);
  EXPECT_EQ((*reread)->keys_size(), 2);
  // A generation that does not follow is a caller bug, refused before etcd.
  EXPECT_TRUE(absl::IsInvalidArgument(a.backend().Commit(2, StateWithKeys(4, 1)).status()));
}

TEST(EtcdBackendTest, OutageServesTheLocalCopyRefusesWritesAndResyncs) {
  TempDir dir;
  EtcdCluster cluster(dir, 1);
  REQUIRE_CLUSTER(cluster);
  ::mkdir(dir.File("a").c_str(), 0700);
  ::mkdir(dir.File("b").c_str(), 0700);
  Replica a(cluster.Endpoints(), dir.File("a"));
  Replica b(cluster.Endpoints(), dir.File("b"));
  ASSERT_TRUE(a.backend().Load().ok());
  ASSERT_TRUE(b.backend().Load().ok());
  a.StartWatch();
  b.StartWatch();
  ASSERT_TRUE(a.backend().Commit(0, StateWithKeys(1, 1)).ok());
  ASSERT_TRUE(b.WaitForGeneration(1, std::chrono::seconds(1)));

  cluster.Kill(0);
  auto refused = a.backend().Commit(1, StateWithKeys(2, 2));
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_TRUE(a.WaitForReachable(false, std::chrono::seconds(5)));
  EXPECT_TRUE(b.WaitForReachable(false, std::chrono::seconds(5)));
  // A replica that starts now serves B's local copy.
  {
    Replica restarted(cluster.Endpoints(), dir.File("b"));
    auto copy = restarted.backend().Load();
    ASSERT_TRUE(copy.ok()) << copy.status();
    ASSERT_TRUE(copy->has_value());
    EXPECT_EQ((*copy)->generation(), 1u);
    EXPECT_FALSE(restarted.backend().reachable());
    EXPECT_TRUE(absl::IsUnavailable(restarted.backend().Commit(1, StateWithKeys(2, 2)).status()));
  }
  // Without a copy there is nothing to serve: a clear error.
  {
    Replica fresh(cluster.Endpoints(), dir.File("none"));
    auto nothing = fresh.backend().Load();
    EXPECT_TRUE(absl::IsUnavailable(nothing.status())) << nothing.status();
    EXPECT_NE(std::string(nothing.status().message()).find("no local copy"), std::string::npos);
  }

  ASSERT_TRUE(cluster.Restart(0));
  EXPECT_TRUE(a.WaitForReachable(true, std::chrono::seconds(10))) << a.Log();
  EXPECT_TRUE(b.WaitForReachable(true, std::chrono::seconds(10)));
  auto after = a.backend().Commit(1, StateWithKeys(2, 2));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(b.WaitForGeneration(2, std::chrono::seconds(1)));
  EXPECT_EQ(b.reachability(), (std::vector<bool>{false, true}));
  EXPECT_NE(b.Log().find("etcd unreachable"), std::string::npos) << b.Log();
}

TEST(EtcdBackendTest, ACompactionPastTheWatchReloadsTheWholeState) {
  TempDir dir;
  EtcdCluster cluster(dir, 1);
  REQUIRE_CLUSTER(cluster);
  ::mkdir(dir.File("a").c_str(), 0700);
  ::mkdir(dir.File("b").c_str(), 0700);
  // B reaches etcd through a proxy that the test cuts and restores.
  uint16_t proxy_port = 0;
  auto proxy_argv = [&](uint16_t port) {
    return std::vector<std::string>{
        "socat", absl::StrCat("TCP-LISTEN:", port, ",bind=127.0.0.1,reuseaddr,fork"),
        absl::StrCat("TCP:127.0.0.1:", cluster.client_port(0))};
  };
  auto proxy = testing::StartListening(proxy_argv, dir.path(), "socat", &proxy_port);
  ASSERT_NE(proxy, nullptr);
  Replica a(cluster.Endpoints(), dir.File("a"));
  Replica b(absl::StrCat("127.0.0.1:", proxy_port), dir.File("b"));
  ASSERT_TRUE(a.backend().Load().ok());
  ASSERT_TRUE(b.backend().Load().ok());
  b.StartWatch();
  ASSERT_TRUE(a.backend().Commit(0, StateWithKeys(1, 1)).ok());
  ASSERT_TRUE(b.WaitForGeneration(1, std::chrono::seconds(1)));

  // Cut B off (the proxy and every connection it carries), change twice, compact.
  ::kill(-proxy->pid(), SIGKILL);
  proxy->Signal(SIGKILL);
  proxy.reset();
  ASSERT_TRUE(b.WaitForReachable(false, std::chrono::seconds(10))) << b.Log();
  ASSERT_TRUE(a.backend().Commit(1, StateWithKeys(2, 2)).ok());
  ASSERT_TRUE(a.backend().Commit(2, StateWithKeys(3, 3)).ok());
  ASSERT_TRUE(cluster.CompactAll().has_value());

  proxy = std::make_unique<testing::BackgroundProcess>(proxy_argv(proxy_port), dir.path(), "socat2");
  ASSERT_TRUE(testing::WaitForListener(*proxy, proxy_port));
  EXPECT_TRUE(b.WaitForGeneration(3, std::chrono::seconds(10))) << b.Log();
  EXPECT_NE(b.Log().find("etcd compacted past the watch"), std::string::npos) << b.Log();
  EXPECT_FALSE(b.WaitForGeneration(2, std::chrono::milliseconds(1)));  // skipped, not replayed
}

// Moving one agent into a fleet: the first replica on an empty prefix seeds etcd from its state
// file (create-only: a second one loads what the first stored, not its own file).
TEST(EtcdBackendTest, AnEmptyPrefixIsSeededFromTheStateFileOnce) {
  TempDir dir;
  EtcdCluster cluster(dir, 1);
  REQUIRE_CLUSTER(cluster);
  ::mkdir(dir.File("a").c_str(), 0700);
  ::mkdir(dir.File("b").c_str(), 0700);
  ASSERT_TRUE(FileStateBackend(dir.File("a")).Commit(0, StateWithKeys(1, 0)).ok());
  ASSERT_TRUE(FileStateBackend(dir.File("a")).Commit(1, StateWithKeys(2, 3)).ok());
  ASSERT_TRUE(FileStateBackend(dir.File("b")).Commit(0, StateWithKeys(1, 1)).ok());

  Replica a(cluster.Endpoints(), dir.File("a"), std::make_unique<FileStateBackend>(dir.File("a")));
  auto loaded = a.backend().Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->generation(), 2u);
  EXPECT_EQ((*loaded)->keys_size(), 3);
  EXPECT_NE(a.Log().find("seeded it from this agent's state file"), std::string::npos) << a.Log();

  Replica b(cluster.Endpoints(), dir.File("b"), std::make_unique<FileStateBackend>(dir.File("b")));
  loaded = b.backend().Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->generation(), 2u);  // A's, not B's own file
  EXPECT_EQ((*loaded)->keys_size(), 3);
  EXPECT_EQ(b.Log().find("seeded"), std::string::npos) << b.Log();
  // The next write goes on from the seeded generation.
  EXPECT_TRUE(b.backend().Commit(2, StateWithKeys(3, 4)).ok());
}

}  // namespace
}  // namespace alknet::state
