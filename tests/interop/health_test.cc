// The real agent's health signals going red and coming back: a listener out of descriptors
// (RLIMIT_NOFILE lowered on the running agent) turns /readyz, alknet_listener_up and gRPC health
// red until the connections close; SIGTERM's drain answers /readyz 503 and gRPC health
// NOT_SERVING (checked with a grpc.health.v1 client) until the last channel ends.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "health.grpc.pb.h"
#include "tests/support/agent_process.h"
#include "tests/support/sanitizers.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;

uint16_t MetricsPort(const AgentProcess& agent) {
  const std::string marker = "metrics: listening address=http://127.0.0.1:";
  std::string log = agent.Log();
  size_t at = log.find(marker);
  return at == std::string::npos ? 0 : static_cast<uint16_t>(std::atoi(log.c_str() + at + marker.size()));
}

std::string Get(uint16_t port, const std::string& path, bool body = false) {
  std::vector<std::string> argv = {"curl", "-s", "--max-time", "5"};
  if (!body) argv.insert(argv.end(), {"-o", "/dev/null", "-w", "%{http_code}"});
  argv.push_back("http://127.0.0.1:" + std::to_string(port) + path);
  return RunCommand(argv).out;
}

// A grpc.health.v1 client on the agent's admin socket; one channel kept open, so it still
// works while the agent has no descriptor left to accept a new connection.
class HealthClient {
 public:
  explicit HealthClient(const std::string& socket)
      : stub_(grpc::health::v1::Health::NewStub(
            grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()))) {}
  // SERVING / NOT_SERVING, or -1 when the call fails.
  int Check(const std::string& service) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    grpc::Status status = stub_->Check(&context, request, &response);
    return status.ok() ? response.status() : -1;
  }

 private:
  std::unique_ptr<grpc::health::v1::Health::Stub> stub_;
};

// Polls `probe` until it returns `want` (or 30 s pass); returns the last value.
template <typename T>
T WaitFor(const std::function<T()>& probe, const T& want) {
  T got = probe();
  for (int i = 0; i < 300 && got != want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    got = probe();
  }
  return got;
}

constexpr int kServing = HealthCheckResponse::SERVING;
constexpr int kNotServing = HealthCheckResponse::NOT_SERVING;

TEST(HealthTest, SigtermDrainAnswersReadyz503AndGrpcHealthNotServing) {
  TempDir dir;
  TestKey key = MakeKey(dir, "user");
  WriteFile(dir.File("authorized_keys"), key.public_line + "\n");
  AgentProcess agent(dir, {"--authorized-keys", dir.File("authorized_keys"), "--shutdown-grace", "60s"});
  uint16_t metrics = MetricsPort(agent);
  ASSERT_NE(metrics, 0) << agent.Log();
  HealthClient health(dir.File("state/admin.sock"));
  EXPECT_EQ(WaitFor<int>([&] { return health.Check(""); }, kServing), kServing);
  EXPECT_EQ(health.Check("alknet.admin.v1.Keys"), kServing);
  EXPECT_EQ(Get(metrics, "/readyz"), "200");

  // An open channel keeps the drain going (up to the 60 s grace).
  EchoServer echo;
  std::vector<std::string> argv = SshArgs(agent.port(), key);
  argv.insert(argv.end(), {"-W", Loopback(echo.port()), "127.0.0.1"});
  BackgroundProcess ssh(argv, dir.path(), "ssh", /*stdin_pipe=*/true);
  ASSERT_EQ(write(ssh.stdin_fd(), "ping\n", 5), 5);
  for (int i = 0; i < 300 && ssh.Stdout().find("ping") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_THAT(ssh.Stdout(), HasSubstr("ping")) << ssh.Stderr();

  agent.process().Signal(SIGTERM);
  ASSERT_TRUE(agent.WaitForLog("stopped accepting; draining")) << agent.Log();
  EXPECT_EQ(Get(metrics, "/readyz"), "503");
  EXPECT_EQ(health.Check(""), kNotServing);
  EXPECT_EQ(health.Check("alknet.admin.v1.Keys"), kNotServing);
  EXPECT_TRUE(agent.process().running()) << "the drain ended early:\n" << agent.Log();

  // The channel ends: the drain is over and the agent exits cleanly.
  close(ssh.stdin_fd());
  std::optional<int> exit_code = agent.process().Wait(std::chrono::seconds(30));
  ASSERT_TRUE(exit_code.has_value()) << agent.Log();
  EXPECT_EQ(*exit_code, 0);
}

// A real EMFILE needs the agent to run out of descriptors; the sanitizers' runtimes need
// descriptors of their own and fail first (as in accept_loop_test): not built under them.
#if !defined(ALKNET_TEST_SANITIZED)
int OpenDescriptors(pid_t pid) {
  int count = 0;
  DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (dir == nullptr) return -1;
  while (dirent* entry = readdir(dir)) count += entry->d_name[0] != '.';
  closedir(dir);
  return count;
}

TEST(HealthTest, ListenerOutOfDescriptorsIsNotReadyUntilConnectionsClose) {
  TempDir dir;
  // Unauthenticated connections hold their descriptor (no pre-auth cap drops them first).
  AgentProcess agent(dir, {"--max-startups", "1000", "--per-source-max-startups", "1000",
                           "--login-grace-time", "120s"});
  uint16_t metrics = MetricsPort(agent);
  ASSERT_NE(metrics, 0) << agent.Log();
  HealthClient health(dir.File("state/admin.sock"));  // connected before descriptors run out
  EXPECT_EQ(WaitFor<int>([&] { return health.Check(""); }, kServing), kServing);
  const std::string up = "alknet_listener_up{listener=\"tcp://127.0.0.1:0\"} ";
  EXPECT_THAT(Get(metrics, "/metrics", true), HasSubstr(up + "1"));

  // Room for a few more descriptors only, then more connections than that.
  pid_t pid = agent.process().pid();
  int open = OpenDescriptors(pid);
  ASSERT_GT(open, 0);
  CommandResult limited = RunCommand({"prlimit", "--pid", std::to_string(pid),
                                      "--nofile=" + std::to_string(open + 8) + ":"});
  ASSERT_EQ(limited.exit_code, 0) << limited.err;
  std::vector<int> held;
  for (int i = 0; i < 40; ++i) {
    int fd = ConnectTcp(agent.port());
    ASSERT_GE(fd, 0);
    held.push_back(fd);
  }
  ASSERT_TRUE(agent.WaitForLog("listener paused: out of descriptors or memory")) << agent.Log();
  // The metrics port answers from its reserve descriptor: not ready, listener down.
  EXPECT_EQ(Get(metrics, "/readyz"), "503");
  EXPECT_THAT(Get(metrics, "/metrics", true), HasSubstr(up + "0"));
  EXPECT_EQ(Get(metrics, "/healthz"), "200");  // alive, only short of descriptors
  EXPECT_EQ(WaitFor<int>([&] { return health.Check(""); }, kNotServing), kNotServing);

  // The clients go away: their sessions close, the backlog drains, accepting works again.
  for (int fd : held) close(fd);
  EXPECT_TRUE(agent.WaitForLog("listener accepting again", std::chrono::seconds(30))) << agent.Log();
  EXPECT_EQ(WaitFor<std::string>([&] { return Get(metrics, "/readyz"); }, "200"), "200");
  EXPECT_THAT(Get(metrics, "/metrics", true), HasSubstr(up + "1"));
  EXPECT_EQ(WaitFor<int>([&] { return health.Check(""); }, kServing), kServing);
}
#endif

}  // namespace
}  // namespace alknet::testing
