// Security round item 7: SIGHUP with a bad config file keeps the last good config (not the
// startup one), and changed trusted_user_ca_keys paths take effect, against the real agent.
#include <signal.h>

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

class SighupTest : public ::testing::Test {
 protected:
  // ssh -W to the echo server: true when the key (or its certificate) logged in and forwarded.
  bool LogsIn(const TestKey& key) {
    std::vector<std::string> argv = SshArgs(agent_->port(), key);
    argv.insert(argv.end(), {"-W", Loopback(echo_.port()), "127.0.0.1"});
    CommandResult result = RunCommand(argv, "ping\n");
    return result.exit_code == 0 && result.out == "ping\n";
  }

  size_t Count(std::string_view needle) const {
    return static_cast<size_t>(CountOccurrences(agent_->Log(), needle));
  }

  // Sends SIGHUP and waits until the reload's last step (the trusted CA files) has logged.
  void Hup() {
    size_t before = Count("loaded trusted CA keys");
    agent_->process().Signal(SIGHUP);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (Count("loaded trusted CA keys") == before &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GT(Count("loaded trusted CA keys"), before) << agent_->Log();
  }

  TempDir dir_;
  EchoServer echo_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(SighupTest, Item7BadConfigOnSighupKeepsTheLastReloadAndNewCaPathApplies) {
  TestKey first = MakeKey(dir_, "first");
  TestKey second = MakeKey(dir_, "second");
  TestKey old_ca = MakeKey(dir_, "old_ca");
  TestKey new_ca = MakeKey(dir_, "new_ca");
  TestKey cert_user = MakeKey(dir_, "cert_user");  // never authorized: only its certificate
  CommandResult signed_cert =
      RunCommand({"ssh-keygen", "-q", "-s", new_ca.private_path, "-I", "alice", "-n", "tester",
                  "-V", "-5m:+1h", cert_user.private_path + ".pub"});
  ASSERT_EQ(signed_cert.exit_code, 0) << signed_cert.err;
  WriteFile(dir_.File("first_keys"), first.public_line + "\n");
  WriteFile(dir_.File("second_keys"), second.public_line + "\n");
  WriteFile(dir_.File("old_ca"), old_ca.public_line + "\n");
  WriteFile(dir_.File("new_ca"), new_ca.public_line + "\n");

  WriteFile(dir_.File("agent.yaml"), "authorized_keys: " + dir_.File("first_keys") +
                                         "\ntrusted_user_ca_keys: " + dir_.File("old_ca") + "\n");
  agent_ = std::make_unique<AgentProcess>(dir_, std::vector<std::string>{"--config", dir_.File("agent.yaml")});
  ASSERT_NE(agent_->port(), 0);
  EXPECT_TRUE(LogsIn(first));
  EXPECT_FALSE(LogsIn(second));
  EXPECT_FALSE(LogsIn(cert_user));

  // Reload 1: other authorized_keys file, other CA file.
  WriteFile(dir_.File("agent.yaml"), "authorized_keys: " + dir_.File("second_keys") +
                                         "\ntrusted_user_ca_keys: " + dir_.File("new_ca") + "\n");
  Hup();
  EXPECT_FALSE(LogsIn(first));
  EXPECT_TRUE(LogsIn(second));
  EXPECT_TRUE(LogsIn(cert_user)) << "a changed trusted_user_ca_keys path must take effect\n"
                                 << agent_->Log();

  // Reload 2: a broken file keeps reload 1's values, not the startup ones.
  WriteFile(dir_.File("agent.yaml"), "authorized_keys: [unclosed\n");
  Hup();
  EXPECT_THAT(agent_->Log(), HasSubstr("SIGHUP: config file not reloaded; keeping the running one"));
  EXPECT_FALSE(LogsIn(first)) << agent_->Log();
  EXPECT_TRUE(LogsIn(second)) << agent_->Log();
  EXPECT_TRUE(LogsIn(cert_user)) << agent_->Log();

  // Reload 3: dropping trusted_user_ca_keys stops trusting the CA.
  WriteFile(dir_.File("agent.yaml"), "authorized_keys: " + dir_.File("second_keys") + "\n");
  agent_->process().Signal(SIGHUP);
  ASSERT_TRUE(agent_->WaitForLog("trusted_user_ca_keys changed; applied files=0"));
  EXPECT_FALSE(LogsIn(cert_user));
  EXPECT_TRUE(LogsIn(second));
}

}  // namespace
}  // namespace alknet::testing
