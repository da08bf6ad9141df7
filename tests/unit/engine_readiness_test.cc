// The engine in-process: not ready before its listeners accept, ready after, not ready once
// draining; /readyz over HTTP follows the same state.

#include <cstdio>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "server/engine/server_engine.h"
#include "tests/support/agent_process.h"

namespace alknet {
namespace {

TEST(EngineReadinessTest, ReadyOnlyWhileListenersAccept) {
  std::string dir = std::filesystem::temp_directory_path() / ("alknet-ready-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  config::AgentConfig config;
  config.state_dir = dir;
  config.listen = {*ParseEndpointUrl("tcp://127.0.0.1:0")};
  config.metrics.listen = HostPort{"127.0.0.1", 0};
  config::ResolveDefaults(config);
  config.workers = 1;
  std::FILE* sink = std::fopen("/dev/null", "w");
  Logger logger(LogLevel::kInfo, LogFormat::kText, sink);
  auth::KeyStore keys(std::make_shared<const auth::KeySet>(std::vector<auth::AuthorizedKey>{}));
  EngineMetrics metrics(std::make_shared<prometheus::Registry>(), {}, "test");
  {
    ServerEngine engine(config, logger, keys, metrics);
    EXPECT_FALSE(engine.Ready());  // nothing bound yet
    ASSERT_TRUE(engine.Start().ok());
    EXPECT_TRUE(engine.Ready());
    EXPECT_TRUE(engine.Healthy());
    EXPECT_EQ(testing::HttpStatusLine(engine.metrics_url(), "/readyz"), "HTTP/1.1 200 OK");
    EXPECT_EQ(testing::HttpStatusLine(engine.metrics_url(), "/healthz"), "HTTP/1.1 200 OK");
    engine.Shutdown(absl::ZeroDuration());
    EXPECT_FALSE(engine.Ready());
  }
  std::fclose(sink);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace alknet
