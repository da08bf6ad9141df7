// The admin API's Forwards service end to end: a "near" agent whose client role connects to a
// "far" agent gets -L, -R and SOCKS5 forwards added and removed through the real alknet-admin
// CLI while running; data flows through them at once, they survive a restart of the near
// agent, and bad requests are refused with the right status and change nothing.
#include <unistd.h>

#include <chrono>
#include <sstream>
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

class AdminForwardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = MakeKey(dir_, "upstream_key");
    far_ = StartFarAgent(far_dir_, key_);
    ASSERT_NE(far_.agent, nullptr);
    // One -L forward comes from the configuration: listed, but not removable through the API.
    WriteFile(near_dir_.File("agent.yaml"),
              UpstreamYaml("far", far_, key_) +
              "    keepalive_interval: 1s\n"  // keepalives and -R requests share one slot
              "    local_forwards: ['127.0.0.1:0:127.0.0.1:" + std::to_string(echo_.port()) + "']\n");
    WriteFile(near_dir_.File("authorized_keys"), "");
    StartNear();
  }

  void StartNear() {
    near_.reset();
    unlink(near_dir_.File("agent.err").c_str());
    near_ = std::make_unique<AgentProcess>(
        near_dir_, std::vector<std::string>{"--config", near_dir_.File("agent.yaml"),
                                            "--authorized-keys", near_dir_.File("authorized_keys")});
    ASSERT_TRUE(near_->WaitForLog("upstream connected")) << near_->Log();
  }

  CommandResult Admin(std::vector<std::string> args) {
    std::vector<std::string> argv = {ALKNET_ADMIN_BINARY, "--socket", near_dir_.File("state/admin.sock")};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, "", std::chrono::seconds(30));
  }

  // The row of `forwards list` for `id`, columns separated by one space, or "".
  std::string Row(const std::string& id) {
    CommandResult listed = Admin({"forwards", "list"});
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    std::istringstream lines(listed.out);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(id + " ", 0) != 0) continue;
      std::string row;  // columns joined by one space
      std::istringstream words(line);
      for (std::string word; words >> word;) row += (row.empty() ? "" : " ") + word;
      return row + " ";
    }
    return "";
  }

  uint16_t BoundPort(const std::string& id) {
    std::string row = Row(id);
    size_t at = row.find("127.0.0.1:");
    if (at == std::string::npos) return 0;
    return static_cast<uint16_t>(std::atoi(row.c_str() + at + 10));
  }

  bool WaitForState(const std::string& id, const std::string& state) {
    for (int i = 0; i < 200; ++i) {
      if (Row(id).find(" " + state + " ") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  TempDir dir_;
  TempDir far_dir_;
  TempDir near_dir_;
  TestKey key_;
  EchoServer echo_;
  FarAgent far_;
  std::unique_ptr<AgentProcess> near_;
};

TEST_F(AdminForwardsTest, AddedForwardsCarryDataAtOnceSurviveRestartAndRemoveCleanly) {
  HttpServer http("through an API forward\n");
  std::string echo = Loopback(echo_.port());
  uint16_t published = PickFreePort();
  // Let a keepalive go out first: the -R request must collect its reply before sending its own.
  ASSERT_TRUE(near_->WaitForLog("upstream connected"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));

  CommandResult local = Admin({"forwards", "add", "--kind", "local", "--upstream", "far", "--listen",
                               "127.0.0.1:0", "--target", echo, "--id", "web"});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  EXPECT_THAT(local.out, HasSubstr("added forward web (active, listening on 127.0.0.1:"));
  ASSERT_EQ(Admin({"forwards", "add", "--kind", "remote", "--upstream", "far", "--listen",
                   Loopback(published), "--target", echo, "--id", "pub"})
                .exit_code,
            0);
  CommandResult socks = Admin({"forwards", "add", "--kind", "dynamic", "--upstream", "far",
                               "--listen", "127.0.0.1:0"});
  ASSERT_EQ(socks.exit_code, 0) << socks.err;
  ASSERT_EQ(socks.out.rfind("added forward fwd-", 0), 0u) << socks.out;
  std::string socks_id = socks.out.substr(14, 12);  // "fwd-" and 8 hex digits

  // -L: 4 MiB round trip; the list counts the connection and its bytes both ways.
  int fd = ConnectTcp(BoundPort("web"));
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(4 << 20, 3)));
  close(fd);
  // -R: the far agent listens on `published` once the request went through.
  ASSERT_TRUE(WaitForState("pub", "active")) << Row("pub") << near_->Log() << far_.agent->Log();
  ASSERT_TRUE(WaitForListener(far_.agent->process(), published)) << far_.agent->Log();
  fd = ConnectTcp(published);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 4)));
  close(fd);
  // -D: curl resolves nothing itself; the far side does.
  CommandResult curl =
      CurlThroughSocks(BoundPort(socks_id), "http://localhost:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.out, "through an API forward\n") << curl.err;

  std::string web = Row("web");
  EXPECT_THAT(web, HasSubstr(" 1 4194304 4194304 api -")) << web;  // connections, in, out
  EXPECT_THAT(Row("far/L0"), HasSubstr(" config ")) << Row("far/L0");
  CommandResult json = Admin({"--json", "forwards", "list"});
  EXPECT_THAT(json.out, HasSubstr("\"bytes_in\": \"4194304\""));
  // Privacy: the near agent's log names no SOCKS destination.
  EXPECT_THAT(near_->Log(), Not(HasSubstr("localhost")));

  // Restart: the API forwards come back from the state file (port 0 binds anew).
  StartNear();
  ASSERT_TRUE(WaitForState("pub", "active")) << Row("pub");
  EXPECT_TRUE(WaitForState("web", "active")) << Row("web");
  EXPECT_TRUE(WaitForState(socks_id, "active")) << Row(socks_id);
  fd = ConnectTcp(published);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 5)));
  close(fd);

  // Removal: the -L port closes at once, the far agent stops listening for -R.
  uint16_t web_port = BoundPort("web");
  ASSERT_EQ(Admin({"forwards", "rm", "web"}).exit_code, 0);
  ASSERT_EQ(Admin({"forwards", "rm", "pub"}).exit_code, 0);
  EXPECT_LT(ConnectTcp(web_port), 0);
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {
    int probe = ConnectTcp(published);
    closed = probe < 0;
    if (probe >= 0) close(probe);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(closed) << far_.agent->Log();
  EXPECT_THAT(far_.agent->Log(), HasSubstr("remote forward cancelled"));
  EXPECT_EQ(Row("web"), "");
  EXPECT_EQ(Row("pub"), "");
  EXPECT_NE(Row(socks_id), "");
}

TEST_F(AdminForwardsTest, BadRequestsAreRefusedAndChangeNothing) {
  ASSERT_EQ(Admin({"forwards", "add", "--kind", "local", "--upstream", "far", "--listen", "127.0.0.1:0",
                   "--target", Loopback(echo_.port()), "--id", "keep"})
                .exit_code,
            0);
  std::string state_before = ReadFile(near_dir_.File("state/state.pb"));
  CommandResult list_before = Admin({"--json", "forwards", "list"});
  std::string echo = Loopback(echo_.port());
  struct Case {
    std::string name;
    std::vector<std::string> args;
    int exit_code;
    std::string message;
  };
  const std::vector<std::string> add = {"forwards", "add", "--upstream", "far"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = add;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  const Case cases[] = {
      {"no target", with({"--kind", "local", "--listen", "127.0.0.1:0"}), 1,
       "INVALID_ARGUMENT: forward.target: is required"},
      {"bad listen", with({"--kind", "local", "--listen", "127.0.0.1:99999", "--target", echo}), 1,
       "INVALID_ARGUMENT: forward.listen: '127.0.0.1:99999'"},
      {"target on dynamic", with({"--kind", "dynamic", "--listen", "127.0.0.1:0", "--target", echo}), 1,
       "INVALID_ARGUMENT: forward.target: must be empty for DYNAMIC"},
      {"bad id", with({"--kind", "local", "--listen", "127.0.0.1:0", "--target", echo, "--id", "a/b"}), 1,
       "INVALID_ARGUMENT: forward.id: 'a/b' is not 1-64 characters"},
      {"unknown upstream",
       {"forwards", "add", "--kind", "local", "--upstream", "nope", "--listen", "127.0.0.1:0", "--target", echo},
       1, "INVALID_ARGUMENT: forward.upstream: no upstream named 'nope' (configured: far)"},
      {"duplicate id", with({"--kind", "local", "--listen", "127.0.0.1:0", "--target", echo, "--id", "keep"}), 1,
       "ALREADY_EXISTS: forward.id: a forward with id 'keep' exists"},
      {"address in use", with({"--kind", "local", "--listen", echo, "--target", echo}), 1,
       "ALREADY_EXISTS: listen " + echo + ": bind: Address already in use"},
      {"remove missing", {"forwards", "rm", "nothing"}, 1, "NOT_FOUND: id: no forward 'nothing'"},
      {"remove config forward", {"forwards", "rm", "far/L0"}, 1,
       "FAILED_PRECONDITION: id: forward 'far/L0' comes from the configuration file"},
      {"usage: bad kind", with({"--kind", "sideways", "--listen", "127.0.0.1:0"}), 2,
       "--kind: 'sideways' is not dynamic, local or remote"},
  };
  for (const Case& c : cases) {
    CommandResult result = Admin(c.args);
    EXPECT_EQ(result.exit_code, c.exit_code) << c.name << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr(c.message)) << c.name;
    EXPECT_EQ(result.out, "") << c.name;
  }
  EXPECT_EQ(ReadFile(near_dir_.File("state/state.pb")), state_before);
  EXPECT_EQ(Admin({"--json", "forwards", "list"}).out, list_before.out);
}

}  // namespace
}  // namespace alknet::testing
