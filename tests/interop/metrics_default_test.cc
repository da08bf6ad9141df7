// The default metrics address (127.0.0.1:9464) that is taken moves to another port with a
// warning, so `serve` and `connect` run side by side; an address the user set stays an error.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint16_t kDefaultMetricsPort = 9464;

// A listening socket on 127.0.0.1:port (0: any); -1 with errno set if the bind fails.
int HoldPort(uint16_t port, uint16_t* bound = nullptr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 || listen(fd, 4) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  socklen_t size = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  if (bound != nullptr) *bound = ntohs(address.sin_port);
  return fd;
}

// The value of `key=` on the first log line containing `needle` ("" if none).
std::string LogValue(const std::string& log, std::string_view needle, std::string_view key) {
  size_t line = log.find(needle);
  if (line == std::string::npos) return "";
  size_t end_of_line = log.find('\n', line);
  std::string text = log.substr(line, end_of_line == std::string::npos ? std::string::npos : end_of_line - line);
  size_t at = text.find(std::string(key) + "=");
  if (at == std::string::npos) return "";
  at += key.size() + 1;
  return text.substr(at, text.find(' ', at) == std::string::npos ? std::string::npos : text.find(' ', at) - at);
}

bool WaitForLog(BackgroundProcess& process, std::string_view needle) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    if (process.Stderr().find(needle) != std::string::npos) return true;
    if (!process.running()) return process.Stderr().find(needle) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Acceptance 4 of issue 18: `serve` and `connect` with default metrics settings both run while
// 127.0.0.1:9464 is taken (by this test, or by anything else on the machine); each logs where
// its metrics went and answers /healthz there.
TEST(MetricsDefaultTest, ServeAndConnectSideBySideWithTheDefaultAddressTaken) {
  TempDir dir;
  int held = HoldPort(kDefaultMetricsPort);
  ASSERT_TRUE(held >= 0 || errno == EADDRINUSE) << "cannot bind 127.0.0.1:9464: " << strerror(errno);

  BackgroundProcess serve({ALKNET_AGENT_BINARY, "serve", "--state-dir", dir.File("serve-state"), "--listen",
                           "tcp://127.0.0.1:0"},
                          dir.path(), "serve");
  ASSERT_TRUE(WaitForLog(serve, "engine: started")) << serve.Stderr();
  std::string serve_log = serve.Stderr();
  const std::string warning = "default metrics address taken; using another port";
  EXPECT_EQ(LogValue(serve_log, warning, "address"), "127.0.0.1:9464") << serve_log;
  std::string serve_metrics = LogValue(serve_log, warning, "using");
  ASSERT_THAT(serve_metrics, HasSubstr("http://127.0.0.1:")) << serve_log;
  EXPECT_EQ(LogValue(serve_log, "metrics: listening", "address"), serve_metrics) << serve_log;
  std::string ssh_port = LogValue(serve_log, "engine: listening", "address");
  ASSERT_THAT(ssh_port, HasSubstr("127.0.0.1:")) << serve_log;

  TestKey key = MakeKey(dir, "client");
  BackgroundProcess connect({ALKNET_AGENT_BINARY, "connect", "--state-dir", dir.File("connect-state"),
                             "--server", ssh_port, "--identity", key.private_path, "--insecure-accept-any-host-key", "--socks5",
                             "127.0.0.1:0"},
                            dir.path(), "connect");
  ASSERT_TRUE(WaitForLog(connect, "metrics: listening")) << connect.Stderr();
  std::string connect_log = connect.Stderr();
  EXPECT_EQ(LogValue(connect_log, warning, "address"), "127.0.0.1:9464") << connect_log;
  std::string connect_metrics = LogValue(connect_log, warning, "using");
  ASSERT_THAT(connect_metrics, HasSubstr("http://127.0.0.1:")) << connect_log;
  EXPECT_NE(connect_metrics, serve_metrics);
  EXPECT_TRUE(serve.running()) << serve.Stderr();
  EXPECT_TRUE(connect.running()) << connect.Stderr();

  // Both answer /healthz where they said their metrics went.
  for (const std::string& url : {serve_metrics, connect_metrics}) {
    CommandResult health = RunCommand({ALKNET_AGENT_BINARY, "health", "--metrics-listen",
                                       url.substr(std::string("http://").size())},
                                      "", std::chrono::seconds(20));
    EXPECT_EQ(health.exit_code, 0) << url << ": " << health.err;
  }
  if (held >= 0) close(held);
}

// An address the user set (flag, ALKNET_METRICS_LISTEN, config file), even the default value
// itself, is used as given: taken means the start fails with one error line.
TEST(MetricsDefaultTest, ExplicitTakenAddressIsAStartupError) {
  TempDir dir;
  uint16_t port = 0;
  int held = HoldPort(0, &port);
  ASSERT_GE(held, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  TestKey key = MakeKey(dir, "client");
  WriteFile(dir.File("agent.yaml"), "metrics:\n  listen: " + address + "\n");
  const std::vector<std::string> base = {ALKNET_AGENT_BINARY, "--state-dir", dir.File("state"), "--listen",
                                         "tcp://127.0.0.1:0"};
  struct Case {
    std::string name;
    std::vector<std::string> argv;
  };
  std::vector<Case> cases = {
      {"flag", base},
      {"environment", {"env", "ALKNET_METRICS_LISTEN=" + address}},
      {"config file", base},
      {"connect flag", {ALKNET_AGENT_BINARY, "connect", "--state-dir", dir.File("state"), "--server",
                        "tcp://127.0.0.1:1", "--identity", key.private_path, "--insecure-accept-any-host-key", "--socks5", "127.0.0.1:0",
                        "--metrics-listen", address}},
  };
  cases[0].argv.insert(cases[0].argv.end(), {"--metrics-listen", address});
  cases[1].argv.insert(cases[1].argv.end(), base.begin(), base.end());
  cases[2].argv.insert(cases[2].argv.end(), {"--config", dir.File("agent.yaml")});
  for (const Case& c : cases) {
    CommandResult result = RunCommand(c.argv, "", std::chrono::seconds(20));
    EXPECT_EQ(result.exit_code, 1) << c.name << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr("startup failed error=\"metrics listen " + address +
                                      ": bind: Address already in use\""))
        << c.name << ": " << result.err;
    EXPECT_THAT(result.err, Not(HasSubstr("default metrics address taken"))) << c.name;
  }
  close(held);

  // The default value set explicitly is explicit too (only checked when this test can hold 9464
  // itself: another test's agent holding it may let go before the agent below binds).
  int default_held = HoldPort(kDefaultMetricsPort);
  if (default_held < 0) return;
  CommandResult result = RunCommand(
      {ALKNET_AGENT_BINARY, "--state-dir", dir.File("state"), "--listen", "tcp://127.0.0.1:0",
       "--metrics-listen", "127.0.0.1:9464"},
      "", std::chrono::seconds(20));
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.err, HasSubstr("metrics listen 127.0.0.1:9464: bind: Address already in use"));
  close(default_held);
}

}  // namespace
}  // namespace alknet::testing
