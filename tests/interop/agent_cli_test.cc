// The agent binary's start-up contract: config errors with file:line and exit code 2, host keys
// (generated 0600, RSA/ECDSA given, unsafe modes refused) checked by the stock ssh client.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;

CommandResult RunAgent(std::vector<std::string> args) {
  args.insert(args.begin(), ALKNET_AGENT_BINARY);
  return RunCommand(args, "", std::chrono::seconds(20));
}

TEST(AgentCliTest, UnknownConfigKeyIsAnErrorWithFileAndLine) {
  TempDir dir;
  WriteFile(dir.File("agent.yaml"), "state_dir: /tmp/x\nlimits:\n  login_grace: 5s\n");
  CommandResult result = RunAgent({"--config", dir.File("agent.yaml")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr(dir.File("agent.yaml") + ":3:"));
  EXPECT_THAT(result.err, HasSubstr("login_grace"));
}

TEST(AgentCliTest, BadValueIsAnErrorWithFileAndLine) {
  TempDir dir;
  WriteFile(dir.File("agent.yaml"), "listen:\n  - tcp://127.0.0.1:2222\n  - tcp://127.0.0.1:99999\n");
  CommandResult result = RunAgent({"--config", dir.File("agent.yaml")});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr(dir.File("agent.yaml") + ":3:"));
  EXPECT_THAT(result.err, HasSubstr("99999"));
}

// `alknet-agent health` is the container's HEALTHCHECK: it must say no when the agent cannot
// answer (stopped, frozen, gone), not only yes.
TEST(AgentCliTest, HealthCommandFollowsTheAgent) {
  TempDir dir;
  AgentProcess agent(dir);
  const std::string marker = "metrics: listening address=http://";
  std::string log = agent.Log();
  size_t at = log.find(marker);
  ASSERT_NE(at, std::string::npos) << log;
  std::string metrics = log.substr(at + marker.size(), log.find_first_of(" \n", at + marker.size()) -
                                                           at - marker.size());
  CommandResult healthy = RunAgent({"health", "--metrics-listen", metrics});
  EXPECT_EQ(healthy.exit_code, 0) << healthy.err;
  EXPECT_EQ(healthy.out, "healthy\n");
  agent.process().Signal(SIGSTOP);  // a frozen agent: connects (backlog), never answers
  CommandResult frozen = RunAgent({"health", "--metrics-listen", metrics});
  agent.process().Signal(SIGCONT);
  EXPECT_EQ(frozen.exit_code, 1);
  EXPECT_THAT(frozen.err, HasSubstr("unhealthy: GET /healthz on " + metrics + ": timed out"));
  EXPECT_EQ(RunAgent({"health", "--metrics-listen", metrics}).exit_code, 0);
  agent.process().Signal(SIGTERM);
  ASSERT_TRUE(agent.process().Wait(std::chrono::seconds(20)).has_value());
  CommandResult gone = RunAgent({"health", "--metrics-listen", metrics});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("Connection refused"));
  EXPECT_EQ(RunAgent({"health", "--metrics-listen", "off"}).exit_code, 2);
}

// Security round item 6: connections that never finish a request (idle ones, slowloris halves)
// must not keep /healthz and /readyz from answering, or a liveness probe restarts the agent.
TEST(SecurityRound, Item6MetricsPortHealthAnswersUnderIdleAndSlowlorisConnections) {
  TempDir dir;
  AgentProcess agent(dir);
  const std::string marker = "metrics: listening address=http://127.0.0.1:";
  std::string log = agent.Log();
  ASSERT_NE(log.find(marker), std::string::npos) << log;
  uint16_t port = static_cast<uint16_t>(std::atoi(log.c_str() + log.find(marker) + marker.size()));
  std::vector<int> held;
  for (int i = 0; i < 200; ++i) {
    int fd = ConnectTcp(port);
    ASSERT_GE(fd, 0);
    if (i % 2 == 1) {
      const std::string half = "GET /healthz HTTP/1.1\r\nHost: x\r\n";  // never finished
      send(fd, half.data(), half.size(), MSG_NOSIGNAL);
    }
    held.push_back(fd);
  }
  for (const char* path : {"/healthz", "/readyz", "/healthz"}) {
    CommandResult curl = RunCommand({"curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w",
                                     "%{http_code}", "http://127.0.0.1:" + std::to_string(port) + path});
    EXPECT_EQ(curl.out, "200") << path << ": " << curl.err;
  }
  CommandResult health = RunAgent({"health", "--metrics-listen", Loopback(port)});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  for (int fd : held) close(fd);
}

TEST(AgentCliTest, UnknownFlagIsAnError) {
  CommandResult result = RunAgent({"--listn", "tcp://127.0.0.1:1"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--listn"));
}

TEST(AgentCliTest, PrintConfigShowsTheEffectiveSchema) {
  TempDir dir;
  WriteFile(dir.File("agent.yaml"), "limits:\n  max_startups: 42\n");
  CommandResult result = RunAgent({"--config", dir.File("agent.yaml"), "--login-grace-time", "5s",
                                   "--print-config"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("max_startups: 42"));
  EXPECT_THAT(result.out, HasSubstr("login_grace_time: 5s"));
  EXPECT_THAT(result.out, HasSubstr("tcp://127.0.0.1:2222"));
}

TEST(AgentCliTest, GeneratedHostKeyIsPrivateAndMatchesWhatSshSees) {
  TempDir dir;
  TestKey user = MakeKey(dir, "user");
  WriteFile(dir.File("authorized_keys"), user.public_line + "\n");
  AgentProcess agent(dir, {"--authorized-keys", dir.File("authorized_keys")});
  struct stat st {};
  ASSERT_EQ(stat(dir.File("state/ssh_host_ed25519_key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  // ssh-keyscan (a stock OpenSSH tool) sees the key whose fingerprint the agent logged.
  CommandResult scan = RunCommand({"ssh-keyscan", "-t", "ed25519", "-p", std::to_string(agent.port()),
                                   "127.0.0.1"});
  ASSERT_EQ(scan.exit_code, 0) << scan.err;
  WriteFile(dir.File("scanned"), scan.out);
  CommandResult fingerprint = RunCommand({"ssh-keygen", "-l", "-f", dir.File("scanned")});
  size_t at = fingerprint.out.find("SHA256:");
  ASSERT_NE(at, std::string::npos) << fingerprint.out;
  std::string fp = fingerprint.out.substr(at, fingerprint.out.find(' ', at) - at);
  EXPECT_THAT(agent.Log(), HasSubstr("fingerprint=" + fp));
}

TEST(AgentCliTest, RsaAndEcdsaHostKeysAreServedWhenGiven) {
  TempDir dir;
  TestKey user = MakeKey(dir, "user");
  TestKey rsa_host = MakeKey(dir, "host_rsa", "rsa");
  TestKey ecdsa_host = MakeKey(dir, "host_ecdsa", "ecdsa");
  WriteFile(dir.File("authorized_keys"), user.public_line + "\n");
  WriteFile(dir.File("known_hosts"), "");
  AgentProcess agent(dir, {"--authorized-keys", dir.File("authorized_keys"), "--host-key",
                           rsa_host.private_path, "--host-key", ecdsa_host.private_path});
  EchoServer echo;
  for (const auto& [algorithm, host_key] :
       {std::pair{"rsa-sha2-512", rsa_host}, std::pair{"ecdsa-sha2-nistp256", ecdsa_host}}) {
    // Strict checking against a known_hosts holding exactly the given host key.
    WriteFile(dir.File("known_hosts"), "[127.0.0.1]:" + std::to_string(agent.port()) + " " +
                                           host_key.public_line + "\n");
    std::vector<std::string> argv = SshArgs(agent.port(), user);
    for (std::string& arg : argv) {
      if (arg == "StrictHostKeyChecking=no") arg = "StrictHostKeyChecking=yes";
      if (arg == "UserKnownHostsFile=/dev/null") arg = "UserKnownHostsFile=" + dir.File("known_hosts");
    }
    argv.insert(argv.end(), {"-o", std::string("HostKeyAlgorithms=") + algorithm, "-W",
                             "127.0.0.1:" + std::to_string(echo.port()), "127.0.0.1"});
    CommandResult result = RunCommand(argv, "hi\n");
    EXPECT_EQ(result.exit_code, 0) << algorithm << ": " << result.err;
    EXPECT_EQ(result.out, "hi\n") << algorithm;
  }
}

TEST(AgentCliTest, HostKeyReadableByOthersIsRefused) {
  TempDir dir;
  TestKey host = MakeKey(dir, "host_key");
  chmod(host.private_path.c_str(), 0644);
  CommandResult result = RunAgent({"--state-dir", dir.File("state"), "--listen", "tcp://127.0.0.1:0",
                                   "--host-key", host.private_path});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("chmod 600"));
}

// Group access is refused on a key the agent owns; a key of another owner readable through the
// group (a Kubernetes Secret under fsGroup: root:<fsGroup> 0440) is checked by tests/deploy.
TEST(AgentCliTest, OwnHostKeyReadableByGroupIsRefused) {
  TempDir dir;
  TestKey host = MakeKey(dir, "host_key");
  chmod(host.private_path.c_str(), 0640);
  CommandResult result = RunAgent({"--state-dir", dir.File("state"), "--listen", "tcp://127.0.0.1:0",
                                   "--host-key", host.private_path});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("chmod 600"));
}

TEST(AgentCliTest, ListenFailureIsReported) {
  TempDir dir;
  EchoServer busy;  // holds a port
  CommandResult result = RunAgent({"--state-dir", dir.File("state"), "--listen",
                                   "tcp://127.0.0.1:" + std::to_string(busy.port())});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("Address already in use"));
}

}  // namespace
}  // namespace alknet::testing
