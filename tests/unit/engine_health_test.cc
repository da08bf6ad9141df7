// /healthz and /readyz go red and come back, in-process: a stalled worker loop, and in `serve`
// with upstreams a stalled client loop (through agent::MakeClientRole, as the agent wires it).
// The stall is a test hook on the loop's heartbeat timer that blocks until released.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <libssh/libssh.h>
#include <prometheus/registry.h>

#include "agent/client_runner.h"
#include "server/auth/authorized_keys.h"
#include "server/client/client_engine.h"
#include "server/engine/server_engine.h"
#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"

namespace alknet {
namespace {

using testing::HttpStatusLine;
using testing::TempDir;

constexpr char kOk[] = "HTTP/1.1 200 OK";
constexpr char kUnavailable[] = "HTTP/1.1 503 Service Unavailable";

// Polls `path` until it answers `want` (or 30 s pass); returns the last answer.
std::string WaitForStatus(const std::string& url, const std::string& path, const std::string& want) {
  std::string got;
  for (int i = 0; i < 300; ++i) {
    got = HttpStatusLine(url, path);
    if (got == want) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return got;
}

// A heartbeat hook that blocks its loop while stalled.
class Stall {
 public:
  void Hook() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!stall_) return;
    stalled_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !stall_; });
    stalled_ = false;
  }
  // Returns once the loop is blocked in the hook (its next beat, within about a second).
  bool Begin() {
    std::unique_lock<std::mutex> lock(mu_);
    stall_ = true;
    return cv_.wait_for(lock, std::chrono::seconds(10), [this] { return stalled_; });
  }
  void End() {
    std::lock_guard<std::mutex> lock(mu_);
    stall_ = false;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stall_ = false;
  bool stalled_ = false;
};

struct Fixture {
  TempDir dir;
  std::FILE* sink = std::fopen("/dev/null", "w");
  Logger logger{LogLevel::kInfo, LogFormat::kText, sink};
  auth::KeyStore keys{std::make_shared<const auth::KeySet>(std::vector<auth::AuthorizedKey>{})};
  EngineMetrics metrics{std::make_shared<prometheus::Registry>(), {}, "test"};
  config::AgentConfig config;

  Fixture() {
    config.state_dir = dir.path();
    config.listen = {*ParseEndpointUrl("tcp://127.0.0.1:0")};
    config.metrics.listen = HostPort{"127.0.0.1", 0};
    config::ResolveDefaults(config);
    config.workers = 2;
  }
  ~Fixture() { std::fclose(sink); }
};

TEST(EngineHealthTest, StalledWorkerLoopTurnsHealthzRedAndBack) {
  Fixture f;
  Stall stall;
  ServerEngine engine(f.config, f.logger, f.keys, f.metrics);
  engine.SetWorkerHeartbeatTestHook([&stall](int index) {
    if (index == 1) stall.Hook();
  });
  ASSERT_TRUE(engine.Start().ok());
  EXPECT_EQ(HttpStatusLine(engine.metrics_url(), "/healthz"), kOk);
  ASSERT_TRUE(stall.Begin()) << "worker 1 never ran its heartbeat";
  // Answered by the acceptor loop, which is fine: only worker 1 is stuck.
  EXPECT_EQ(WaitForStatus(engine.metrics_url(), "/healthz", kUnavailable), kUnavailable);
  EXPECT_FALSE(engine.Healthy());
  stall.End();
  EXPECT_EQ(WaitForStatus(engine.metrics_url(), "/healthz", kOk), kOk);
  EXPECT_TRUE(engine.Healthy());
  engine.Shutdown(absl::ZeroDuration());
}

// `serve` with an upstream (to this same engine): a stuck client loop turns /healthz red, and
// its upstream's readiness with it, although the upstream's "connected" flag stays true.
TEST(EngineHealthTest, StalledClientLoopTurnsHealthzAndReadyzRedAndBack) {
  ssh_init();
  {
    Fixture f;
    testing::TestKey user = testing::MakeKey(f.dir, "user");
    auto key = auth::ParseAuthorizedKeyLine(user.public_line);
    ASSERT_TRUE(key.ok()) << key.status();
    f.keys.Replace(std::make_shared<const auth::KeySet>(std::vector<auth::AuthorizedKey>{*key}));

    ServerEngine engine(f.config, f.logger, f.keys, f.metrics);
    ASSERT_TRUE(engine.Start().ok());
    config::AgentConfig with_upstream = f.config;
    config::UpstreamConfig upstream;
    upstream.name = "self";
    upstream.server = *ParseEndpointUrl("tcp://" + engine.bound_endpoints()[0].address.ToString());
    upstream.user = "test";
    upstream.identity = user.private_path;
    upstream.insecure_accept_any_host_key = true;
    with_upstream.upstreams = {upstream};
    Stall stall;
    std::unique_ptr<ClientEngine> client = agent::MakeClientRole(
        with_upstream, f.logger, f.metrics, engine, {.heartbeat_test_hook = [&stall] { stall.Hook(); }});
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Start().ok());
    const std::string url = engine.metrics_url();
    ASSERT_EQ(WaitForStatus(url, "/readyz", kOk), kOk) << "the upstream never connected";
    EXPECT_EQ(HttpStatusLine(url, "/healthz"), kOk);

    ASSERT_TRUE(stall.Begin()) << "the client loop never ran its heartbeat";
    EXPECT_EQ(WaitForStatus(url, "/healthz", kUnavailable), kUnavailable);
    EXPECT_EQ(HttpStatusLine(url, "/readyz"), kUnavailable);
    EXPECT_FALSE(client->Ready());
    stall.End();
    EXPECT_EQ(WaitForStatus(url, "/healthz", kOk), kOk);
    EXPECT_EQ(WaitForStatus(url, "/readyz", kOk), kOk);

    client->Shutdown();
    EXPECT_TRUE(client->Healthy());  // a stopped client role is not stuck
    EXPECT_EQ(HttpStatusLine(url, "/healthz"), kOk);
    engine.Shutdown(absl::ZeroDuration());
  }
  ssh_finalize();
}

}  // namespace
}  // namespace alknet
