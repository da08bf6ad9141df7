// The tls:// transport against real peers: stock OpenSSH through `openssl s_client`, curl, a
// small OpenSSL client written here for exact probes, and a real Debian nginx as the reference
// for what a non-SSH client must see (stealth).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/nginx_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

// A self-signed EC certificate made by the real openssl tool.
void MakeCertificate(const std::string& cert, const std::string& key, const std::string& cn) {
  CommandResult made = RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                   "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
                                   cert, "-days", "2", "-subj", "/CN=" + cn});
  ASSERT_EQ(made.exit_code, 0) << made.err;
}

std::string FileFingerprint(const std::string& cert) {
  CommandResult printed =
      RunCommand({"openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", cert});
  size_t eq = printed.out.find('=');
  if (printed.exit_code != 0 || eq == std::string::npos) return "";
  std::string fingerprint = printed.out.substr(eq + 1);
  while (!fingerprint.empty() && fingerprint.back() == '\n') fingerprint.pop_back();
  return fingerprint;
}

// The fingerprint of the certificate a TLS server presents, seen through `openssl s_client`.
std::string ServedFingerprint(uint16_t port, const TempDir& dir) {
  CommandResult shown = RunCommand({"openssl", "s_client", "-connect",
                                    "127.0.0.1:" + std::to_string(port), "-servername",
                                    "example.com"},
                                   "", std::chrono::seconds(20));
  size_t begin = shown.out.find("-----BEGIN CERTIFICATE-----");
  size_t end = shown.out.find("-----END CERTIFICATE-----");
  if (begin == std::string::npos || end == std::string::npos) return "";
  std::string pem = shown.out.substr(begin, end + 25 - begin) + "\n";
  WriteFile(dir.File("served.pem"), pem, 0644);
  return FileFingerprint(dir.File("served.pem"));
}

// ---- a small OpenSSL client for exact probes ----

struct ProbeResult {
  bool handshake_ok = false;
  std::string alpn;
  std::string data;
  enum class End { kCloseNotify, kTcpEof, kTimeout, kError } end = End::kError;
  double seconds = 0;  // from just before the last write (or the handshake) to the end
};

std::string EndName(ProbeResult::End end) {
  switch (end) {
    case ProbeResult::End::kCloseNotify: return "close_notify";
    case ProbeResult::End::kTcpEof: return "tcp-eof";
    case ProbeResult::End::kTimeout: return "still-open";
    case ProbeResult::End::kError: return "error";
  }
  return "?";
}

struct ProbeOptions {
  std::vector<std::string> writes;  // one SSL_write each
  std::chrono::milliseconds gap{0};  // sleep between writes
  std::chrono::milliseconds wait{3000};  // how long to read after the last write
  bool close_after_handshake = false;
  std::vector<std::string> alpn;
  std::string stop_at;  // stop reading once the data contains this
};

ProbeResult TlsProbe(uint16_t port, const ProbeOptions& options) {
  ProbeResult result;
  int fd = ConnectTcp(port);
  if (fd < 0) return result;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  // A read that meets only a non-data record (a TLS 1.3 session ticket) returns WANT_READ to
  // the poll loop instead of blocking for the next record: `wait` stays a real cap.
  SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
  if (!options.alpn.empty()) {
    std::string wire;
    for (const std::string& p : options.alpn) wire += static_cast<char>(p.size()) + p;
    SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size()));
  }
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "example.com");
  // The server's stealth timer starts when its handshake ends (after our last flight) or when it
  // has answered our last write; we cannot see either, so our clock starts before the step that
  // triggers it. Started after it, a client descheduled for a moment measured 2.9998 s for 3 s.
  auto start = Clock::now();
  if (SSL_connect(ssl) == 1) {
    result.handshake_ok = true;
    const unsigned char* selected = nullptr;
    unsigned length = 0;
    SSL_get0_alpn_selected(ssl, &selected, &length);
    if (selected != nullptr) result.alpn.assign(reinterpret_cast<const char*>(selected), length);
    if (options.close_after_handshake) {
      SSL_shutdown(ssl);
      shutdown(fd, SHUT_WR);
    }
    for (size_t i = 0; i < options.writes.size(); ++i) {
      if (i > 0) std::this_thread::sleep_for(options.gap);
      start = Clock::now();
      SSL_write(ssl, options.writes[i].data(), static_cast<int>(options.writes[i].size()));
    }
    auto deadline = Clock::now() + options.wait;
    result.end = ProbeResult::End::kTimeout;
    char buffer[16384];
    while (true) {
      if (SSL_pending(ssl) == 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) break;
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(left.count())) == 0) break;
      }
      ERR_clear_error();
      int n = SSL_read(ssl, buffer, sizeof(buffer));
      if (n > 0) {
        result.data.append(buffer, static_cast<size_t>(n));
        if (!options.stop_at.empty() && result.data.find(options.stop_at) != std::string::npos) break;
        continue;
      }
      int error = SSL_get_error(ssl, n);
      if (error == SSL_ERROR_WANT_READ) continue;
      result.end = error == SSL_ERROR_ZERO_RETURN ? ProbeResult::End::kCloseNotify
                                                  : ProbeResult::End::kTcpEof;
      break;
    }
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return result;
}

// "Date: ..." replaced, so two servers' answers compare byte for byte. (No std::regex: GCC 12
// warns inside it under -fsanitize.)
std::string WithoutDate(const std::string& text) {
  std::string out = text;
  for (size_t at = out.find("\r\nDate: "); at != std::string::npos;
       at = out.find("\r\nDate: ", at + 2)) {
    size_t value = at + 8;
    size_t eol = out.find("\r\n", value);
    if (eol == std::string::npos) break;
    out.replace(value, eol - value, "<date>");
  }
  return out;
}

// "Sun, 06 Nov 1994 08:49:37 GMT" in the Date header.
bool HasRfc7231Date(const std::string& text) {
  size_t at = text.find("\r\nDate: ");
  if (at == std::string::npos) return false;
  std::string value = text.substr(at + 8, text.find("\r\n", at + 8) - at - 8);
  if (value.size() != 29) return false;
  static const std::string kDays = "Mon,Tue,Wed,Thu,Fri,Sat,Sun,";
  static const std::string kMonths = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec ";
  auto digits = [&](size_t from, size_t count) {
    for (size_t i = from; i < from + count; ++i) {
      if (value[i] < '0' || value[i] > '9') return false;
    }
    return true;
  };
  return kDays.find(value.substr(0, 4)) % 4 == 0 && kDays.find(value.substr(0, 4)) != std::string::npos &&
         value[4] == ' ' && digits(5, 2) && value[7] == ' ' &&
         kMonths.find(value.substr(8, 4)) != std::string::npos && digits(12, 4) &&
         value[16] == ' ' && digits(17, 2) && value[19] == ':' && digits(20, 2) &&
         value[22] == ':' && digits(23, 2) && value.substr(25) == " GMT";
}

// ---- the agent on tls:// ----

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = MakeKey(dir_, "user_key");
    WriteFile(dir_.File("authorized_keys"), key_.public_line + "\n");
  }

  // `log_dir` holds the agent's log (a restart needs a fresh one: AgentProcess reads the log
  // while the new process may not have truncated it yet); the state stays in dir_.
  void StartAgent(std::vector<std::string> extra = {}, const TempDir* log_dir = nullptr) {
    std::vector<std::string> args = {"--state-dir", dir_.File("state"), "--authorized-keys",
                                     dir_.File("authorized_keys"), "--listen", "tls://127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    agent_ = std::make_unique<AgentProcess>(log_dir != nullptr ? *log_dir : dir_, args);
    const std::string marker = "listening address=tls://127.0.0.1:";
    ASSERT_TRUE(agent_->WaitForLog(marker)) << agent_->Log();
    std::string log = agent_->Log();
    tls_port_ = static_cast<uint16_t>(std::atoi(log.c_str() + log.find(marker) + marker.size()));
    ASSERT_NE(tls_port_, 0);
  }

  std::vector<std::string> SshOverTls() {
    std::vector<std::string> argv = SshArgs(tls_port_, key_);
    argv.insert(argv.end(), {"-o", "ProxyCommand=openssl s_client -quiet -connect 127.0.0.1:%p "
                                   "-servername example.com"});
    return argv;
  }

  // `ssh -N -L` through TLS on a picked port (*local) that ssh itself listens on.
  std::unique_ptr<BackgroundProcess> StartTlsForward(uint16_t* local, uint16_t target,
                                                     const std::string& name) {
    std::string why;
    auto ssh = StartListening(
        [&](uint16_t port) {
          std::vector<std::string> argv = SshOverTls();
          argv.insert(argv.end(), {"-N", "-L",
                                   std::to_string(port) + ":127.0.0.1:" + std::to_string(target),
                                   "127.0.0.1"});
          return argv;
        },
        dir_.path(), name, local, &why, std::chrono::seconds(20));
    EXPECT_NE(ssh, nullptr) << why << agent_->Log();
    return ssh;
  }

  TempDir dir_;
  TestKey key_;
  std::unique_ptr<AgentProcess> agent_;
  uint16_t tls_port_ = 0;
};

// Acceptance 1: stock OpenSSH through TLS moves 64 MiB byte-exact.
TEST_F(TlsTest, OpenSshThroughTlsMoves64MiBByteExact) {
  StartAgent();
  EchoServer echo;
  uint16_t local = 0;
  auto ssh = StartTlsForward(&local, echo.port(), "ssh_tls");
  ASSERT_NE(ssh, nullptr);
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(64 << 20, 7)));
  close(fd);
  EXPECT_THAT(agent_->Log(), HasSubstr("transport=tls"));
}

TEST_F(TlsTest, StdioForwardThroughTlsAndStealthOff) {
  StartAgent({"--stealth", "false"});
  EchoServer echo;
  std::vector<std::string> argv = SshOverTls();
  argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(echo.port()), "127.0.0.1"});
  std::string payload = PatternBytes(4 << 20, 3);
  CommandResult result = RunCommand(argv, payload);
  EXPECT_EQ(result.exit_code, 0) << result.err << agent_->Log();
  EXPECT_TRUE(result.out == payload) << "echoed " << result.out.size() << " bytes";
  // Without stealth the SSH banner comes at once, before the client says anything.
  ProbeResult silent = TlsProbe(tls_port_, {.wait = std::chrono::milliseconds(3000),
                                            .stop_at = "\n"});
  EXPECT_THAT(silent.data, ::testing::StartsWith("SSH-2.0-"));
}

// The `modern` profile's claims (docs/configuration.md, tls.profile), asked of the agent by the
// stock openssl client: TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers only. (The default with
// stealth, `nginx`, offers what nginx offers: tests/interop/tls_profile_test.cc.)
TEST_F(TlsTest, OnlyTls12And13WithEcdheAeadSuitesAreAccepted) {
  StartAgent({"--tls-profile", "modern"});
  auto handshake = [&](std::vector<std::string> options) {
    std::vector<std::string> argv = {"openssl", "s_client", "-connect", Loopback(tls_port_),
                                     "-servername", "example.com"};
    argv.insert(argv.end(), options.begin(), options.end());
    return RunCommand(argv, "", std::chrono::seconds(20));
  };
  CommandResult tls13 = handshake({"-tls1_3"});
  EXPECT_THAT(tls13.out, HasSubstr("New, TLSv1.3, Cipher is TLS_")) << tls13.out << tls13.err;
  CommandResult tls12 = handshake({"-tls1_2"});
  EXPECT_THAT(tls12.out, ::testing::ContainsRegex("New, TLSv1.2, Cipher is ECDHE-[A-Z0-9-]*(GCM|CHACHA20-POLY1305)"))
      << tls12.out << tls12.err;
  // Older versions and non-AEAD (CBC) suites get no session. SECLEVEL=0 lets this client offer them.
  for (const char* old_version : {"-tls1", "-tls1_1"}) {
    CommandResult refused = handshake({old_version, "-cipher", "DEFAULT:@SECLEVEL=0"});
    EXPECT_THAT(refused.out, HasSubstr("Cipher is (NONE)")) << old_version << ": " << refused.out;
  }
  CommandResult cbc = handshake({"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA"});
  EXPECT_THAT(cbc.out, HasSubstr("Cipher is (NONE)")) << cbc.out;
}

TEST_F(TlsTest, GeneratedCertificateIsPrivateLoggedAndServed) {
  StartAgent();
  struct stat st {};
  ASSERT_EQ(stat(dir_.File("state/tls_key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::string fingerprint = FileFingerprint(dir_.File("state/tls_cert.pem"));
  ASSERT_FALSE(fingerprint.empty());
  EXPECT_THAT(agent_->Log(), HasSubstr("generated self-signed certificate"));
  EXPECT_THAT(agent_->Log(), HasSubstr("sha256=" + fingerprint));
  EXPECT_EQ(ServedFingerprint(tls_port_, dir_), fingerprint);
  CommandResult text = RunCommand({"openssl", "x509", "-noout", "-subject", "-ext",
                                   "subjectAltName", "-in", dir_.File("state/tls_cert.pem")});
  EXPECT_THAT(text.out, HasSubstr("CN = 127.0.0.1"));
  EXPECT_THAT(text.out, HasSubstr("IP Address:127.0.0.1"));
  // A restart loads the same pair instead of making a new one.
  agent_.reset();
  TempDir second_log;
  StartAgent({}, &second_log);
  EXPECT_THAT(agent_->Log(), HasSubstr("loaded certificate"));
  EXPECT_EQ(ServedFingerprint(tls_port_, dir_), fingerprint);
}

// Acceptance 3: curl sees nginx's 404, header for header.
TEST_F(TlsTest, CurlGetsTheSame404AsNginx) {
  StartAgent({"--stealth-timeout", "2s"});
  NginxProcess nginx(dir_, {.timeout_seconds = 2});
  if (!nginx.ok()) GTEST_SKIP() << kNoNginx;
  auto curl = [](uint16_t port, std::vector<std::string> extra) {
    std::vector<std::string> argv = {"curl", "-sk", "-i", "--max-time", "10"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("https://127.0.0.1:" + std::to_string(port) + "/");
    return RunCommand(argv);
  };
  struct Variant {
    std::string name;
    std::vector<std::string> args;
  };
  for (const Variant& v :
       {Variant{"GET", {}}, Variant{"HEAD", {"-I"}}, Variant{"http1.0", {"--http1.0"}},
        Variant{"Chrome", {"-A", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, "
                                 "like Gecko) Chrome/120.0.0.0 Safari/537.36"}},
        Variant{"POST", {"-d", "a=b"}}, Variant{"path", {"-H", "X-Probe: 1"}}}) {
    SCOPED_TRACE(v.name);
    CommandResult ours = curl(tls_port_, v.args);
    CommandResult theirs = curl(nginx.port(), v.args);
    ASSERT_EQ(ours.exit_code, 0) << ours.err;
    ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
    EXPECT_THAT(ours.out, ::testing::StartsWith("HTTP/1.1 404 Not Found\r\n"));
    EXPECT_TRUE(HasRfc7231Date(ours.out)) << ours.out;
    // Field by field: status line, each header name/value in order, then the body.
    auto split = [](const std::string& response) {
      std::vector<std::string> lines;
      size_t head_end = response.find("\r\n\r\n");
      std::string head = response.substr(0, head_end);
      for (size_t at = 0; at <= head.size();) {
        size_t eol = head.find("\r\n", at);
        if (eol == std::string::npos) eol = head.size();
        lines.push_back(head.substr(at, eol - at));
        at = eol + 2;
      }
      lines.push_back("<body>" + response.substr(std::min(head_end + 4, response.size())));
      return lines;
    };
    std::vector<std::string> a = split(WithoutDate(ours.out));
    std::vector<std::string> b = split(WithoutDate(theirs.out));
    EXPECT_EQ(a, b);
    EXPECT_THAT(ours.out, Not(HasSubstr("SSH-")));
  }
  // ALPN like nginx: http/1.1 for curl's h2+http/1.1 offer, a fatal alert for h2 alone.
  EXPECT_EQ(TlsProbe(tls_port_, {.wait = std::chrono::milliseconds(100), .alpn = {"h2", "http/1.1"}}).alpn,
            "http/1.1");
  EXPECT_FALSE(TlsProbe(tls_port_, {.alpn = {"h2"}}).handshake_ok);
  EXPECT_FALSE(TlsProbe(nginx.port(), {.alpn = {"h2"}}).handshake_ok);
}

// Acceptance 4: probes get what nginx gives them, never an SSH banner.
TEST_F(TlsTest, ProbesGetNginxsAnswersAndNeverSsh) {
  StartAgent({"--stealth-timeout", "1s"});
  NginxProcess nginx(dir_, {.timeout_seconds = 1});
  std::string random = PatternBytes(300, 11);
  random[0] = '\x9c';  // not a method character, as most random first bytes
  struct Probe {
    std::string name;
    ProbeOptions options;
    std::string expect_start;        // what the answer starts with ("" = no bytes at all)
    ProbeResult::End expect_end;
  };
  const std::string k400 = "HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\n";
  const std::string k404 = "HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\n";
  std::vector<Probe> probes = {
      {"random_bytes", {.writes = {random}}, k400, ProbeResult::End::kCloseNotify},
      {"GE_then_silence", {.writes = {"GE"}}, "", ProbeResult::End::kTcpEof},
      {"ssh1_banner", {.writes = {"SSH-1.5-x\r\n"}}, k400, ProbeResult::End::kCloseNotify},
      {"ssh2_prefix_then_silence", {.writes = {"SSH-2.0-Open"}}, k400, ProbeResult::End::kCloseNotify},
      {"handshake_then_silence", {}, "", ProbeResult::End::kCloseNotify},
      {"immediate_close", {.close_after_handshake = true}, "", ProbeResult::End::kTcpEof},
      {"http_get", {.writes = {"GET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n"}}, k404,
       ProbeResult::End::kCloseNotify},
      {"http_get_close", {.writes = {"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}}, k404,
       ProbeResult::End::kCloseNotify},
      {"keepalive_twice",
       {.writes = {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n"},
        .gap = std::chrono::milliseconds(200)},
       k404, ProbeResult::End::kCloseNotify},
      {"request_then_partial", {.writes = {"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /"}}, k404,
       ProbeResult::End::kTcpEof},
      {"http09", {.writes = {"GET /\r\n"}}, "<html>", ProbeResult::End::kCloseNotify},
      {"h2_preface", {.writes = {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"}}, k400, ProbeResult::End::kCloseNotify},
  };
  for (const Probe& probe : probes) {
    SCOPED_TRACE(probe.name);
    ProbeResult ours = TlsProbe(tls_port_, probe.options);
    ASSERT_TRUE(ours.handshake_ok);
    EXPECT_EQ(ours.data.find("SSH-2.0"), std::string::npos) << ours.data;
    EXPECT_EQ(ours.data.substr(0, probe.expect_start.size()), probe.expect_start) << ours.data;
    if (probe.expect_start.empty()) {
      EXPECT_EQ(ours.data, "");
    }
    EXPECT_EQ(EndName(ours.end), EndName(probe.expect_end));
    if (nginx.ok()) {
      ProbeResult theirs = TlsProbe(nginx.port(), probe.options);
      EXPECT_EQ(WithoutDate(ours.data), WithoutDate(theirs.data));
      EXPECT_EQ(EndName(ours.end), EndName(theirs.end));
    }
  }
  if (!nginx.ok()) GTEST_SKIP() << kNoNginx << " (the fixed expectations above did run)";
}

// The stealth timeout's duration: a client that completes the handshake and says nothing, and
// one idle after its answer (keep-alive), are held at least the configured time, then closed
// with close_notify like nginx. (The probe's clock starts after its handshake or its last
// write, which is before the agent arms its timer, so the lower bound is exact; 30 s is only a
// safety cap against a connection that is never closed.)
TEST_F(TlsTest, StealthTimeoutHoldsSilentAndIdleClientsForTheConfiguredTime) {
  StartAgent({"--stealth-timeout", "3s"});
  ProbeResult silent = TlsProbe(tls_port_, {.wait = std::chrono::seconds(30)});
  ASSERT_TRUE(silent.handshake_ok);
  EXPECT_EQ(silent.data, "");
  EXPECT_EQ(EndName(silent.end), "close_notify");
  EXPECT_GE(silent.seconds, 3.0) << "closed before the configured stealth timeout";

  ProbeResult idle = TlsProbe(tls_port_, {.writes = {"GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
                                          .wait = std::chrono::seconds(30)});
  ASSERT_TRUE(idle.handshake_ok);
  EXPECT_THAT(idle.data, ::testing::StartsWith("HTTP/1.1 404 Not Found\r\n"));
  EXPECT_EQ(EndName(idle.end), "close_notify");
  EXPECT_GE(idle.seconds, 3.0) << "keep-alive closed before the configured stealth timeout";
}

// Acceptance 5: a banner written one byte per TLS record is still SSH.
TEST_F(TlsTest, BannerSplitIntoOneByteWritesIsRecognised) {
  StartAgent({"--stealth-timeout", "5s"});
  ProbeOptions options;
  for (char c : std::string("SSH-2.0-OpenSSH_9.2\r\n")) options.writes.push_back(std::string(1, c));
  options.gap = std::chrono::milliseconds(20);
  options.wait = std::chrono::milliseconds(5000);
  options.stop_at = "\n";
  ProbeResult result = TlsProbe(tls_port_, options);
  ASSERT_TRUE(result.handshake_ok);
  EXPECT_THAT(result.data, ::testing::StartsWith("SSH-2.0-"));
  EXPECT_THAT(result.data, Not(HasSubstr("HTTP/1.1")));
}

// Acceptance 6: new certificate files are served to new connections; open sessions go on.
TEST_F(TlsTest, ReplacedCertificateIsServedWhileOpenSessionKeepsForwarding) {
  MakeCertificate(dir_.File("cert.pem"), dir_.File("key.pem"), "first.example");
  StartAgent({"--tls-cert", dir_.File("cert.pem"), "--tls-key", dir_.File("key.pem")});
  std::string first = FileFingerprint(dir_.File("cert.pem"));
  EXPECT_EQ(ServedFingerprint(tls_port_, dir_), first);

  EchoServer echo;
  uint16_t local = 0;
  auto ssh = StartTlsForward(&local, echo.port(), "ssh_tls_reload");
  ASSERT_NE(ssh, nullptr);
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 21)));
  close(fd);

  // A broken file is refused; the old certificate stays.
  WriteFile(dir_.File("cert.pem"), "-----BEGIN CERTIFICATE-----\nnot base64\n", 0644);
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  EXPECT_EQ(ServedFingerprint(tls_port_, dir_), first);
  EXPECT_TRUE(agent_->WaitForLog("certificate reload failed")) << agent_->Log();

  // A new pair, written next to the old one and renamed over it.
  MakeCertificate(dir_.File("cert.new"), dir_.File("key.new"), "second.example");
  std::string second = FileFingerprint(dir_.File("cert.new"));
  ASSERT_NE(second, first);
  ASSERT_EQ(rename(dir_.File("key.new").c_str(), dir_.File("key.pem").c_str()), 0);
  ASSERT_EQ(rename(dir_.File("cert.new").c_str(), dir_.File("cert.pem").c_str()), 0);
  std::string served;
  auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline && (served = ServedFingerprint(tls_port_, dir_)) != second) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_EQ(served, second);
  EXPECT_TRUE(agent_->WaitForLog("reloaded certificate")) << agent_->Log();

  // The session opened under the first certificate still forwards.
  fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(8 << 20, 22)));
  close(fd);
  EXPECT_TRUE(ssh->running());
}

TEST_F(TlsTest, StealthBackendGetsTheNonSshTraffic) {
  HttpServer backend("from the real web server\n");
  StartAgent({"--stealth-backend", "http://127.0.0.1:" + std::to_string(backend.port())});
  CommandResult curl = RunCommand({"curl", "-sk", "--max-time", "10",
                                   "https://127.0.0.1:" + std::to_string(tls_port_) + "/index.html"});
  EXPECT_EQ(curl.exit_code, 0) << curl.err << agent_->Log();
  EXPECT_EQ(curl.out, "from the real web server\n");
  // SSH still works next to it.
  EchoServer echo;
  std::vector<std::string> argv = SshOverTls();
  argv.insert(argv.end(), {"-W", "127.0.0.1:" + std::to_string(echo.port()), "127.0.0.1"});
  CommandResult result = RunCommand(argv, "ping through tls\n");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "ping through tls\n");
}

TEST_F(TlsTest, StartupErrorsNameTheFileOrFlag) {
  WriteFile(dir_.File("bad.pem"), "this is not PEM\n", 0644);
  MakeCertificate(dir_.File("cert.pem"), dir_.File("key.pem"), "x");
  CommandResult bad = RunCommand({ALKNET_AGENT_BINARY, "--state-dir", dir_.File("state"),
                                  "--listen", "tls://127.0.0.1:0", "--metrics-listen", "off",
                                  "--tls-cert", dir_.File("bad.pem"), "--tls-key",
                                  dir_.File("key.pem")},
                                 "", std::chrono::seconds(20));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr(dir_.File("bad.pem")));

  CommandResult stealth = RunCommand({ALKNET_AGENT_BINARY, "--state-dir", dir_.File("state"),
                                      "--listen", "tcp://127.0.0.1:0", "--stealth", "true"},
                                     "", std::chrono::seconds(20));
  EXPECT_EQ(stealth.exit_code, 2);
  EXPECT_THAT(stealth.err, HasSubstr("--stealth"));
  EXPECT_THAT(stealth.err, HasSubstr("tls://"));
}

}  // namespace
}  // namespace alknet::testing
