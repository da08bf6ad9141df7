// The engine in-process: not ready before its listeners accept, ready after, not ready once
// draining; /readyz over HTTP follows the same state.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "server/engine/server_engine.h"

namespace alknet {
namespace {

std::string HttpGet(const std::string& url, const std::string& path) {
  // url: "http://127.0.0.1:PORT"
  int port = std::stoi(url.substr(url.rfind(':') + 1));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return "";
  }
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) response.append(buffer, static_cast<size_t>(n));
  close(fd);
  return response.substr(0, response.find("\r\n"));
}

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
    EXPECT_EQ(HttpGet(engine.metrics_url(), "/readyz"), "HTTP/1.1 200 OK");
    EXPECT_EQ(HttpGet(engine.metrics_url(), "/healthz"), "HTTP/1.1 200 OK");
    engine.Shutdown(absl::ZeroDuration());
    EXPECT_FALSE(engine.Ready());
  }
  std::fclose(sink);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace alknet
