// Issue 16: agent replicas sharing keys and policy through a real three-member etcd cluster
// (Debian's etcd-server), driven with alknet-admin and reached with the stock ssh client.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/support/agent_process.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

// One agent of the fleet: its own state directory, the shared etcd prefix.
struct Replica {
  Replica(const std::string& endpoints, std::string name, std::vector<std::string> extra = {})
      : name(std::move(name)), extra(std::move(extra)) {
    Start(endpoints);
  }
  void Start(const std::string& endpoints) {
    std::vector<std::string> args = {"--state", absl::StrCat("etcd://", endpoints, "/fleet"),
                                     "--state-replica-id", name};
    args.insert(args.end(), extra.begin(), extra.end());
    agent = std::make_unique<AgentProcess>(dir, args);
  }
  CommandResult Admin(std::vector<std::string> args) const {
    std::vector<std::string> argv = {ALKNET_ADMIN_BINARY, "--socket", dir.File("state/admin.sock")};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, "", std::chrono::seconds(30));
  }
  TempDir dir;
  std::string name;
  std::vector<std::string> extra;
  std::unique_ptr<AgentProcess> agent;
};

// `ssh -W` through the agent to the echo server and back: a login and a channel.
bool LogsIn(uint16_t agent_port, const TestKey& key, uint16_t echo_port) {
  std::vector<std::string> argv = SshArgs(agent_port, key);
  argv.insert(argv.end(), {"-W", absl::StrCat("127.0.0.1:", echo_port), "127.0.0.1"});
  CommandResult result = RunCommand(argv, "hello fleet\n", std::chrono::seconds(20));
  return result.exit_code == 0 && result.out == "hello fleet\n";
}

// GET http://<the replica's metrics address><path> with curl: the body, or the status code.
std::string Get(const Replica& replica, const std::string& path, bool body) {
  const std::string marker = "metrics: listening address=http://127.0.0.1:";
  std::string log = replica.agent->Log();
  size_t at = log.find(marker);
  if (at == std::string::npos) return "";
  std::string port = std::to_string(std::atoi(log.c_str() + at + marker.size()));
  std::vector<std::string> argv = {"curl", "-s", "--max-time", "5"};
  if (!body) argv.insert(argv.end(), {"-o", "/dev/null", "-w", "%{http_code}"});
  argv.push_back("http://127.0.0.1:" + port + path);
  return RunCommand(argv).out;
}
std::string Metrics(const Replica& replica) { return Get(replica, "/metrics", true); }

// `keys add` through `replica`, retried for up to 10 s while etcd elects a leader (the agent
// answers UNAVAILABLE until then); the last result.
CommandResult AddKeyOnceEtcdWrites(const Replica& replica, const TestKey& key) {
  CommandResult added;
  for (int attempt = 0; attempt < 50; ++attempt) {
    added = replica.Admin({"keys", "add", key.private_path + ".pub"});
    if (added.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return added;
}

// Polls LogsIn until it succeeds; the time it took, nullopt after `timeout`.
std::optional<double> SecondsUntilLogin(uint16_t agent_port, const TestKey& key, uint16_t echo_port,
                                        std::chrono::seconds timeout) {
  auto start = Clock::now();
  while (Clock::now() - start < timeout) {
    if (LogsIn(agent_port, key, echo_port)) {
      return std::chrono::duration<double>(Clock::now() - start).count();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return std::nullopt;
}

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<EtcdCluster>(etcd_dir_, 3);
    if (!cluster_->available()) GTEST_SKIP() << cluster_->why();
    a_ = std::make_unique<Replica>(cluster_->Endpoints(), "replica-a");
    b_ = std::make_unique<Replica>(cluster_->Endpoints(), "replica-b");
    ASSERT_NE(a_->agent->port(), 0) << a_->agent->Log();
    ASSERT_NE(b_->agent->port(), 0) << b_->agent->Log();
    user_ = MakeKey(etcd_dir_, "user");
  }
  // A long-lived tunnel (ssh -N -L) through `replica` that carries bytes now.
  std::unique_ptr<BackgroundProcess> OpenTunnel(Replica& replica, uint16_t* local) {
    auto ssh = StartLocalForward(replica.agent->port(), user_, echo_.port(), etcd_dir_.path(),
                                 "tunnel-" + replica.name, local);
    return ssh;
  }

  TempDir etcd_dir_;
  EchoServer echo_;
  std::unique_ptr<EtcdCluster> cluster_;
  std::unique_ptr<Replica> a_;
  std::unique_ptr<Replica> b_;
  TestKey user_;
};

// Acceptance 1: keys add through A lets ssh into B within a second; keys rm --kill on B ends the
// session on A.
TEST_F(FleetTest, AKeyAddedOnOneReplicaLogsInOnTheOtherAndKillEndsSessionsEverywhere) {
  EXPECT_FALSE(LogsIn(b_->agent->port(), user_, echo_.port()));
  CommandResult added = a_->Admin({"keys", "add", user_.private_path + ".pub"});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  std::optional<double> seconds =
      SecondsUntilLogin(b_->agent->port(), user_, echo_.port(), std::chrono::seconds(10));
  ASSERT_TRUE(seconds.has_value()) << b_->agent->Log();
  std::printf("key added on A, first login on B after %.3f s\n", *seconds);
  RecordProperty("seconds_to_login_on_b", absl::StrCat(*seconds));

  // Both replicas are listed by either one.
  CommandResult fleet;
  for (int attempt = 0; attempt < 50; ++attempt) {
    fleet = a_->Admin({"status", "--all"});
    if (fleet.out.find("replica-b") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(fleet.exit_code, 0) << fleet.err;
  EXPECT_THAT(fleet.out, HasSubstr("replica-a"));
  EXPECT_THAT(fleet.out, HasSubstr("replica-b"));
  EXPECT_THAT(fleet.out, HasSubstr(absl::StrCat("tcp://127.0.0.1:", b_->agent->port())));

  uint16_t local = 0;
  auto tunnel = OpenTunnel(*a_, &local);
  ASSERT_NE(tunnel, nullptr);
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoOnce(fd, PatternBytes(64 << 10, 16)));
  CommandResult removed = b_->Admin({"keys", "rm", "--kill", user_.fingerprint});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_TRUE(tunnel->Wait(std::chrono::seconds(10)).has_value())
      << "the session on A outlived keys rm --kill on B\n" << a_->agent->Log();
  ::close(fd);
  EXPECT_FALSE(LogsIn(a_->agent->port(), user_, echo_.port()));

  // A replica that stops cleanly leaves the list at once (its lease is revoked).
  b_->agent->process().Signal(SIGTERM);
  EXPECT_TRUE(b_->agent->process().Wait(std::chrono::seconds(20)).has_value());
  EXPECT_THAT(a_->Admin({"status", "--all"}).out, Not(HasSubstr("replica-b")));
}

// The session of `fingerprint` that `lister` lists on `replica` (sessions list --all), polled
// up to `attempts` times 0.1 s apart (replicas publish their sessions every second): its id, 0 if
// none.
uint64_t FleetSessionId(const Replica& lister, const std::string& replica,
                        const std::string& fingerprint, int attempts = 100) {
  for (int attempt = 0; attempt < attempts; ++attempt) {
    CommandResult listed = lister.Admin({"sessions", "list", "--all"});
    std::istringstream rows(listed.out);
    std::string row;
    while (std::getline(rows, row)) {
      std::istringstream words(row);
      std::string on, id;
      words >> on >> id;
      if (on == replica && row.find(fingerprint) != std::string::npos) return std::stoull(id);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return 0;
}

// sessions list --all shows every replica's sessions; sessions kill reaches another replica by id,
// and every replica with --key and --replica '*'.
TEST_F(FleetTest, SessionsAreListedAndKilledAcrossTheFleet) {
  ASSERT_EQ(a_->Admin({"keys", "add", user_.private_path + ".pub"}).exit_code, 0);
  ASSERT_TRUE(SecondsUntilLogin(b_->agent->port(), user_, echo_.port(), std::chrono::seconds(10)));
  uint16_t local = 0;
  auto on_a = OpenTunnel(*a_, &local);
  ASSERT_NE(on_a, nullptr);
  uint64_t id = FleetSessionId(*b_, "replica-a", user_.fingerprint);
  ASSERT_NE(id, 0u) << b_->Admin({"sessions", "list", "--all"}).out;

  CommandResult killed = b_->Admin({"sessions", "kill", absl::StrCat(id), "--replica", "replica-a"});
  EXPECT_EQ(killed.exit_code, 0) << killed.err;
  EXPECT_THAT(killed.out, HasSubstr("disconnected 1 session(s)"));
  EXPECT_TRUE(on_a->Wait(std::chrono::seconds(10)).has_value())
      << "the session on A outlived sessions kill on B\n" << a_->agent->Log();
  CommandResult again = b_->Admin({"sessions", "kill", absl::StrCat(id), "--replica", "replica-a"});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.err, HasSubstr("NOT_FOUND"));

  // --key with --replica '*': one tunnel on each replica, both end.
  on_a = OpenTunnel(*a_, &local);
  auto on_b = OpenTunnel(*b_, &local);
  ASSERT_NE(on_a, nullptr);
  ASSERT_NE(on_b, nullptr);
  killed = a_->Admin({"sessions", "kill", "--key", user_.fingerprint, "--replica", "*"});
  EXPECT_EQ(killed.exit_code, 0) << killed.err;
  EXPECT_THAT(killed.out, HasSubstr("disconnected 2 session(s)"));
  EXPECT_TRUE(on_a->Wait(std::chrono::seconds(10)).has_value());
  EXPECT_TRUE(on_b->Wait(std::chrono::seconds(10)).has_value());
  bool gone = false;
  for (int attempt = 0; attempt < 100 && !gone; ++attempt) {
    gone = FleetSessionId(*a_, "replica-b", user_.fingerprint, 1) == 0;
  }
  EXPECT_TRUE(gone) << "B still publishes the killed session";

  // Bad targets: a replica nobody announced, '*' with an id.
  CommandResult nobody = a_->Admin({"sessions", "kill", "1", "--replica", "replica-z"});
  EXPECT_NE(nobody.exit_code, 0);
  EXPECT_THAT(nobody.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(nobody.err, HasSubstr("no replica 'replica-z'"));
  CommandResult star = a_->Admin({"sessions", "kill", "1", "--replica", "*"});
  EXPECT_NE(star.exit_code, 0);
  EXPECT_THAT(star.err, HasSubstr("INVALID_ARGUMENT"));
}

// Acceptance 2: the leader dies; logins and tunnels go on, and a write after the new leader is
// elected reaches both replicas.
TEST_F(FleetTest, KillingTheEtcdLeaderKeepsServingAndLaterWritesReachBoth) {
  ASSERT_EQ(a_->Admin({"keys", "add", user_.private_path + ".pub"}).exit_code, 0);
  ASSERT_TRUE(SecondsUntilLogin(b_->agent->port(), user_, echo_.port(), std::chrono::seconds(10)));
  uint16_t local = 0;
  auto tunnel = OpenTunnel(*b_, &local);
  ASSERT_NE(tunnel, nullptr);
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);

  std::optional<int> leader = cluster_->Leader();
  ASSERT_TRUE(leader.has_value());
  cluster_->Kill(*leader);
  EXPECT_TRUE(EchoOnce(fd, PatternBytes(256 << 10, 17)));
  EXPECT_TRUE(LogsIn(a_->agent->port(), user_, echo_.port()));
  EXPECT_TRUE(LogsIn(b_->agent->port(), user_, echo_.port()));

  TestKey second = MakeKey(etcd_dir_, "second");
  CommandResult added = AddKeyOnceEtcdWrites(*b_, second);
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_TRUE(SecondsUntilLogin(a_->agent->port(), second, echo_.port(), std::chrono::seconds(10)));
  EXPECT_TRUE(LogsIn(b_->agent->port(), second, echo_.port()));
  EXPECT_TRUE(EchoOnce(fd, PatternBytes(64 << 10, 18)));
  ::close(fd);
}

// Acceptance 3: all of etcd away: tunnels stay, a write is refused with UNAVAILABLE, a restarted
// agent serves from its local copy; etcd back: both resync and are ready.
TEST_F(FleetTest, AnEtcdOutageKeepsTunnelsRefusesWritesAndResyncsAfterwards) {
  ASSERT_EQ(a_->Admin({"keys", "add", user_.private_path + ".pub"}).exit_code, 0);
  ASSERT_TRUE(SecondsUntilLogin(b_->agent->port(), user_, echo_.port(), std::chrono::seconds(10)));
  uint16_t local = 0;
  auto tunnel = OpenTunnel(*a_, &local);
  ASSERT_NE(tunnel, nullptr);
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);

  for (int i = 0; i < cluster_->size(); ++i) cluster_->Kill(i);
  TestKey refused_key = MakeKey(etcd_dir_, "refused");
  CommandResult refused = a_->Admin({"keys", "add", refused_key.private_path + ".pub"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(refused.err, HasSubstr("nothing changed"));
  EXPECT_TRUE(EchoOnce(fd, PatternBytes(256 << 10, 19)));
  EXPECT_TRUE(LogsIn(a_->agent->port(), user_, echo_.port()));
  EXPECT_THAT(Metrics(*a_), HasSubstr("alknet_state_store_up 0"));
  EXPECT_THAT(Metrics(*a_), HasSubstr("alknet_state_store_outages_total 1"));
  EXPECT_EQ(Get(*a_, "/readyz", false), "200") << "a replica that has state stays ready";

  // B restarts during the outage: it serves the keys it had.
  b_->agent.reset();
  b_->Start(cluster_->Endpoints());
  ASSERT_NE(b_->agent->port(), 0) << b_->agent->Log();
  EXPECT_THAT(b_->agent->Log(), HasSubstr("serving the local copy"));
  EXPECT_TRUE(LogsIn(b_->agent->port(), user_, echo_.port()));
  std::this_thread::sleep_for(std::chrono::seconds(2));

  ASSERT_TRUE(cluster_->RestartAll());
  TestKey after = MakeKey(etcd_dir_, "after");
  CommandResult added = AddKeyOnceEtcdWrites(*a_, after);
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_TRUE(SecondsUntilLogin(b_->agent->port(), after, echo_.port(), std::chrono::seconds(10)))
      << b_->agent->Log();
  EXPECT_THAT(a_->agent->Log(), HasSubstr("etcd reachable again"));
  EXPECT_TRUE(b_->agent->WaitForLog("etcd reachable again"));
  EXPECT_THAT(Metrics(*a_), HasSubstr("alknet_state_store_up 1"));
  EXPECT_TRUE(EchoOnce(fd, PatternBytes(64 << 10, 20)));
  ::close(fd);
}

// API forwards in a fleet belong to a replica: added anywhere, they start on theirs at once and
// stop there when removed anywhere; the others list them as running elsewhere.
class FleetForwardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<EtcdCluster>(dir_, 1);
    if (!cluster_->available()) GTEST_SKIP() << cluster_->why();
    key_ = MakeKey(dir_, "upstream_key");
    far_ = StartFarAgent(far_dir_, key_);
    ASSERT_NE(far_.agent, nullptr);
    WriteFile(dir_.File("agent.yaml"), UpstreamYaml("far", far_, key_));
    std::vector<std::string> config = {"--config", dir_.File("agent.yaml")};
    a_ = std::make_unique<Replica>(cluster_->Endpoints(), "replica-a", config);
    b_ = std::make_unique<Replica>(cluster_->Endpoints(), "replica-b", config);
    ASSERT_TRUE(a_->agent->WaitForLog("upstream connected")) << a_->agent->Log();
    ASSERT_TRUE(b_->agent->WaitForLog("upstream connected")) << b_->agent->Log();
  }

  // The `forwards list` row of `id` on `replica`, or "".
  static std::string Row(const Replica& replica, const std::string& id) {
    CommandResult listed = replica.Admin({"forwards", "list"});
    std::istringstream lines(listed.out);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(id + " ", 0) == 0) return line;
    }
    return "";
  }
  // Polls Row until it contains `text` (or, with `absent`, until the row is gone); true if so.
  static bool WaitForRow(const Replica& replica, const std::string& id, const std::string& text,
                         bool absent = false) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::string row = Row(replica, id);
      if (absent ? row.empty() : row.find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  TempDir dir_;
  TempDir far_dir_;
  TestKey key_;
  EchoServer echo_;
  std::unique_ptr<EtcdCluster> cluster_;
  FarAgent far_;
  std::unique_ptr<Replica> a_;
  std::unique_ptr<Replica> b_;
};

TEST_F(FleetForwardsTest, AForwardAddedOnOneReplicaRunsOnItsOwnAndStopsWhenRemovedElsewhere) {
  CommandResult added = b_->Admin({"forwards", "add", "--kind", "local", "--upstream", "far",
                                   "--listen", "127.0.0.1:0", "--target", Loopback(echo_.port()),
                                   "--id", "web", "--replica", "replica-a"});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_THAT(added.out, HasSubstr("on replica replica-a"));
  ASSERT_TRUE(WaitForRow(*a_, "web", " active ")) << Row(*a_, "web") << a_->agent->Log();
  EXPECT_THAT(Row(*a_, "web"), HasSubstr("replica-a"));
  std::string row = Row(*a_, "web");
  size_t at = row.find("127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << row;
  uint16_t port = static_cast<uint16_t>(std::atoi(row.c_str() + at + 10));
  ASSERT_NE(port, 0) << row;
  int fd = ConnectTcp(port);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoOnce(fd, PatternBytes(64 << 10, 3)));
  ::close(fd);

  CommandResult removed = b_->Admin({"forwards", "rm", "web"});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_TRUE(WaitForRow(*a_, "web", "", /*absent=*/true)) << Row(*a_, "web");
  for (int attempt = 0; attempt < 50 && (fd = ConnectTcp(port)) >= 0; ++attempt) {
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_LT(fd, 0) << "the forward's listener outlived forwards rm on another replica";

  // By default a forward belongs to the replica it was added on; '*' runs on every replica.
  ASSERT_EQ(a_->Admin({"forwards", "add", "--kind", "dynamic", "--upstream", "far", "--listen",
                       "127.0.0.1:0", "--id", "socks"})
                .exit_code,
            0);
  EXPECT_TRUE(WaitForRow(*b_, "socks", "on replica replica-a")) << Row(*b_, "socks");
  ASSERT_EQ(a_->Admin({"forwards", "add", "--kind", "dynamic", "--upstream", "far", "--listen",
                       "127.0.0.1:0", "--id", "everywhere", "--replica", "*"})
                .exit_code,
            0);
  EXPECT_TRUE(WaitForRow(*b_, "everywhere", " active ")) << Row(*b_, "everywhere");
  EXPECT_TRUE(WaitForRow(*a_, "everywhere", " active ")) << Row(*a_, "everywhere");
  CommandResult remote_everywhere =
      a_->Admin({"forwards", "add", "--kind", "remote", "--upstream", "far", "--listen",
                 "127.0.0.1:0", "--target", Loopback(echo_.port()), "--replica", "*"});
  EXPECT_NE(remote_everywhere.exit_code, 0);
  EXPECT_THAT(remote_everywhere.err, HasSubstr("INVALID_ARGUMENT"));
}

// Without etcd there is no fleet: status --all says so and fails; plain status still works.
TEST(FleetWithoutEtcdTest, FleetCallsOnAFileBackedAgentSayThereIsNoFleet) {
  TempDir dir;
  AgentProcess agent(dir);
  ASSERT_NE(agent.port(), 0) << agent.Log();
  std::vector<std::string> argv = {ALKNET_ADMIN_BINARY, "--socket", dir.File("state/admin.sock"),
                                   "status", "--all"};
  CommandResult all = RunCommand(argv);
  EXPECT_NE(all.exit_code, 0);
  EXPECT_THAT(all.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(all.err, HasSubstr("state.store is file"));
  argv.pop_back();
  EXPECT_EQ(RunCommand(argv).exit_code, 0);

  // Nor are there other replicas' sessions to list or kill.
  argv.resize(3);
  argv.insert(argv.end(), {"sessions", "list", "--all"});
  CommandResult sessions = RunCommand(argv);
  EXPECT_NE(sessions.exit_code, 0);
  EXPECT_THAT(sessions.err, HasSubstr("FAILED_PRECONDITION"));
  argv.resize(3);
  argv.insert(argv.end(), {"sessions", "kill", "1", "--replica", "replica-b"});
  CommandResult kill = RunCommand(argv);
  EXPECT_NE(kill.exit_code, 0);
  EXPECT_THAT(kill.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(kill.err, HasSubstr("state.store is file"));
}

}  // namespace
}  // namespace alknet::testing
