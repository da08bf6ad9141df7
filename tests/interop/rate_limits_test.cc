// Rate limits (issue 15) against the real agent and stock OpenSSH: connections per source
// refused before the banner, channels per session, sessions and -R listeners per key, and the
// per-key bandwidth cap applied by backpressure (byte-exact, at least the configured time).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
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

// Connects and waits for the SSH banner: the connection was admitted.
int BannerConnection(uint16_t port, const char* source_ip) {
  int fd = ConnectTcp(port, source_ip);
  if (fd < 0) return -1;
  pollfd pfd{fd, POLLIN, 0};
  char buffer[256];
  if (poll(&pfd, 1, 5000) <= 0 || read(fd, buffer, sizeof(buffer)) <= 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// GET http://<address>/metrics: the body, or "" when it cannot be read.
std::string Metrics(const std::string& address) {
  size_t colon = address.rfind(':');
  int fd = ConnectTcp(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (fd < 0) return "";
  std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  auto [response, closed] = ReadUntilClosed(fd, std::chrono::seconds(10));
  close(fd);
  return response;
}

// The value of `alknet_rejections_total{reason="<reason>"}`, or -1 when absent.
double Rejections(const std::string& metrics, const std::string& reason) {
  std::string needle = "alknet_rejections_total{reason=\"" + reason + "\"} ";
  size_t at = metrics.find(needle);
  if (at == std::string::npos) return -1;
  return std::stod(metrics.substr(at + needle.size()));
}

class RateLimitsTest : public ::testing::Test {
 protected:
  void StartAgent(std::vector<std::string> extra, int keys = 1) {
    std::string lines;
    for (int i = 0; i < keys; ++i) {
      keys_.push_back(MakeKey(dir_, "user_key_" + std::to_string(i)));
      lines += keys_.back().public_line + "\n";
    }
    WriteFile(dir_.File("authorized_keys"), lines);
    extra.insert(extra.end(), {"--authorized-keys", dir_.File("authorized_keys"),
                               "--metrics-listen", "127.0.0.1:0"});
    agent_ = std::make_unique<AgentProcess>(dir_, extra);
    ASSERT_NE(agent_->port(), 0);
    const std::string marker = "metrics: listening address=http://";
    ASSERT_TRUE(agent_->WaitForLog(marker));
    std::string log = agent_->Log();
    size_t at = log.find(marker) + marker.size();
    metrics_ = log.substr(at, log.find_first_of(" \n", at) - at);
  }

  // ssh -W to the echo server, from `source` (ssh -b) when given.
  CommandResult Echo(const std::string& payload, const char* source = nullptr, int key = 0) {
    std::vector<std::string> argv = SshArgs(agent_->port(), keys_[key]);
    if (source != nullptr) argv.insert(argv.end(), {"-b", source});
    argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(echo_.port()), "127.0.0.1"});
    return RunCommand(argv, payload);
  }

  bool EchoEventually(const std::string& payload) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (Echo(payload).out == payload) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  TempDir dir_;
  std::vector<TestKey> keys_;
  EchoServer echo_;
  std::unique_ptr<AgentProcess> agent_;
  std::string metrics_;
};

// connections_per_source: the burst is admitted (banner), the next connection from that source
// is closed before any byte, another source (ssh -b 127.0.0.3) still logs in and forwards.
TEST_F(RateLimitsTest, ConnectionRatePerSourceRefusesBeforeTheBanner) {
  StartAgent({"--connections-per-source", "1/m", "--connections-per-source-burst", "3"});
  std::vector<int> admitted;
  for (int i = 0; i < 3; ++i) {
    int fd = BannerConnection(agent_->port(), "127.0.0.2");
    ASSERT_GE(fd, 0) << agent_->Log();
    admitted.push_back(fd);
  }
  int over = ConnectTcp(agent_->port(), "127.0.0.2");
  ASSERT_GE(over, 0);
  auto [received, closed] = ReadUntilClosed(over, std::chrono::seconds(10));
  close(over);
  EXPECT_TRUE(closed);
  EXPECT_EQ(received, "") << "the refused connection saw bytes (a banner?)";
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=conn-rate method=none user=\"\" src=127.0.0.2 port="))
      << agent_->Log();
  CommandResult other = Echo("other source\n", "127.0.0.3");
  EXPECT_EQ(other.exit_code, 0) << other.err << agent_->Log();
  EXPECT_EQ(other.out, "other source\n");
  EXPECT_GE(Rejections(Metrics(metrics_), "conn_rate"), 1);
  for (int fd : admitted) close(fd);
}

// channels_per_session: with a burst of 2, the third channel open of one ssh -L session is
// refused, counted under channel_rate, and the session and its channels keep working.
TEST_F(RateLimitsTest, ChannelRateRefusesTheOpenAndTheSessionSurvives) {
  StartAgent({"--channels-per-session", "1/m", "--channels-per-session-burst", "2"});
  uint16_t local = 0;
  auto ssh = StartLocalForward(agent_->port(), keys_[0], echo_.port(), dir_.path(), "ssh_l", &local);
  ASSERT_NE(ssh, nullptr) << agent_->Log();
  int open[2];
  for (int& fd : open) {
    fd = ConnectTcp(local);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(EchoOnce(fd, "open\n")) << agent_->Log();
  }
  for (int i = 0; i < 3; ++i) {
    int over = ConnectTcp(local);
    ASSERT_GE(over, 0);
    send(over, "over\n", 5, MSG_NOSIGNAL);
    auto [received, closed] = ReadUntilClosed(over, std::chrono::seconds(20));
    close(over);
    EXPECT_TRUE(closed);
    EXPECT_EQ(received, "");
  }
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=channel-rate method=publickey")) << agent_->Log();
  // Logged once per source per interval, counted every time.
  std::string log = agent_->Log();
  size_t first = log.find("reason=channel-rate");
  EXPECT_EQ(log.find("reason=channel-rate", first + 1), std::string::npos) << log;
  EXPECT_GE(Rejections(Metrics(metrics_), "channel_rate"), 3);
  for (int fd : open) EXPECT_TRUE(EchoOnce(fd, "still open\n"));
  EXPECT_TRUE(ssh->running());
  for (int fd : open) close(fd);
}

// max_sessions_per_key: two sessions of the key are in, the third is refused at authentication
// with an auth line naming the rule and the key; another key is not affected; a freed slot
// lets the key in again.
TEST_F(RateLimitsTest, ThirdSessionOfAKeyIsRefusedWithAnAuthLine) {
  StartAgent({"--max-sessions-per-key", "2"}, 2);
  uint16_t local[2] = {0, 0};
  std::unique_ptr<BackgroundProcess> held[2];
  for (int i = 0; i < 2; ++i) {
    held[i] = StartLocalForward(agent_->port(), keys_[0], echo_.port(), dir_.path(),
                                "ssh_held_" + std::to_string(i), &local[i]);
    ASSERT_NE(held[i], nullptr) << agent_->Log();
  }
  CommandResult over = Echo("over the cap\n");
  EXPECT_EQ(over.exit_code, 255) << over.err;
  EXPECT_EQ(over.out, "");
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=sessions-per-key method=publickey"))
      << agent_->Log();
  EXPECT_THAT(agent_->Log(), HasSubstr("key=" + keys_[0].fingerprint));
  EXPECT_GE(Rejections(Metrics(metrics_), "sessions_per_key"), 1);
  CommandResult other = Echo("other key\n", nullptr, 1);
  EXPECT_EQ(other.out, "other key\n") << other.err;
  held[0].reset();
  EXPECT_TRUE(EchoEventually("freed slot\n")) << agent_->Log();
}

// sessions_per_key: with a burst of 1 and 1 per minute, the key's second session is refused at
// authentication (reason=session-rate), while another key still logs in.
TEST_F(RateLimitsTest, SessionRatePerKeyRefusesTheNextLogin) {
  StartAgent({"--sessions-per-key", "1/m", "--sessions-per-key-burst", "1"}, 2);
  CommandResult first = Echo("first\n");
  EXPECT_EQ(first.out, "first\n") << first.err;
  CommandResult second = Echo("second\n");
  EXPECT_EQ(second.exit_code, 255) << second.err;
  EXPECT_EQ(second.out, "");
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=session-rate method=publickey")) << agent_->Log();
  EXPECT_GE(Rejections(Metrics(metrics_), "session_rate"), 1);
  CommandResult other = Echo("other key\n", nullptr, 1);
  EXPECT_EQ(other.out, "other key\n") << other.err;
}

// max_remote_forwards_per_key: one -R listener for the key; a second ssh -R with the same key
// is refused (ssh exits on the forward failure), counted under rforwards_per_key.
TEST_F(RateLimitsTest, RemoteForwardsPerKeyCap) {
  StartAgent({"--max-remote-forwards-per-key", "1"});
  auto ssh_r = [&](uint16_t port, std::string_view name) {
    std::vector<std::string> argv = SshArgs(agent_->port(), keys_[0]);
    argv.insert(argv.end(), {"-N", "-R", std::to_string(port) + ":127.0.0.1:" +
                                             std::to_string(echo_.port()), "127.0.0.1"});
    return std::make_unique<BackgroundProcess>(argv, dir_.path(), name);
  };
  uint16_t first_port = PickFreePort();
  auto first = ssh_r(first_port, "ssh_r1");
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    fd = ConnectTcp(first_port);
    if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(fd, 0) << first->Stderr() << agent_->Log();
  EXPECT_TRUE(EchoOnce(fd, "through -R\n"));
  close(fd);
  auto second = ssh_r(PickFreePort(), "ssh_r2");
  std::optional<int> code = second->Wait(std::chrono::seconds(20));
  ASSERT_TRUE(code.has_value()) << "the second -R was not refused";
  EXPECT_EQ(*code, 255) << second->Stderr();
  EXPECT_THAT(second->Stderr(), HasSubstr("remote port forwarding failed"));
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=rforwards-per-key")) << agent_->Log();
  EXPECT_GE(Rejections(Metrics(metrics_), "rforwards_per_key"), 1);
  EXPECT_TRUE(first->running());
}

// bandwidth_per_key: 10 MB/s (burst 10 MB) on key 0: 100 MB through ssh -L to the echo server
// and back arrives byte-exact and takes at least 8 s (each direction: 90 MB past the burst at
// 10 MB/s). Key 1 (exempt) moves 100 MB at the same time, started later, and finishes first: its
// bytes never wait on key 0's bucket.
TEST_F(RateLimitsTest, BandwidthPerKeyCapsOneKeyByBackpressureOnly) {
  keys_.push_back(MakeKey(dir_, "capped"));
  TestKey exempt = MakeKey(dir_, "exempt");
  WriteFile(dir_.File("authorized_keys"), keys_[0].public_line + "\n" + exempt.public_line + "\n");
  agent_ = std::make_unique<AgentProcess>(
      dir_, std::vector<std::string>{"--authorized-keys", dir_.File("authorized_keys"),
                                     "--bandwidth-per-key", "10MB", "--bandwidth-per-key-burst",
                                     "10MB", "--bandwidth-exempt-keys", exempt.fingerprint,
                                     "--workers", "2", "--metrics-listen", "off"});
  ASSERT_NE(agent_->port(), 0);
  uint16_t capped_port = 0;
  uint16_t free_port = 0;
  auto capped_ssh = StartLocalForward(agent_->port(), keys_[0], echo_.port(), dir_.path(),
                                      "ssh_capped", &capped_port);
  auto free_ssh = StartLocalForward(agent_->port(), exempt, echo_.port(), dir_.path(),
                                    "ssh_free", &free_port);
  ASSERT_NE(capped_ssh, nullptr);
  ASSERT_NE(free_ssh, nullptr);
  const std::string payload = PatternBytes(100 << 20, 15);  // 104,857,600 bytes
  std::atomic<int> order{0};
  int capped_finished = 0;
  int free_finished = 0;
  std::string capped_problem = "not run";
  std::string free_problem = "not run";
  auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration capped_took{};
  std::thread capped([&] {
    int fd = ConnectTcp(capped_port);
    capped_problem = fd < 0 ? "connect failed" : EchoRoundTripProblem(fd, payload);
    if (fd >= 0) close(fd);
    capped_took = std::chrono::steady_clock::now() - start;
    capped_finished = ++order;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::thread exempt_transfer([&] {
    int fd = ConnectTcp(free_port);
    free_problem = fd < 0 ? "connect failed" : EchoRoundTripProblem(fd, payload);
    if (fd >= 0) close(fd);
    free_finished = ++order;
  });
  exempt_transfer.join();
  capped.join();
  EXPECT_EQ(capped_problem, "");
  EXPECT_EQ(free_problem, "");
  EXPECT_GE(capped_took, std::chrono::seconds(8))
      << "100 MB at 10 MB/s (10 MB burst) finished in "
      << std::chrono::duration_cast<std::chrono::milliseconds>(capped_took).count() << " ms";
  EXPECT_EQ(free_finished, 1) << "the exempt key finished after the capped one";
  EXPECT_EQ(capped_finished, 2);
  EXPECT_TRUE(capped_ssh->running());
}

// The admin API: `alknet-admin policy set` takes rate_limits fields; a bad value is refused
// with the field named and nothing applied; a good change reaches an open session's next
// channel and its key's bandwidth bucket (an existing channel is slowed by a cap set after it
// opened: 5 MB through it at 1 MB/s with a 1 MB burst takes at least 3 s).
TEST_F(RateLimitsTest, PolicySetAppliesLiveAndRefusesBadValues) {
  StartAgent({});
  auto admin = [&](std::vector<std::string> words) {
    std::vector<std::string> argv = {ALKNET_ADMIN_BINARY, "--socket", dir_.File("state/admin.sock")};
    argv.insert(argv.end(), words.begin(), words.end());
    return RunCommand(argv);
  };
  uint16_t local = 0;
  auto ssh = StartLocalForward(agent_->port(), keys_[0], echo_.port(), dir_.path(), "ssh_l", &local);
  ASSERT_NE(ssh, nullptr) << agent_->Log();
  int channel = ConnectTcp(local);
  ASSERT_GE(channel, 0);
  ASSERT_TRUE(EchoOnce(channel, "open\n"));

  CommandResult bad = admin({"policy", "set", "bandwidth_per_key=1MB", "rate_limits.channels_per_session=9/d"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("rate_limits.channels_per_session"));
  CommandResult unchanged = admin({"policy", "get"});
  EXPECT_THAT(unchanged.out, HasSubstr("bandwidth_per_key: 0\n")) << unchanged.out;

  CommandResult set = admin({"policy", "set", "rate_limits.bandwidth_per_key=1MB",
                             "bandwidth_per_key_burst=1MB", "channels_per_session=1/h",
                             "channels_per_session_burst=1"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_THAT(set.out, HasSubstr("bandwidth_per_key: 1MB\n"));
  EXPECT_THAT(set.out, HasSubstr("channels_per_session: 1/h\n"));
  // The already-open channel now draws from the key's 1 MB/s bucket.
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(EchoRoundTripProblem(channel, PatternBytes(5'000'000, 3)), "");
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::seconds(3))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  close(channel);
  // The session's next channels: one more from the new burst, then channel-rate.
  int next = ConnectTcp(local);
  ASSERT_GE(next, 0);
  EXPECT_TRUE(EchoOnce(next, "next\n")) << agent_->Log();
  close(next);
  int over = ConnectTcp(local);
  ASSERT_GE(over, 0);
  auto [received, closed] = ReadUntilClosed(over, std::chrono::seconds(20));
  close(over);
  EXPECT_TRUE(closed);
  EXPECT_EQ(received, "");
  EXPECT_TRUE(agent_->WaitForLog("reason=channel-rate")) << agent_->Log();
}

// SIGHUP: a rate limit changed in the config file wins over the stored one and applies to the
// next session (the cap of 1 becomes 2: a second session of the key gets in); one set through
// the API and untouched in the file keeps the API's value; the next start reads the merge.
TEST_F(RateLimitsTest, SighupMergesConfigFileRateLimitsWithApiValues) {
  WriteFile(dir_.File("agent.yaml"), "rate_limits:\n  max_sessions_per_key: 1\n");
  StartAgent({"--config", dir_.File("agent.yaml")});
  auto admin = [&](std::vector<std::string> words) {
    std::vector<std::string> argv = {ALKNET_ADMIN_BINARY, "--socket", dir_.File("state/admin.sock")};
    argv.insert(argv.end(), words.begin(), words.end());
    return RunCommand(argv);
  };
  ASSERT_EQ(admin({"policy", "set", "channels_per_session=100/s"}).exit_code, 0);
  uint16_t local = 0;
  auto held = StartLocalForward(agent_->port(), keys_[0], echo_.port(), dir_.path(), "ssh_held", &local);
  ASSERT_NE(held, nullptr) << agent_->Log();
  EXPECT_EQ(Echo("over\n").exit_code, 255);
  WriteFile(dir_.File("agent.yaml"), "rate_limits:\n  max_sessions_per_key: 2\n");
  agent_->process().Signal(SIGHUP);
  ASSERT_TRUE(agent_->WaitForLog(
      "limit changed in the config file; taking it field=rate_limits.max_sessions_per_key"));
  CommandResult policy = admin({"policy", "get"});
  EXPECT_THAT(policy.out, HasSubstr("max_sessions_per_key: 2\n"));
  EXPECT_THAT(policy.out, HasSubstr("channels_per_session: 100/s\n"));
  CommandResult second = Echo("second\n");
  EXPECT_EQ(second.out, "second\n") << second.err << agent_->Log();
  held.reset();
  agent_->process().Signal(SIGTERM);
  ASSERT_TRUE(agent_->process().Wait(std::chrono::seconds(15)).has_value());
  agent_ = std::make_unique<AgentProcess>(
      dir_, std::vector<std::string>{"--config", dir_.File("agent.yaml"), "--authorized-keys",
                                     dir_.File("authorized_keys"), "--metrics-listen", "off"});
  EXPECT_EQ(admin({"policy", "get"}).out, policy.out);
}

}  // namespace
}  // namespace alknet::testing
