// The client role over tls:// (`alknet-agent connect --server tls://...`) against our own agent's
// tls:// listener: the certificate pin in the form the agent logs, a CA made with the openssl
// tool plus the server name, --tls-insecure, and what each refusal looks like in the log.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/sshd_process.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// "AB:CD:..." -> "SHA256:abcd..." (the other accepted form).
std::string HexPinForm(const std::string& colons) {
  std::string out = "SHA256:";
  for (char c : colons) {
    if (c != ':') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

// Sends a few bytes into a -L port and reads until EOF/error (10 s at most): what came back.
// A forward whose upstream never connects closes after the request timeout.
std::string PokeLocalForward(uint16_t port) {
  int fd = ConnectTcp(port);
  if (fd < 0) return "<connect failed>";
  (void)send(fd, "ping\n", 5, MSG_NOSIGNAL);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got;
  char buffer[512];
  while (true) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    got.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

class TlsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = MakeKey(dir_, "client_key");
    WriteFile(agent_dir_.File("authorized_keys"), key_.public_line + "\n");
  }

  // Our agent with a tls:// listener (a generated self-signed certificate unless `extra` names
  // one); reads its TLS port, its certificate's fingerprint and its host key's fingerprint.
  // A restart keeps the state (same certificate and host key) but needs a fresh `log_dir`.
  void StartAgent(std::vector<std::string> extra = {}, const TempDir* log_dir = nullptr,
                  uint16_t tls_port = 0) {
    std::vector<std::string> args = {"--state-dir", agent_dir_.File("state"), "--authorized-keys",
                                     agent_dir_.File("authorized_keys"), "--listen",
                                     "tls://" + Loopback(tls_port)};
    args.insert(args.end(), extra.begin(), extra.end());
    agent_.reset();
    agent_ = std::make_unique<AgentProcess>(log_dir != nullptr ? *log_dir : agent_dir_, args);
    ASSERT_TRUE(agent_->WaitForLog("listening address=tls://127.0.0.1:")) << agent_->Log();
    std::string log = agent_->Log();
    tls_port_ = ListeningPort(log, "tls");
    ASSERT_NE(tls_port_, 0);
    tls_fingerprint_ = LogValue(log, "sha256=");
    ASSERT_EQ(tls_fingerprint_.size(), 95u) << log;
    size_t at = log.find("fingerprint=SHA256:");
    ASSERT_NE(at, std::string::npos) << log;
    host_fingerprint_ = log.substr(at + 12, 50);
  }

  // connect args for the agent's tls port plus `extra`, with a SOCKS5 listener and one -L to
  // `forward_port`.
  std::vector<std::string> ClientArgs(std::vector<std::string> extra, uint16_t forward_port) {
    std::vector<std::string> args = {"--server", "tls://" + Loopback(tls_port_), "--identity",
                                     key_.private_path, "--host-key-fingerprint", host_fingerprint_,
                                     "--socks5", "127.0.0.1:0", "-L",
                                     "0:127.0.0.1:" + std::to_string(forward_port),
                                     "--log-level", "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // A CA and a server certificate for `name` signed by it, made by the openssl tool.
  void MakeCaAndServerCertificate(const std::string& name) {
    auto run = [](const std::vector<std::string>& argv) {
      CommandResult result = RunCommand(argv);
      ASSERT_EQ(result.exit_code, 0) << argv[1] << ": " << result.err;
    };
    run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", dir_.File("ca.key"), "-out", dir_.File("ca.pem"), "-days", "2",
         "-subj", "/CN=alknet test CA"});
    run({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", dir_.File("server.key"), "-out", dir_.File("server.csr"), "-subj",
         "/CN=" + name});
    WriteFile(dir_.File("server.ext"),
              "subjectAltName=DNS:" + name + "\nbasicConstraints=critical,CA:FALSE\n"
              "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n");
    run({"openssl", "x509", "-req", "-in", dir_.File("server.csr"), "-CA", dir_.File("ca.pem"),
         "-CAkey", dir_.File("ca.key"), "-CAcreateserial", "-out", dir_.File("server.pem"), "-days",
         "2", "-extfile", dir_.File("server.ext")});
  }

  TempDir dir_;
  TempDir agent_dir_;
  TestKey key_;
  std::unique_ptr<AgentProcess> agent_;
  uint16_t tls_port_ = 0;
  std::string tls_fingerprint_;   // "AB:CD:..." as the agent logs it
  std::string host_fingerprint_;  // SHA256:... of the SSH host key
};

// Acceptance: the pin in the form the agent logs; SOCKS5 (curl) and -L byte-exact.
TEST_F(TlsClientTest, PinnedCertificateMovesDataByteExact) {
  StartAgent();
  HttpServer http("hello over tls\n");
  EchoServer echo;
  ClientProcess client(dir_, ClientArgs({"--tls-fingerprint", tls_fingerprint_}, echo.port()));
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log() << agent_->Log();
  EXPECT_THAT(client.Log(), HasSubstr("tls established"));
  EXPECT_THAT(client.Log(), HasSubstr("sha256=" + tls_fingerprint_));
  CommandResult curl = CurlThroughSocks(client.socks_port(),
                                        "http://localhost:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.exit_code, 0) << curl.err << client.Log();
  EXPECT_EQ(curl.out, "hello over tls\n");
  ASSERT_EQ(client.local_ports().size(), 1u);
  int fd = ConnectTcp(client.local_ports()[0]);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(16 << 20, 21)));
  close(fd);
  // The agent took it as SSH inside TLS (not its plain tcp:// listener).
  EXPECT_THAT(agent_->Log(), HasSubstr("result=accepted"));
  EXPECT_THAT(agent_->Log(), HasSubstr("transport=tls"));
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("transport=tcp")));

  // The same pin as SHA256:<hex> without colons.
  ClientProcess hex(dir_, ClientArgs({"--tls-fingerprint", HexPinForm(tls_fingerprint_)}, echo.port()),
                    "hex");
  ASSERT_TRUE(hex.WaitForLog("upstream connected")) << hex.Log();
  fd = ConnectTcp(hex.local_ports()[0]);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 22)));
  close(fd);
}

TEST_F(TlsClientTest, WrongPinRefusesBeforeSsh) {
  StartAgent();
  EchoServer echo;
  std::string wrong = tls_fingerprint_;
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  ClientProcess client(dir_, ClientArgs({"--tls-fingerprint", wrong, "--request-timeout", "1s"},
                                        echo.port()));
  ASSERT_TRUE(client.WaitForLog("tls: certificate fingerprint mismatch: expected " + wrong +
                                ", got " + tls_fingerprint_))
      << client.Log();
  EXPECT_THAT(client.Log(), HasSubstr("connection attempt failed"));
  // The forward's connection gets nothing and is closed once its request times out.
  EXPECT_EQ(PokeLocalForward(client.local_ports()[0]), "");
  // It retries with backoff like any failed attempt.
  ASSERT_TRUE(client.WaitForLog("backoff=2s", std::chrono::seconds(10))) << client.Log();
  EXPECT_THAT(client.Log(), Not(HasSubstr("upstream connected")));
  EXPECT_EQ(echo.connections(), 0);
  // SSH never started: the agent saw no authentication.
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("result=accepted")));
}

TEST_F(TlsClientTest, CaFileAndServerName) {
  MakeCaAndServerCertificate("tunnel.test");
  if (HasFailure()) return;
  StartAgent({"--tls-cert", dir_.File("server.pem"), "--tls-key", dir_.File("server.key")});
  HttpServer http("verified by the CA\n");
  EchoServer echo;
  ClientProcess good(dir_, ClientArgs({"--tls-ca-file", dir_.File("ca.pem"), "--tls-server-name",
                                       "tunnel.test"},
                                      echo.port()),
                     "good");
  ASSERT_TRUE(good.WaitForLog("upstream connected")) << good.Log() << agent_->Log();
  CommandResult curl = CurlThroughSocks(good.socks_port(),
                                        "http://127.0.0.1:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.out, "verified by the CA\n") << curl.err << good.Log();
  int fd = ConnectTcp(good.local_ports()[0]);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(4 << 20, 23)));
  close(fd);

  // Another name than the certificate's.
  ClientProcess other(dir_, ClientArgs({"--tls-ca-file", dir_.File("ca.pem"), "--tls-server-name",
                                        "other.test", "--request-timeout", "1s"},
                                       echo.port()),
                      "other");
  ASSERT_TRUE(other.WaitForLog(
      "tls: certificate verify failed: hostname mismatch (expected other.test)"))
      << other.Log();
  EXPECT_EQ(PokeLocalForward(other.local_ports()[0]), "");
  EXPECT_THAT(other.Log(), Not(HasSubstr("upstream connected")));

  // No server name: the URL's IP literal is checked against the certificate (no IP SAN).
  ClientProcess by_ip(dir_, ClientArgs({"--tls-ca-file", dir_.File("ca.pem")}, echo.port()),
                      "by_ip");
  ASSERT_TRUE(by_ip.WaitForLog(
      "tls: certificate verify failed: IP address mismatch (expected 127.0.0.1)"))
      << by_ip.Log();

  // The system roots do not know our CA.
  ClientProcess system(dir_, ClientArgs({"--tls-server-name", "tunnel.test"}, echo.port()),
                       "system");
  ASSERT_TRUE(system.WaitForLog("tls: certificate verify failed: unable to get local issuer "
                                "certificate"))
      << system.Log();
  EXPECT_THAT(system.Log(), Not(HasSubstr("upstream connected")));
}

TEST_F(TlsClientTest, InsecureAcceptsTheSelfSignedCertificateWithAWarning) {
  StartAgent();
  HttpServer http("unchecked\n");
  EchoServer echo;
  ClientProcess client(dir_, ClientArgs({"--tls-insecure"}, echo.port()));
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log() << agent_->Log();
  EXPECT_THAT(client.Log(), HasSubstr("tls certificate not checked (tls_insecure)"));
  EXPECT_THAT(client.Log(), HasSubstr("presented=" + tls_fingerprint_));
  CommandResult curl = CurlThroughSocks(client.socks_port(),
                                        "http://127.0.0.1:" + std::to_string(http.port()) + "/");
  EXPECT_EQ(curl.out, "unchecked\n") << curl.err << client.Log();
  int fd = ConnectTcp(client.local_ports()[0]);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(4 << 20, 24)));
  close(fd);
  // Without any check option the system roots refuse the self-signed certificate.
  ClientProcess strict(dir_, ClientArgs({}, echo.port()), "strict");
  ASSERT_TRUE(strict.WaitForLog("tls: certificate verify failed: self-signed certificate"))
      << strict.Log();
}

// The server goes away mid-session (SIGKILL: no close_notify) and comes back on the same port:
// the loss is noticed through the bridge and the session is re-established through TLS.
TEST_F(TlsClientTest, ReconnectsAfterTheServerRestarts) {
  uint16_t port = PickFreePort();
  StartAgent({}, nullptr, port);
  EchoServer echo;
  ClientProcess client(dir_, ClientArgs({"--tls-fingerprint", tls_fingerprint_}, echo.port()));
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log();
  int fd = ConnectTcp(client.local_ports()[0]);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 26)));
  agent_->process().Signal(SIGKILL);
  agent_->process().Wait(std::chrono::seconds(5));
  char buffer[4096];
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  while (recv(fd, buffer, sizeof(buffer), 0) > 0) {
  }
  close(fd);
  ASSERT_TRUE(client.WaitForLog("upstream connection lost")) << client.Log();
  TempDir second_log;
  StartAgent({}, &second_log, port);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (client.CountInLog("upstream connected") < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(client.CountInLog("upstream connected"), 2) << client.Log();
  fd = ConnectTcp(client.local_ports()[0]);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 27)));
  close(fd);
}

// Keepalives through the bridge: an idle but live server is kept (the keepalive check cannot
// read TCP_INFO from the socketpair, so only what arrives through the bridge counts), a
// stopped one is detected and the session comes back after it resumes.
TEST_F(TlsClientTest, KeepalivesKeepAnIdleSessionAndDetectASilentServer) {
  StartAgent();
  EchoServer echo;
  ClientProcess client(dir_, ClientArgs({"--tls-fingerprint", tls_fingerprint_,
                                         "--keepalive-interval", "1s", "--keepalive-timeout", "3s"},
                                        echo.port()));
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log();
  std::this_thread::sleep_for(std::chrono::seconds(5));
  EXPECT_THAT(client.Log(), Not(HasSubstr("keepalive timeout")));
  agent_->process().Signal(SIGSTOP);
  EXPECT_TRUE(client.WaitForLog("keepalive timeout", std::chrono::seconds(10))) << client.Log();
  agent_->process().Signal(SIGCONT);
  EXPECT_TRUE(client.WaitForLog("upstream connection lost")) << client.Log();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (client.CountInLog("upstream connected") < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(client.CountInLog("upstream connected"), 2) << client.Log();
}

// A tls:// client pointed at a plain SSH port: the handshake fails with a reason, no hang.
TEST_F(TlsClientTest, PlainSshPortFailsTheHandshake) {
  StartAgent();
  EchoServer echo;
  std::vector<std::string> args = {"--server", "tls://" + Loopback(agent_->port()), "--identity",
                                   key_.private_path, "--host-key-fingerprint", host_fingerprint_,
                                   "--tls-insecure", "-L",
                                   "0:127.0.0.1:" + std::to_string(echo.port())};
  ClientProcess client(dir_, args);
  ASSERT_TRUE(client.WaitForLog("reason=\"tls: handshake failed: ")) << client.Log();
  EXPECT_THAT(client.Log(), Not(HasSubstr("upstream connected")));
}

// A CA file that cannot be read stops the start with a message naming the field (not one
// failed attempt after another).
TEST_F(TlsClientTest, UnreadableCaFileIsAStartupError) {
  StartAgent();
  CommandResult result = RunCommand(
      {ALKNET_AGENT_BINARY, "connect", "--metrics-listen", "off", "--server",
       "tls://" + Loopback(agent_->port()), "--identity", key_.private_path, "--host-key-fingerprint",
       host_fingerprint_, "--tls-ca-file", dir_.File("missing-ca.pem"), "--socks5", "127.0.0.1:0"},
      "", std::chrono::seconds(20));
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.err, HasSubstr("tls_ca_file '" + dir_.File("missing-ca.pem") +
                                    "': No such file or directory"));
}

// TLS starts after the outbound proxy's tunnel is up.
TEST_F(TlsClientTest, ThroughMicrosocksSocks5) {
  if (!HaveProgram("microsocks")) GTEST_SKIP() << "microsocks not installed (scripts/install-deps.sh --test)";
  StartAgent();
  uint16_t proxy_port = 0;
  auto proxy = StartMicrosocks(dir_.path(), &proxy_port);
  ASSERT_NE(proxy, nullptr);
  EchoServer echo;
  ClientProcess client(dir_, ClientArgs({"--tls-fingerprint", tls_fingerprint_, "--proxy",
                                         "socks5://127.0.0.1:" + std::to_string(proxy_port)},
                                        echo.port()));
  ASSERT_TRUE(client.WaitForLog("upstream connected")) << client.Log();
  int fd = ConnectTcp(client.local_ports()[0]);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(2 << 20, 25)));
  close(fd);
  // The agent would also be reachable directly: the proxy's own log proves it carried the session.
  EXPECT_THAT(proxy->Stderr(), HasSubstr("connected to 127.0.0.1:" + std::to_string(tls_port_)));
}

// ---- alknet-agent proxy: the stock ssh client over tls:// (ProxyCommand) ----

// ssh to the agent through `alknet-agent proxy tls://...` with `proxy_flags`, then -W to
// `echo_port`, sending `input`: what ssh printed and how it exited.
CommandResult SshThroughProxy(const TestKey& key, uint16_t tls_port, uint16_t echo_port,
                              const std::string& proxy_flags, const std::string& input) {
  std::vector<std::string> argv = SshArgs(tls_port, key);
  argv.insert(argv.end(),
              {"-o", absl::StrCat("ProxyCommand=", ALKNET_AGENT_BINARY, " proxy tls://127.0.0.1:%p ",
                                  proxy_flags),
               "-W", Loopback(echo_port), "127.0.0.1"});
  return RunCommand(argv, input, std::chrono::seconds(60));
}

TEST_F(TlsClientTest, StockSshReachesTheTlsListenerThroughTheProxyCommand) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  EchoServer echo;
  const std::string payload = PatternBytes(16 << 20, 11);
  CommandResult pinned = SshThroughProxy(key_, tls_port_, echo.port(),
                                         "--tls-fingerprint " + tls_fingerprint_, payload);
  EXPECT_EQ(pinned.exit_code, 0) << pinned.err;
  EXPECT_EQ(pinned.out.size(), payload.size());
  EXPECT_TRUE(pinned.out == payload) << "16 MiB through ssh -W over the proxy were not byte-exact";

  // The other way to trust the certificate: a CA and the name it is issued for.
  MakeCaAndServerCertificate("tunnel.example");
  TempDir restart_log;
  ASSERT_NO_FATAL_FAILURE(StartAgent({"--tls-cert", dir_.File("server.pem"), "--tls-key",
                                      dir_.File("server.key")},
                                     &restart_log, tls_port_));
  CommandResult by_ca = SshThroughProxy(
      key_, tls_port_, echo.port(),
      "--tls-ca-file " + dir_.File("ca.pem") + " --tls-server-name tunnel.example", "by ca\n");
  EXPECT_EQ(by_ca.exit_code, 0) << by_ca.err;
  EXPECT_EQ(by_ca.out, "by ca\n");
}

TEST_F(TlsClientTest, TheProxyCommandRefusesAnotherCertificateAndSaysWhy) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  EchoServer echo;
  std::string wrong = tls_fingerprint_;
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  CommandResult refused =
      SshThroughProxy(key_, tls_port_, echo.port(), "--tls-fingerprint " + wrong, "x\n");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("alknet-agent proxy: 127.0.0.1:"));
  EXPECT_THAT(refused.err, HasSubstr("tls"));
  EXPECT_EQ(refused.out, "");
  // Without any way to check it, the proxy does not start.
  CommandResult unchecked = RunCommand({ALKNET_AGENT_BINARY, "proxy", "tls://127.0.0.1:1",
                                        "--identity", "key"});
  EXPECT_EQ(unchecked.exit_code, 2);
  EXPECT_THAT(unchecked.err, HasSubstr("does not apply to 'proxy'"));
  // The agent is unharmed: the right pin goes through.
  CommandResult pinned = SshThroughProxy(key_, tls_port_, echo.port(),
                                         "--tls-fingerprint " + tls_fingerprint_, "after\n");
  EXPECT_EQ(pinned.exit_code, 0) << pinned.err;
  EXPECT_EQ(pinned.out, "after\n");
}

}  // namespace
}  // namespace alknet::testing
