// The client role (`alknet-agent connect`) against real peers: a private OpenSSH sshd and our
// own agent. SOCKS5 with curl, -L byte-exact, -R, reconnect with backoff, host key checks and
// outbound proxies (microsocks, tinyproxy).
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/sshd_process.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

// Waits until `needle` appears `count` times in the client's log.
bool WaitForLog(const ClientProcess& client, std::string_view needle, int count,
                std::chrono::seconds timeout = std::chrono::seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (client.CountInLog(needle) >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// ---- our client against a real OpenSSH sshd ----

class ClientSshdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = MakeKey(dir_, "client_key");
    sshd_ = std::make_unique<SshdProcess>(dir_, key_.public_line);
    WriteFile(dir_.File("known_hosts"), sshd_->KnownHostsLine() + "\n");
  }

  std::vector<std::string> BaseArgs() {
    return {"--server", "tcp://" + Loopback(sshd_->port()), "--identity", key_.private_path,
            "--known-hosts", dir_.File("known_hosts"), "--log-level", "debug"};
  }

  TempDir dir_;
  TestKey key_;
  std::unique_ptr<SshdProcess> sshd_;
};

TEST_F(ClientSshdTest, Socks5CurlHostnameAndLocalForward64MiB) {
  HttpServer http("hello from sshd's side\n");
  EchoServer echo;
  std::vector<std::string> args = BaseArgs();
  args.insert(args.end(), {"--socks5", "127.0.0.1:0", "-L",
                           "127.0.0.1:0:127.0.0.1:" + std::to_string(echo.port())});
  ClientProcess client(dir_, args);
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log() << sshd_->Log();
  // "localhost" goes to sshd as a name (curl --socks5-hostname): resolved on the far side.
  CommandResult curl = CurlThroughSocks(client.socks_port(),
                                        "http://localhost:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.exit_code, 0) << curl.err << client.Log();
  EXPECT_EQ(curl.out, "hello from sshd's side\n");
  ASSERT_EQ(client.local_ports().size(), 1u);
  int fd = ConnectTcp(client.local_ports()[0]);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(64 << 20, 7)));
  close(fd);
  // Destinations never reach the client's log either.
  EXPECT_THAT(client.Log(), Not(HasSubstr("localhost:" + std::to_string(http.port()))));
}

// ---- SOCKS5 byte-level table: a raw socket sends exact bytes to our SOCKS5 listener ----

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out += static_cast<char>(b);
  return out;
}

std::string PortBytes(uint16_t port) { return Bytes({port >> 8, port & 0xff}); }

// Sends `request`, then reads until EOF or `expect` bytes arrived (timeout 10 s).
std::string Exchange(uint16_t socks, const std::string& request, size_t expect, bool half_close = false) {
  int fd = ConnectTcp(socks);
  if (fd < 0) return "<connect failed>";
  (void)send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  if (half_close) shutdown(fd, SHUT_WR);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got;
  char buffer[512];
  while (got.size() < expect) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    got.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

// Reply header: VER REP RSV (the bound address follows).
std::string ReplyHead(int code) { return Bytes({5, code, 0}); }

TEST_F(ClientSshdTest, Socks5RepliesCodeByCode) {
  // A second key line that may only open 127.0.0.1:1: sshd answers other destinations with
  // "administratively prohibited".
  EchoServer echo;
  uint16_t closed = PickFreePort();
  std::vector<std::string> args = BaseArgs();
  args.insert(args.end(), {"--socks5", "127.0.0.1:0", "--request-timeout", "2s"});
  ClientProcess client(dir_, args);
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log();
  uint16_t socks = client.socks_port();
  const std::string hello = Bytes({5, 1, 0});
  const std::string method_ok = Bytes({5, 0});
  auto connect_v4 = [&](uint16_t port) {
    return Bytes({5, 1, 0, 1, 127, 0, 0, 1}) + PortBytes(port);
  };

  // Success: 00 with the address of our own connection's local end (127.0.0.1:socks).
  {
    int fd = ConnectTcp(socks);
    ASSERT_GE(fd, 0);
    std::string request = hello + connect_v4(echo.port());
    send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char reply[12];
    size_t got = 0;
    while (got < sizeof(reply)) {
      ssize_t n = recv(fd, reply + got, sizeof(reply) - got, 0);
      ASSERT_GT(n, 0);
      got += static_cast<size_t>(n);
    }
    EXPECT_EQ(std::string(reply, 12), method_ok + ReplyHead(0) + Bytes({1, 127, 0, 0, 1}) + PortBytes(socks));
    EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 9)));
    close(fd);
  }
  // The domain address type reaches the far side too (resolved there).
  EXPECT_EQ(Exchange(socks, hello + Bytes({5, 1, 0, 3, 9}) + "localhost" + PortBytes(echo.port()), 12)
                .substr(0, 5),
            method_ok + ReplyHead(0));
  // So does the IPv6 address type: CONNECT [::1]:port to a server that listens on ::1 only, and
  // the bytes come back through it.
  {
    int v6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_loopback;
    ASSERT_EQ(bind(v6, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0) << "no IPv6 loopback";
    ASSERT_EQ(listen(v6, 1), 0);
    socklen_t length = sizeof(address);
    getsockname(v6, reinterpret_cast<sockaddr*>(&address), &length);
    std::thread echo_once([v6] {
      int peer = accept(v6, nullptr, nullptr);
      char buffer[4096];
      ssize_t n;
      while (peer >= 0 && (n = recv(peer, buffer, sizeof(buffer), 0)) > 0) send(peer, buffer, n, MSG_NOSIGNAL);
      if (peer >= 0) close(peer);
    });
    std::string connect_v6 = Bytes({5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}) +
                             PortBytes(ntohs(address.sin6_port));
    int fd = ConnectTcp(socks);
    ASSERT_GE(fd, 0);
    std::string request = hello + connect_v6;
    send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    std::string reply;
    char buffer[64];
    while (reply.size() < 2 + 10) {  // method choice, then VER REP RSV ATYP(1) addr(4) port
      ssize_t n = recv(fd, buffer, 2 + 10 - reply.size(), 0);
      if (n <= 0) break;
      reply.append(buffer, static_cast<size_t>(n));
    }
    EXPECT_EQ(reply.substr(0, 5), method_ok + ReplyHead(0));
    EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(64 << 10, 11)));
    close(fd);
    echo_once.join();
    close(v6);
  }
  // No acceptable method: 05 FF, then close.
  EXPECT_EQ(Exchange(socks, Bytes({5, 1, 2}), 3), Bytes({5, 0xff}));
  EXPECT_EQ(Exchange(socks, Bytes({5, 0}), 3), Bytes({5, 0xff}));
  // BIND and UDP ASSOCIATE: 07.
  EXPECT_EQ(Exchange(socks, hello + Bytes({5, 2, 0, 1, 127, 0, 0, 1, 0, 80}), 20).substr(0, 5),
            method_ok + ReplyHead(7));
  EXPECT_EQ(Exchange(socks, hello + Bytes({5, 3, 0, 1, 0, 0, 0, 0, 0, 0}), 20).substr(0, 5),
            method_ok + ReplyHead(7));
  // Unknown address type: 08. Empty domain: 01.
  EXPECT_EQ(Exchange(socks, hello + Bytes({5, 1, 0, 9, 1, 2}), 20).substr(0, 5), method_ok + ReplyHead(8));
  EXPECT_EQ(Exchange(socks, hello + Bytes({5, 1, 0, 3, 0, 0, 80}), 20).substr(0, 5), method_ok + ReplyHead(1));
  // Refused by the target: sshd says "Connection refused" (reason 2) -> 05.
  EXPECT_EQ(Exchange(socks, hello + connect_v4(closed), 20).substr(0, 5), method_ok + ReplyHead(5));
  // Unknown host: connect failed, not refused -> 04.
  std::string invalid = "no-such-host.invalid";
  EXPECT_EQ(Exchange(socks, hello + Bytes({5, 1, 0, 3, static_cast<int>(invalid.size())}) + invalid +
                                PortBytes(80), 20)
                .substr(0, 5),
            method_ok + ReplyHead(4));
  // Not SOCKS5 at all (a SOCKS4 request): closed without a reply.
  EXPECT_EQ(Exchange(socks, Bytes({4, 1, 0, 80, 127, 0, 0, 1, 0}), 8), "");
  // Bad version in the request: 01.
  EXPECT_EQ(Exchange(socks, hello + Bytes({4, 1, 0, 1, 127, 0, 0, 1, 0, 80}), 20).substr(0, 5),
            method_ok + ReplyHead(1));
  // Truncated greeting / request, then EOF: closed, no reply (or just the method reply).
  EXPECT_EQ(Exchange(socks, Bytes({5, 3, 0}), 8, /*half_close=*/true), "");
  EXPECT_EQ(Exchange(socks, hello + Bytes({5, 1, 0, 1, 127}), 8, /*half_close=*/true), method_ok);
  // Truncated and silent: the request timeout (2 s) closes it.
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Exchange(socks, hello + Bytes({5, 1, 0, 3, 20, 'a'}), 8), method_ok);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(8));
  // The client survived all of it.
  CommandResult curl = RunCommand({"curl", "-sS", "--max-time", "10", "--socks5-hostname",
                                   Loopback(socks), "http://127.0.0.1:" + std::to_string(closed) + "/"});
  EXPECT_NE(curl.exit_code, 0);
  EXPECT_TRUE(client.process().running());
}

TEST(ClientSshdPolicyTest, AdministrativelyProhibitedMapsToNotAllowed) {
  TempDir dir;
  TestKey key = MakeKey(dir, "client_key");
  // sshd refuses every destination but 127.0.0.1:1 for this key.
  SshdProcess sshd(dir, "permitopen=\"127.0.0.1:1\" " + key.public_line);
  EchoServer echo;
  ClientProcess client(dir, {"--server", "tcp://" + Loopback(sshd.port()), "--identity",
                             key.private_path, "--insecure-accept-any-host-key", "--socks5",
                             "127.0.0.1:0"});
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log();
  std::string reply = Exchange(client.socks_port(),
                               Bytes({5, 1, 0}) + Bytes({5, 1, 0, 1, 127, 0, 0, 1}) + PortBytes(echo.port()), 20);
  EXPECT_EQ(reply.substr(0, 5), Bytes({5, 0}) + ReplyHead(2)) << client.Log();
}

TEST(ClientSshdPolicyTest, Socks5UsernamePassword) {
  TempDir dir;
  TestKey key = MakeKey(dir, "client_key");
  SshdProcess sshd(dir, key.public_line);
  HttpServer http("authenticated\n");
  ClientProcess client(dir, {"--server", "tcp://" + Loopback(sshd.port()), "--identity",
                             key.private_path, "--insecure-accept-any-host-key", "--socks5",
                             "127.0.0.1:0", "--socks5-username", "alice", "--socks5-password", "s3cret"});
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log();
  std::string url = "http://127.0.0.1:" + std::to_string(http.port()) + "/";
  CommandResult good = RunCommand({"curl", "-sS", "--max-time", "10", "--socks5-hostname",
                                   "alice:s3cret@" + Loopback(client.socks_port()), url});
  EXPECT_EQ(good.out, "authenticated\n") << good.err;
  CommandResult bad = RunCommand({"curl", "-sS", "--max-time", "10", "--socks5-hostname",
                                  "alice:wrong@" + Loopback(client.socks_port()), url});
  EXPECT_NE(bad.exit_code, 0);
  // Without credentials: no acceptable method.
  EXPECT_EQ(Exchange(client.socks_port(), Bytes({5, 1, 0}), 3), Bytes({5, 0xff}));
}

// ---- our client against our agent ----

class ClientAgentTest : public ::testing::Test {
 protected:
  void StartAgent(uint16_t port = 0) {
    std::vector<std::string> args = {"--authorized-keys", agent_dir_.File("authorized_keys")};
    if (!agent_) {
      key_ = MakeKey(dir_, "client_key");
      WriteFile(agent_dir_.File("authorized_keys"), key_.public_line + "\n");
    }
    if (port != 0) args.insert(args.end(), {"--listen", "tcp://" + Loopback(port)});
    agent_.reset();
    agent_ = std::make_unique<AgentProcess>(agent_dir_, args);
    ASSERT_NE(agent_->port(), 0);
    std::string log = agent_->Log();
    size_t at = log.find("fingerprint=SHA256:");
    ASSERT_NE(at, std::string::npos) << log;
    host_fingerprint_ = log.substr(at + 12, 50);
  }

  TempDir dir_;
  TempDir agent_dir_;
  TestKey key_;
  std::unique_ptr<AgentProcess> agent_;
  std::string host_fingerprint_;
};

TEST_F(ClientAgentTest, Socks5LocalAndRemoteForwards) {
  StartAgent();
  HttpServer http("hello through our own agent\n");
  EchoServer echo;
  uint16_t published = PickFreePort();
  ClientProcess client(
      dir_, {"--server", "tcp://" + Loopback(agent_->port()), "--identity", key_.private_path,
             "--host-key-fingerprint", host_fingerprint_, "--socks5", "127.0.0.1:0", "-L",
             "0:127.0.0.1:" + std::to_string(echo.port()), "-R",
             std::to_string(published) + ":127.0.0.1:" + std::to_string(echo.port())});
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log() << agent_->Log();
  EXPECT_THAT(client.Log(), HasSubstr("remote forward established"));
  // What the key exchange chose, logged once per session (bench/socks5 prints it from here).
  EXPECT_THAT(client.Log(), ContainsRegex("ssh negotiated .*kex=[a-z0-9@.-]+ cipher=[a-z0-9@.-]+"));
  CommandResult curl = CurlThroughSocks(client.socks_port(),
                                        "http://localhost:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.exit_code, 0) << curl.err << client.Log();
  EXPECT_EQ(curl.out, "hello through our own agent\n");
  int fd = ConnectTcp(client.local_ports()[0]);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(EchoRoundTripProblem(fd, PatternBytes(64 << 20, 8)), "") << client.Log() << agent_->Log();
  close(fd);
  // -R: the agent listens on its loopback; a connection there reaches our local echo server.
  ASSERT_TRUE(WaitForListener(agent_->process(), published)) << agent_->Log();
  fd = ConnectTcp(published);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(EchoRoundTripProblem(fd, PatternBytes(4 << 20, 9)), "") << client.Log() << agent_->Log();
  close(fd);
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("localhost")));
}

// The far side's CLOSE arriving while the client still owes the local reader bytes (its socket
// full, the rest in the relay and in libssh's channel buffer) must not cut those bytes off: a
// slow reader gets the whole response. (Under CPU load the 64 MiB echo above lost its last
// ~0.5-1.5 % this way, 4 runs in 6, before the relay drained a closed channel.)
TEST_F(ClientAgentTest, ASlowLocalReaderGetsEveryByteAfterTheFarSideClosesTheChannel) {
  StartAgent();
  const std::string body = PatternBytes(8 << 20, 12);
  HttpServer http(body);
  ClientProcess client(dir_, {"--server", "tcp://" + Loopback(agent_->port()), "--identity",
                              key_.private_path, "--host-key-fingerprint", host_fingerprint_, "-L",
                              "0:127.0.0.1:" + std::to_string(http.port())});
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log() << agent_->Log();
  for (int round = 0; round < 3; ++round) {
    int fd = ConnectTcp(client.local_ports()[0]);
    ASSERT_GE(fd, 0);
    const std::string request = "GET / HTTP/1.0\r\n\r\n";
    ASSERT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    shutdown(fd, SHUT_WR);  // both halves closed: the agent closes the channel once it has sent all
    std::string received;
    char buffer[16384];
    for (;;) {
      std::this_thread::sleep_for(std::chrono::microseconds(500));
      ssize_t n = read(fd, buffer, sizeof buffer);
      if (n <= 0) break;
      received.append(buffer, static_cast<size_t>(n));
    }
    close(fd);
    size_t header_end = received.find("\r\n\r\n");
    ASSERT_NE(header_end, std::string::npos) << "round " << round << ": " << received.size() << " bytes";
    EXPECT_EQ(received.size() - header_end - 4, body.size()) << "round " << round;
    EXPECT_TRUE(received.compare(header_end + 4, std::string::npos, body) == 0) << "round " << round;
  }
}

// Security round, item 2: a local program asks the client role's SOCKS5 listener for the far
// agent's admin API ("alknet-admin" port 0, any case) or any "alknet-*" name: reply 02 (not
// allowed, curl reports it) and no channel open ever reaches the far side.
TEST_F(ClientAgentTest, Item2Socks5NeverReachesTheReservedAdminDestination) {
  StartAgent();
  ClientProcess client(dir_, {"--server", "tcp://" + Loopback(agent_->port()), "--identity",
                              key_.private_path, "--host-key-fingerprint", host_fingerprint_,
                              "--socks5", "127.0.0.1:0", "--log-level", "debug"});
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log() << agent_->Log();
  for (const std::string& url : {std::string("http://alknet-admin:80/"),
                                  std::string("http://ALKNET-Admin:443/"),
                                  std::string("http://alknet-metrics:9100/")}) {
    CommandResult curl = CurlThroughSocks(client.socks_port(), url);
    EXPECT_EQ(curl.exit_code, 97) << url << ": " << curl.err;  // CURLE_PROXY
    // curl 7.88: "Can't complete SOCKS5 connection to alknet-admin. (2)".
    EXPECT_THAT(curl.err, HasSubstr("SOCKS5 connection to")) << url;
    EXPECT_THAT(curl.err, HasSubstr("(2)")) << url;
  }
  // Port 0 (what the admin API listens on) from a raw SOCKS5 client: 02 as well.
  const std::string admin = "alknet-admin";
  std::string request = Bytes({5, 1, 0}) + Bytes({5, 1, 0, 3, static_cast<int>(admin.size())}) +
                        admin + PortBytes(0);
  EXPECT_EQ(Exchange(client.socks_port(), request, 5).substr(0, 5), Bytes({5, 0}) + ReplyHead(2));
  std::string port_zero = Bytes({5, 1, 0}) + Bytes({5, 1, 0, 1, 127, 0, 0, 1}) + PortBytes(0);
  EXPECT_EQ(Exchange(client.socks_port(), port_zero, 5).substr(0, 5), Bytes({5, 0}) + ReplyHead(2));
  EXPECT_TRUE(WaitForLog(client, "reason=reserved-destination", 4)) << client.Log();
  // Nothing reached the far agent: it never saw a channel open, let alone refused one.
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("channel refused")));
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("reserved-destination")));
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("admin-role-required")));
}

TEST_F(ClientAgentTest, ReconnectsWithBackoffAndRestoresEverything) {
  uint16_t port = PickFreePort();
  StartAgent(port);
  HttpServer http("after the restart\n");
  EchoServer echo;
  SourceServer source;
  uint16_t published = PickFreePort();
  ClientProcess client(
      dir_, {"--server", "tcp://" + Loopback(port), "--identity", key_.private_path,
             "--host-key-fingerprint", host_fingerprint_, "--socks5", "127.0.0.1:0", "-L",
             "0:127.0.0.1:" + std::to_string(source.port()), "-R",
             std::to_string(published) + ":127.0.0.1:" + std::to_string(echo.port())});
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log();
  ASSERT_TRUE(WaitForListener(agent_->process(), published));
  // Mid-transfer: a download through -L is running when the server dies.
  int transfer = ConnectTcp(client.local_ports()[0]);
  ASSERT_GE(transfer, 0);
  char buffer[65536];
  ASSERT_GT(recv(transfer, buffer, sizeof(buffer), 0), 0);
  agent_->process().Signal(SIGKILL);
  agent_->process().Wait(std::chrono::seconds(5));
  // The transfer ends (the channel is gone), the client logs the loss and backs off.
  ssize_t n;
  do {
    n = recv(transfer, buffer, sizeof(buffer), 0);
  } while (n > 0);
  close(transfer);
  ASSERT_TRUE(client.WaitForLog("upstream connection lost")) << client.Log();
  // While down, SOCKS requests queue for a while and then fail cleanly; the listener stays.
  ASSERT_TRUE(client.WaitForLog("backoff=4s", std::chrono::seconds(20))) << client.Log();
  int listening = ConnectTcp(client.socks_port());
  EXPECT_GE(listening, 0);
  if (listening >= 0) close(listening);
  // A request made while the server is down waits in the queue and completes after the
  // reconnect (request_timeout 10 s; the next attempt is at most ~5 s away).
  CommandResult queued;
  std::thread waiting([&] {
    queued = CurlThroughSocks(client.socks_port(), "http://127.0.0.1:" + std::to_string(http.port()) + "/");
  });
  StartAgent(port);  // same port, same state dir: same host key
  waiting.join();
  EXPECT_EQ(queued.out, "after the restart\n") << queued.err << client.Log();
  ASSERT_TRUE(WaitForLog(client, "upstream connected", 2)) << client.Log();
  // The logged backoff steps double from 1 s (jitter only moves the actual delay).
  std::string log = client.Log();
  std::vector<std::string> steps;
  for (size_t at = log.find("backoff="); at != std::string::npos; at = log.find("backoff=", at + 1)) {
    size_t end = log.find_first_of(" \n", at);
    steps.push_back(log.substr(at + 8, end - at - 8));
  }
  ASSERT_GE(steps.size(), 3u) << log;
  EXPECT_EQ(steps[0], "1s");
  EXPECT_EQ(steps[1], "2s");
  EXPECT_EQ(steps[2], "4s");
  for (size_t i = 3; i < steps.size(); ++i) EXPECT_TRUE(steps[i] == "8s" || steps[i] == "16s") << steps[i];
  // -R is re-established, SOCKS works again: no client restart.
  EXPECT_EQ(client.CountInLog("remote forward established"), 2) << log;
  ASSERT_TRUE(WaitForListener(agent_->process(), published));
  int fd = ConnectTcp(published);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 10)));
  close(fd);
  CommandResult curl = CurlThroughSocks(client.socks_port(),
                                        "http://127.0.0.1:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.out, "after the restart\n") << curl.err << client.Log();
}

// Reads the port after "<marker> ... address=<scheme>127.0.0.1:" in a log, 0 if absent.
uint16_t LoggedPort(const std::string& log, const std::string& marker) {
  size_t at = log.find(marker);
  if (at == std::string::npos) return 0;
  size_t address = log.find("127.0.0.1:", at);
  if (address == std::string::npos) return 0;
  return static_cast<uint16_t>(std::atoi(log.c_str() + address + 10));
}

TEST_F(ClientAgentTest, ServeWithUpstreamsRunsBothRolesAndJoinsReadiness) {
  StartAgent();
  HttpServer http("server and client in one agent\n");
  TempDir both;
  WriteFile(both.File("authorized_keys"), key_.public_line + "\n");
  WriteFile(both.File("agent.yaml"),
            "upstreams:\n"
            "  - name: upstream-a\n"
            "    server: tcp://" + Loopback(agent_->port()) + "\n"
            "    identity: " + key_.private_path + "\n"
            "    host_key_fingerprint: " + host_fingerprint_ + "\n"
            "    socks5: 127.0.0.1:0\n");
  AgentProcess agent_b(both, {"--config", both.File("agent.yaml"), "--authorized-keys",
                              both.File("authorized_keys")});
  ASSERT_NE(agent_b.port(), 0);
  ASSERT_TRUE(agent_b.WaitForLog("upstream connected")) << agent_b.Log();
  uint16_t socks = LoggedPort(agent_b.Log(), "socks5 listening");
  uint16_t metrics = LoggedPort(agent_b.Log(), "metrics: listening");
  ASSERT_NE(socks, 0) << agent_b.Log();
  ASSERT_NE(metrics, 0) << agent_b.Log();
  CommandResult curl = CurlThroughSocks(socks, "http://127.0.0.1:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.out, "server and client in one agent\n") << curl.err << agent_b.Log();
  // Its own server role works at the same time: a stock ssh -W through agent B.
  EchoServer echo;
  std::vector<std::string> argv = SshArgs(agent_b.port(), key_);
  argv.insert(argv.end(), {"-W", Loopback(echo.port()), "127.0.0.1"});
  CommandResult ssh = RunCommand(argv, "ping through B\n");
  EXPECT_EQ(ssh.out, "ping through B\n") << ssh.err;
  // Readiness: the upstream is part of it; metrics carry the upstream series.
  std::string base = "http://127.0.0.1:" + std::to_string(metrics);
  EXPECT_EQ(RunCommand({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", base + "/readyz"}).out, "200");
  EXPECT_THAT(RunCommand({"curl", "-s", base + "/metrics"}).out,
              HasSubstr("alknet_upstream_connected{upstream=\"upstream-a\"} 1"));
  agent_->process().Signal(SIGKILL);
  ASSERT_TRUE(agent_b.WaitForLog("upstream connection lost")) << agent_b.Log();
  EXPECT_EQ(RunCommand({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", base + "/readyz"}).out, "503");
  std::string scraped = RunCommand({"curl", "-s", base + "/metrics"}).out;
  EXPECT_THAT(scraped, HasSubstr("alknet_upstream_reconnects_total{upstream=\"upstream-a\"} "));
  EXPECT_THAT(scraped, Not(HasSubstr("alknet_upstream_reconnects_total{upstream=\"upstream-a\"} 0")));
  EXPECT_THAT(scraped, HasSubstr("alknet_upstream_connected{upstream=\"upstream-a\"} 0"));
}

TEST_F(ClientAgentTest, KeepalivesKeepAnIdleSessionAndDetectASilentServer) {
  StartAgent();
  ClientProcess client(dir_, {"--server", "tcp://" + Loopback(agent_->port()), "--identity",
                              key_.private_path, "--host-key-fingerprint", host_fingerprint_,
                              "--keepalive-interval", "1s", "--keepalive-timeout", "3s"});
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log();
  // Idle but alive: the server answers every keepalive@openssh.com, nothing is dropped.
  std::this_thread::sleep_for(std::chrono::seconds(5));
  EXPECT_THAT(client.Log(), Not(HasSubstr("keepalive timeout")));
  // A stopped server keeps the TCP connection but says nothing: dead-peer timeout.
  agent_->process().Signal(SIGSTOP);
  EXPECT_TRUE(client.WaitForLog("keepalive timeout", std::chrono::seconds(10))) << client.Log();
  agent_->process().Signal(SIGCONT);
  EXPECT_TRUE(client.WaitForLog("upstream connection lost")) << client.Log();
  EXPECT_TRUE(WaitForLog(client, "upstream connected", 2)) << client.Log();
}

TEST_F(ClientAgentTest, HostKeyMismatchRefusesAndPrintsBothFingerprints) {
  StartAgent();
  const std::string wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  ClientProcess pinned(dir_, {"--server", "tcp://" + Loopback(agent_->port()), "--identity",
                              key_.private_path, "--host-key-fingerprint", wrong, "--socks5",
                              "127.0.0.1:0", "--request-timeout", "1s"},
                       "pinned");
  ASSERT_TRUE(pinned.WaitForLog("refusing the server's host key")) << pinned.Log();
  // Never connected: a SOCKS5 request waits its request_timeout, then fails cleanly (01).
  EXPECT_EQ(Exchange(pinned.socks_port(), Bytes({5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80}), 12),
            Bytes({5, 0}) + ReplyHead(1) + Bytes({1, 0, 0, 0, 0, 0, 0}));
  EXPECT_THAT(pinned.Log(), HasSubstr("expected=" + wrong));
  EXPECT_THAT(pinned.Log(), HasSubstr("presented=" + host_fingerprint_));
  EXPECT_THAT(pinned.Log(), Not(HasSubstr("upstream connected")));
  // The agent never saw an authentication attempt: the check comes before auth.
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("result=accepted")));

  // known_hosts with another key for this host:port.
  TempDir other;
  TestKey impostor = MakeKey(other, "impostor", "ed25519");
  std::string impostor_key = impostor.public_line.substr(0, impostor.public_line.rfind(' '));
  WriteFile(dir_.File("known_hosts"), "[127.0.0.1]:" + std::to_string(agent_->port()) + " " + impostor_key + "\n");
  ClientProcess known(dir_, {"--server", "tcp://" + Loopback(agent_->port()), "--identity",
                             key_.private_path, "--known-hosts", dir_.File("known_hosts")},
                      "known");
  ASSERT_TRUE(known.WaitForLog("refusing the server's host key")) << known.Log();
  EXPECT_THAT(known.Log(), HasSubstr("expected=" + impostor.fingerprint));
  EXPECT_THAT(known.Log(), HasSubstr("presented=" + host_fingerprint_));

  // An unknown host (empty known_hosts) is refused too, never trusted silently.
  WriteFile(dir_.File("empty_known_hosts"), "");
  ClientProcess unknown(dir_, {"--server", "tcp://" + Loopback(agent_->port()), "--identity",
                               key_.private_path, "--known-hosts", dir_.File("empty_known_hosts")},
                        "unknown");
  ASSERT_TRUE(unknown.WaitForLog("refusing the server's host key")) << unknown.Log();
  EXPECT_THAT(unknown.Log(), HasSubstr("expected=none"));
  EXPECT_THAT(unknown.Log(), HasSubstr("presented=" + host_fingerprint_));
}

// ---- through a real upstream proxy ----

class ClientProxyTest : public ClientAgentTest {};

TEST_F(ClientProxyTest, ThroughMicrosocksSocks5) {
  if (!HaveProgram("microsocks")) GTEST_SKIP() << "microsocks not installed (scripts/install-deps.sh --test)";
  StartAgent();
  uint16_t proxy_port = 0;
  auto proxy = StartMicrosocks(dir_.path(), &proxy_port);
  ASSERT_NE(proxy, nullptr);
  HttpServer http("via microsocks\n");
  ClientProcess client(dir_, {"--server", "tcp://localhost:" + std::to_string(agent_->port()),
                              "--identity", key_.private_path, "--host-key-fingerprint",
                              host_fingerprint_, "--socks5", "127.0.0.1:0", "--proxy",
                              "socks5://localhost:" + std::to_string(proxy_port)});
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log();
  CommandResult curl = CurlThroughSocks(client.socks_port(),
                                        "http://127.0.0.1:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.out, "via microsocks\n") << curl.err << client.Log();
  // The agent would also be reachable directly: the proxy's own log proves it carried the session.
  EXPECT_THAT(proxy->Stderr(), HasSubstr(":" + std::to_string(agent_->port())));
  EXPECT_THAT(proxy->Stderr(), HasSubstr("connected to"));
}

TEST_F(ClientProxyTest, ThroughTinyproxyHttpConnect) {
  if (!HaveProgram("tinyproxy")) GTEST_SKIP() << "tinyproxy not installed (scripts/install-deps.sh --test)";
  StartAgent();
  uint16_t proxy_port = 0;
  std::string why;
  auto proxy = StartListening(
      [&](uint16_t port) {
        WriteFile(dir_.File("tinyproxy.conf"),
                  "Port " + std::to_string(port) + "\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\n"
                  "MaxClients 20\nPidFile \"" + dir_.File("tinyproxy.pid") + "\"\nLogLevel Info\n");
        return std::vector<std::string>{"tinyproxy", "-d", "-c", dir_.File("tinyproxy.conf")};
      },
      dir_.path(), "tinyproxy", &proxy_port, &why);
  ASSERT_NE(proxy, nullptr) << why;
  HttpServer http("via tinyproxy\n");
  ClientProcess client(dir_, {"--server", "tcp://127.0.0.1:" + std::to_string(agent_->port()),
                              "--identity", key_.private_path, "--host-key-fingerprint",
                              host_fingerprint_, "--socks5", "127.0.0.1:0", "--proxy",
                              "http://127.0.0.1:" + std::to_string(proxy_port)});
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log() << proxy->Stderr();
  CommandResult curl = CurlThroughSocks(client.socks_port(),
                                        "http://127.0.0.1:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.out, "via tinyproxy\n") << curl.err << client.Log();
  // The agent would also be reachable directly: the proxy's own log proves it carried the session.
  EXPECT_THAT(proxy->Stdout(), HasSubstr("CONNECT 127.0.0.1:" + std::to_string(agent_->port())));
}

}  // namespace
}  // namespace alknet::testing
