// Security round, items 3 and 6 (docs/security.md): pre-authentication budgets against the
// real agent. Web-looking TLS connections must not hold SSH startup slots, must end at their
// lifetime however busy, the stealth-backend relay must end when idle, and the metrics port's
// health endpoints must answer under a flood of idle and slowloris connections.
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

uint16_t LoggedPort(const std::string& log, const std::string& marker) {
  size_t at = log.find(marker);
  if (at == std::string::npos) return 0;
  return static_cast<uint16_t>(std::atoi(log.c_str() + at + marker.size()));
}

// A keep-alive HTTPS client on one TLS connection (blocking socket, 5 s receive timeout).
class WebClient {
 public:
  explicit WebClient(uint16_t port) {
    fd_ = ConnectTcp(port);
    if (fd_ < 0) return;
    timeval timeout{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, "example.com");
    connected_ = SSL_connect(ssl_) == 1;
  }
  ~WebClient() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
  }
  WebClient(const WebClient&) = delete;
  WebClient& operator=(const WebClient&) = delete;

  bool connected() const { return connected_; }

  bool Send(const std::string& data) {
    ERR_clear_error();
    return connected_ && SSL_write(ssl_, data.data(), static_cast<int>(data.size())) > 0;
  }

  // One keep-alive GET and its whole answer (nginx's 404 page ends with "</html>\r\n").
  bool Get() {
    if (!Send("GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n")) return false;
    std::string answer;
    char buffer[4096];
    while (answer.find("</html>\r\n") == std::string::npos) {
      ERR_clear_error();
      int n = SSL_read(ssl_, buffer, sizeof(buffer));
      if (n <= 0) return false;
      answer.append(buffer, static_cast<size_t>(n));
    }
    return answer.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0;
  }

  // True once the server ends the connection (close_notify, FIN or reset) within `timeout`.
  bool WaitClosed(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    char buffer[4096];
    while (Clock::now() < deadline) {
      if (SSL_pending(ssl_) == 0) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 200) == 0) continue;
      }
      ERR_clear_error();
      int n = SSL_read(ssl_, buffer, sizeof(buffer));
      if (n > 0) continue;
      int error = SSL_get_error(ssl_, n);
      if (error == SSL_ERROR_WANT_READ) continue;
      if (error == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool connected_ = false;
};

// A web server that reads requests and never answers (the relay in front of it goes idle).
class SilentServer final : public LoopbackServer {
 public:
  SilentServer() { StartAccepting(); }
  ~SilentServer() override { StopAccepting(); }
  int ended() const { return ended_.load(); }

 protected:
  void Serve(int fd) override {
    char buffer[4096];
    while (read(fd, buffer, sizeof(buffer)) > 0) {
    }
    ended_.fetch_add(1);
  }

 private:
  std::atomic<int> ended_{0};
};

class PreauthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A refused ssh closes its stdin pipe, a closed TLS socket its write side: report, not die.
    signal(SIGPIPE, SIG_IGN);
    key_ = MakeKey(dir_, "user_key");
    WriteFile(dir_.File("authorized_keys"), key_.public_line + "\n");
  }

  void StartAgent(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--authorized-keys", dir_.File("authorized_keys"), "--listen",
                                     "tls://127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    agent_ = std::make_unique<AgentProcess>(dir_, args);
    ASSERT_TRUE(agent_->WaitForLog("listening address=tls://127.0.0.1:")) << agent_->Log();
    tls_port_ = LoggedPort(agent_->Log(), "listening address=tls://127.0.0.1:");
    ASSERT_NE(tls_port_, 0) << agent_->Log();
    ASSERT_TRUE(agent_->WaitForLog("metrics: listening address=")) << agent_->Log();
    metrics_port_ = LoggedPort(agent_->Log(), "metrics: listening address=http://127.0.0.1:");
    ASSERT_NE(metrics_port_, 0) << agent_->Log();
  }

  std::vector<std::string> SshOverTls() {
    std::vector<std::string> argv = SshArgs(tls_port_, key_);
    argv.insert(argv.end(), {"-o", "ProxyCommand=openssl s_client -quiet -connect 127.0.0.1:%p "
                                   "-servername example.com"});
    return argv;
  }

  TempDir dir_;
  TestKey key_;
  std::unique_ptr<AgentProcess> agent_;
  uint16_t tls_port_ = 0;
  uint16_t metrics_port_ = 0;
};

// Item 3: more keep-alive web connections than max_startups, all busy with GETs, and a stock
// ssh still logs in over the same tls:// listener (and the plain tcp:// one).
TEST_F(PreauthTest, Item3WebConnectionsDoNotHoldSshStartupSlots) {
  StartAgent({"--max-startups", "4", "--per-source-max-startups", "4"});
  constexpr int kWeb = 8;
  std::vector<std::unique_ptr<WebClient>> web;
  for (int i = 0; i < kWeb; ++i) {
    auto client = std::make_unique<WebClient>(tls_port_);
    // Before the fix the fifth is dropped at accept; the four others hold every slot.
    EXPECT_TRUE(client->connected()) << "web connection " << i;
    if (client->connected() && client->Get()) web.push_back(std::move(client));
  }
  EXPECT_EQ(web.size(), static_cast<size_t>(kWeb)) << agent_->Log();
  // They keep asking while ssh logs in.
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  std::thread keep_busy([&] {
    while (!stop.load()) {
      for (auto& client : web) {
        if (!client->Get()) failed.fetch_add(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  EchoServer echo;
  for (bool over_tls : {true, false}) {
    std::vector<std::string> argv = over_tls ? SshOverTls() : SshArgs(agent_->port(), key_);
    argv.insert(argv.end(), {"-W", Loopback(echo.port()), "127.0.0.1"});
    CommandResult result = RunCommand(argv, "login despite web traffic\n");
    EXPECT_EQ(result.exit_code, 0) << (over_tls ? "tls: " : "tcp: ") << result.err << agent_->Log();
    EXPECT_EQ(result.out, "login despite web traffic\n");
  }
  stop = true;
  keep_busy.join();
  EXPECT_EQ(failed.load(), 0) << agent_->Log();
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("reason=max-startups")));
}

// Item 3: an SSH client over TLS takes its max_startups slot at its banner: a full pool refuses
// it there (the TLS handshake itself was not counted), and it gets in once a slot frees up.
TEST_F(PreauthTest, Item3TlsSshClientTakesItsStartupSlotAtTheBanner) {
  StartAgent({"--max-startups", "1", "--per-source-max-startups", "1"});
  int silent = ConnectTcp(agent_->port());  // a plain SSH client that never authenticates
  ASSERT_GE(silent, 0);
  EchoServer echo;
  std::vector<std::string> argv = SshOverTls();
  argv.insert(argv.end(), {"-W", Loopback(echo.port()), "127.0.0.1"});
  CommandResult refused = RunCommand(argv, "refused\n");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_TRUE(agent_->WaitForLog("transport=tls reason=max-startups")) << agent_->Log();
  close(silent);
  CommandResult admitted;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  do {
    admitted = RunCommand(argv, "admitted\n");
  } while (admitted.exit_code != 0 && Clock::now() < deadline);
  EXPECT_EQ(admitted.exit_code, 0) << admitted.err << agent_->Log();
  EXPECT_EQ(admitted.out, "admitted\n");
}

// Item 3: the nginx imitation cannot keep a connection forever by asking again and again.
TEST_F(PreauthTest, Item3WebConnectionClosedAtLifetimeWhileBusy) {
  StartAgent({"--stealth-timeout", "5s", "--web-lifetime", "2s"});
  WebClient client(tls_port_);
  ASSERT_TRUE(client.connected()) << agent_->Log();
  int answered = 0;
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline && client.Get()) {
    ++answered;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_LT(Clock::now(), deadline) << "still served after 30 s: " << answered << " answers";
  EXPECT_GE(answered, 2) << agent_->Log();  // it was a keep-alive connection until then
}

// Item 3: a relay to a stealth backend that never answers ends at the idle timeout.
TEST_F(PreauthTest, Item3StealthBackendRelayClosedWhenIdle) {
  SilentServer backend;
  StartAgent({"--stealth-backend", "http://" + Loopback(backend.port()), "--web-idle-timeout",
              "1s", "--web-lifetime", "1h"});
  WebClient client(tls_port_);
  ASSERT_TRUE(client.connected()) << agent_->Log();
  ASSERT_TRUE(client.Send("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"));
  EXPECT_TRUE(client.WaitClosed(std::chrono::seconds(30))) << agent_->Log();
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (backend.ended() == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(backend.ended(), 1) << "the backend side was not closed";
}

// Keeps `idle` silent connections and `slow` slowloris requests open to a port from sources
// 127.0.0.2.., reopening (at most 10 per 100 ms) whatever the server closes.
class Flood {
 public:
  Flood(uint16_t port, int idle, int slow) : port_(port) {
    for (int i = 0; i < idle + slow; ++i) conns_.push_back({-1, i >= idle, Source(i)});
    thread_ = std::thread([this] { Run(); });
  }
  ~Flood() {
    stop_ = true;
    thread_.join();
    for (Conn& c : conns_) {
      if (c.fd >= 0) close(c.fd);
    }
  }
  int reopened() const { return reopened_.load(); }

 private:
  struct Conn {
    int fd;
    bool slow;
    std::string source;
  };
  static std::string Source(int i) { return "127.0.0." + std::to_string(2 + i % 20); }

  static bool Closed(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    char byte;
    return recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
  }

  void Run() {
    while (!stop_) {
      int opened = 0;
      for (Conn& c : conns_) {
        if (c.fd >= 0 && Closed(c.fd)) {
          close(c.fd);
          c.fd = -1;
        }
        if (c.fd >= 0 && c.slow) {
          const char pad[] = "X-Pad: a\r\n";
          if (send(c.fd, pad, sizeof(pad) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) <= 0) {
            close(c.fd);
            c.fd = -1;
          }
        }
        if (c.fd < 0 && opened < 10) {
          c.fd = ConnectTcp(port_, c.source.c_str());
          if (c.fd < 0) continue;
          ++opened;
          reopened_.fetch_add(1);
          if (c.slow) {
            const char start[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
            send(c.fd, start, sizeof(start) - 1, MSG_NOSIGNAL);
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  uint16_t port_;
  std::vector<Conn> conns_;
  std::atomic<bool> stop_{false};
  std::atomic<int> reopened_{0};
  std::thread thread_;
};

// Item 6: idle and slowloris connections beyond the metrics port's budget, kept up by an
// outsider, and curl still gets 200 from /healthz and /readyz every time.
TEST_F(PreauthTest, Item6HealthEndpointsAnswerUnderIdleAndSlowlorisFlood) {
  StartAgent({});
  Flood flood(metrics_port_, 150, 50);
  while (flood.reopened() < 200) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::string base = "http://127.0.0.1:" + std::to_string(metrics_port_);
  for (int round = 0; round < 3; ++round) {
    for (const char* path : {"/healthz", "/readyz"}) {
      CommandResult curl =
          RunCommand({"curl", "-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                      base + path});
      EXPECT_EQ(curl.out, "200") << path << " round " << round << ": " << curl.err;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace
}  // namespace alknet::testing
