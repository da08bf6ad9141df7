// OpenSSH user certificates against the real agent with the stock client: `ssh -i userkey` offers
// userkey-cert.pub made by `ssh-keygen -s`. The acceptance table of issue 3: a trusted
// certificate logs in and forwards; every kind of bad certificate is refused with its reason on
// the auth line; permit-port-forwarding gates forwarding; KRLs from `ssh-keygen -k` revoke
// serials and keys (and reload without a restart); Ed25519, RSA and ECDSA CAs; cert-authority
// lines in authorized_keys with principals= and their options.
#include <signal.h>
#include <unistd.h>

#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

class CertificateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = MakeKey(dir_, "ca");
    user_ = MakeKey(dir_, "user");
  }

  // A CA key of any type ("ed25519", "rsa", "ecdsa" with -b bits).
  TestKey MakeCa(const std::string& name, const std::string& type, const std::string& bits = "") {
    if (bits.empty()) return MakeKey(dir_, name, type);
    TestKey key;
    key.private_path = dir_.File(name);
    CommandResult made = RunCommand({"ssh-keygen", "-q", "-t", type, "-b", bits, "-N", "", "-f", key.private_path});
    EXPECT_EQ(made.exit_code, 0) << made.err;
    key.public_line = ReadFile(key.private_path + ".pub");
    while (!key.public_line.empty() && key.public_line.back() == '\n') key.public_line.pop_back();
    return key;
  }

  // ssh-keygen -s <ca> -I <id> <args> user.pub: writes user-cert.pub, which ssh picks up.
  void Sign(const TestKey& ca, const TestKey& user, std::vector<std::string> args,
            const std::string& id = "alice laptop") {
    std::vector<std::string> argv = {"ssh-keygen", "-q", "-s", ca.private_path, "-I", id};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(user.private_path + ".pub");
    CommandResult made = RunCommand(argv);
    ASSERT_EQ(made.exit_code, 0) << made.err;
  }

  // The agent trusting `trusted_cas` (written to a trusted_user_ca_keys file) and the given
  // authorized_keys text; the user's plain key is never authorized, so only its certificate can
  // log in.
  void StartAgent(const std::vector<TestKey>& trusted_cas, const std::string& authorized_keys = "",
                  std::vector<std::string> extra = {}) {
    WriteFile(dir_.File("authorized_keys"), authorized_keys);
    extra.insert(extra.end(), {"--authorized-keys", dir_.File("authorized_keys")});
    if (!trusted_cas.empty()) {
      std::string text;
      for (const TestKey& ca : trusted_cas) text += ca.public_line + "\n";
      WriteFile(dir_.File("trusted_cas"), text);
      extra.insert(extra.end(), {"--trusted-user-ca-keys", dir_.File("trusted_cas")});
    }
    agent_ = std::make_unique<AgentProcess>(dir_, extra);
    ASSERT_NE(agent_->port(), 0);
  }

  // ssh -W to the echo server (or `destination`): exit code and stderr show auth and channel.
  CommandResult EchoThrough(const TestKey& key, const std::string& destination = "",
                            std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = SshArgs(agent_->port(), key);
    for (std::string& arg : argv) {
      if (arg == "LogLevel=ERROR") arg = "LogLevel=INFO";
      if (!agent_socket_.empty() && arg == "IdentityAgent=none") arg = "IdentityAgent=" + agent_socket_;
      if (!agent_socket_.empty() && arg == "IdentitiesOnly=yes") arg = "IdentitiesOnly=no";
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), {"-W", destination.empty() ? "127.0.0.1:" + std::to_string(echo_.port())
                                                       : destination,
                             "127.0.0.1"});
    return RunCommand(argv, "ping\n");
  }

  // A certificate refused: ssh fails and the auth line names the reason and the certificate.
  void ExpectRefused(const std::string& reason, std::vector<std::string> ssh_extra = {}) {
    const int connections_before = echo_.connections();
    CommandResult result = EchoThrough(user_, "", ssh_extra);
    EXPECT_EQ(result.exit_code, 255) << result.err;
    EXPECT_THAT(result.err, HasSubstr("Permission denied (publickey)"));
    EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=" + reason + " method=publickey"))
        << agent_->Log();
    EXPECT_THAT(agent_->Log(),
                ContainsRegex("WARN auth: result=rejected reason=" + reason +
                              " method=publickey user=tester src=127\\.0\\.0\\.[12] port=[0-9]+ "
                              "transport=tcp key=" + Escaped(user_.fingerprint) +
                              " key_type=ssh-ed25519-cert-v01@openssh\\.com cert_id=\"alice laptop\" "
                              "serial=[0-9]+ ca=SHA256:"));
    EXPECT_EQ(echo_.connections(), connections_before);
  }

  static std::string Escaped(const std::string& text) {
    std::string out;
    for (char c : text) {
      if (std::string_view("+/.").find(c) != std::string_view::npos) out += '\\';
      out += c;
    }
    return out;
  }

  std::string MetricsUrl() const {
    const std::string marker = "metrics: listening address=";
    const std::string log = agent_->Log();
    size_t at = log.find(marker);
    if (at == std::string::npos) return "";
    at += marker.size();
    return log.substr(at, log.find_first_of(" \n", at) - at);
  }

  // How many "... channel refused ... reason=<reason>" lines the log has.
  int CountInLog(const std::string& needle) const {
    return CountOccurrences(agent_->Log(), needle);
  }

  // Loads `key` and its certificate into a fresh ssh-agent that ssh then uses (the stock client
  // offers a host certificate only from an agent: from a file it skips it itself).
  void UseSshAgentWith(const TestKey& key) {
    agent_socket_ = dir_.File("ssh-agent.sock");
    ssh_agent_ = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{"ssh-agent", "-D", "-a", agent_socket_}, dir_.path(), "ssh_agent");
    for (int i = 0; i < 200 && access(agent_socket_.c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CommandResult added = RunCommand({"env", "SSH_AUTH_SOCK=" + agent_socket_, "ssh-add", key.private_path});
    ASSERT_EQ(added.exit_code, 0) << added.err;
    ASSERT_THAT(added.err, HasSubstr("Certificate added"));
  }

  TempDir dir_;
  std::string agent_socket_;
  std::unique_ptr<BackgroundProcess> ssh_agent_;
  EchoServer echo_;
  TestKey ca_;
  TestKey user_;
  std::unique_ptr<AgentProcess> agent_;
};

// ---- (1) a trusted certificate logs in and forwards ----

TEST_F(CertificateTest, TrustedCaCertificateLogsInAndForwards) {
  Sign(ca_, user_, {"-n", "tester", "-z", "42", "-V", "-5m:+1h"});
  StartAgent({ca_});
  CommandResult result = EchoThrough(user_);
  EXPECT_EQ(result.exit_code, 0) << result.err << agent_->Log();
  EXPECT_EQ(result.out, "ping\n");
  EXPECT_EQ(echo_.connections(), 1);
  EXPECT_THAT(agent_->Log(),
              ContainsRegex("INFO auth: result=accepted method=publickey user=tester src=127\\.0\\.0\\.1 "
                            "port=[0-9]+ transport=tcp key=" + Escaped(user_.fingerprint) +
                            " key_type=ssh-ed25519-cert-v01@openssh\\.com cert_id=\"alice laptop\" "
                            "serial=42 ca=" + Escaped(ca_.fingerprint) + "\n"));
  EXPECT_THAT(agent_->Log(), HasSubstr("loaded trusted CA keys count=1"));
}

// ---- (2) refusals, each with its reason ----

TEST_F(CertificateTest, ExpiredCertificateIsRefused) {
  Sign(ca_, user_, {"-n", "tester", "-V", "20200101:20200201"});
  StartAgent({ca_});
  ExpectRefused("cert-expired");
}

TEST_F(CertificateTest, NotYetValidCertificateIsRefused) {
  Sign(ca_, user_, {"-n", "tester", "-V", "+1d:+2d"});
  StartAgent({ca_});
  ExpectRefused("cert-not-yet-valid");
}

TEST_F(CertificateTest, WrongPrincipalIsRefused) {
  Sign(ca_, user_, {"-n", "alice,bob"});
  StartAgent({ca_});
  ExpectRefused("cert-wrong-principal");
}

TEST_F(CertificateTest, CertificateWithoutPrincipalsIsRefused) {
  Sign(ca_, user_, {});
  StartAgent({ca_});
  ExpectRefused("cert-wrong-principal");
}

TEST_F(CertificateTest, UntrustedCaIsRefused) {
  TestKey other = MakeKey(dir_, "other_ca");
  Sign(other, user_, {"-n", "tester"});
  StartAgent({ca_});
  ExpectRefused("cert-untrusted-ca");
}

TEST_F(CertificateTest, HostCertificateIsRefused) {
  Sign(ca_, user_, {"-h", "-n", "tester"});
  UseSshAgentWith(user_);
  StartAgent({ca_});
  ExpectRefused("cert-not-user");
}

TEST_F(CertificateTest, UnknownCriticalOptionIsRefused) {
  Sign(ca_, user_, {"-n", "tester", "-O", "critical:foo=bar"});
  StartAgent({ca_});
  ExpectRefused("cert-unknown-critical-option");
}

TEST_F(CertificateTest, ForceCommandIsAcceptedAndNeverRun) {
  Sign(ca_, user_, {"-n", "tester", "-O", "force-command=/bin/echo forced"});
  StartAgent({ca_});
  CommandResult result = EchoThrough(user_);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "ping\n");
}

TEST_F(CertificateTest, SourceAddressIsEnforced) {
  Sign(ca_, user_, {"-n", "tester", "-O", "source-address=127.0.0.1/32"});
  StartAgent({ca_});
  ExpectRefused("cert-source-address", {"-b", "127.0.0.2"});
  CommandResult from_listed = EchoThrough(user_);
  EXPECT_EQ(from_listed.exit_code, 0) << from_listed.err;
  EXPECT_EQ(from_listed.out, "ping\n");
}

TEST_F(CertificateTest, WithoutPermitPortForwardingLoginWorksButForwardingIsRefused) {
  Sign(ca_, user_, {"-n", "tester", "-O", "clear", "-O", "permit-pty", "-O", "permit-agent-forwarding",
                    "-O", "permit-X11-forwarding", "-O", "permit-user-rc"});
  StartAgent({ca_});
  CommandResult result = EchoThrough(user_);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("open failed"));
  EXPECT_THAT(agent_->Log(), HasSubstr("result=accepted method=publickey user=tester"));
  EXPECT_TRUE(agent_->WaitForLog("reason=certificate-no-port-forwarding"));
  EXPECT_EQ(echo_.connections(), 0);
  CommandResult metrics = RunCommand({"curl", "-sS", "--max-time", "10", MetricsUrl() + "/metrics"});
  EXPECT_THAT(metrics.out,
              ContainsRegex("alknet_rejections_total\\{reason=\"port_forwarding_disabled\"\\} 1(\\.0)?\n"))
      << metrics.err;
}

TEST_F(CertificateTest, RevokedSerialInKrlIsRefused) {
  WriteFile(dir_.File("spec"), "serial: 42\nserial: 100-200\n");
  ASSERT_EQ(RunCommand({"ssh-keygen", "-q", "-k", "-f", dir_.File("krl"), "-s", ca_.private_path + ".pub",
                        dir_.File("spec")})
                .exit_code,
            0);
  Sign(ca_, user_, {"-n", "tester", "-z", "42"});
  StartAgent({ca_}, "", {"--revoked-keys", dir_.File("krl")});
  ExpectRefused("cert-revoked");
  EXPECT_THAT(agent_->Log(), HasSubstr("serial=42 ca="));
  Sign(ca_, user_, {"-n", "tester", "-z", "43"});
  EXPECT_EQ(EchoThrough(user_).out, "ping\n");
}

TEST_F(CertificateTest, RevokedKeyInKrlIsRefusedForCertificateAndPlainKey) {
  TestKey plain = MakeKey(dir_, "plain");
  ASSERT_EQ(RunCommand({"ssh-keygen", "-q", "-k", "-f", dir_.File("krl"), user_.private_path + ".pub",
                        plain.private_path + ".pub"})
                .exit_code,
            0);
  Sign(ca_, user_, {"-n", "tester"});
  StartAgent({ca_}, plain.public_line + "\n", {"--revoked-keys", dir_.File("krl")});
  ExpectRefused("cert-revoked");
  CommandResult result = EchoThrough(plain);
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=key-revoked-krl method=publickey user=tester"));
  EXPECT_THAT(agent_->Log(), HasSubstr("key=" + plain.fingerprint));
}

TEST_F(CertificateTest, KrlChangesApplyWithoutRestartAndBadUpdatesKeepThePreviousList) {
  ASSERT_EQ(RunCommand({"ssh-keygen", "-q", "-k", "-f", dir_.File("krl")}).exit_code, 0);
  Sign(ca_, user_, {"-n", "tester", "-z", "7"});
  StartAgent({ca_}, "", {"--revoked-keys", dir_.File("krl")});
  EXPECT_EQ(EchoThrough(user_).out, "ping\n");
  // A session that stays up across the change.
  uint16_t local = 0;
  auto session = StartLocalForward(agent_->port(), user_, echo_.port(), dir_.path(), "ssh_session", &local);
  ASSERT_NE(session, nullptr);
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, "before"));
  close(fd);

  WriteFile(dir_.File("spec"), "serial: 7\n");
  ASSERT_EQ(RunCommand({"ssh-keygen", "-q", "-k", "-u", "-f", dir_.File("krl"), "-s", ca_.private_path + ".pub",
                        dir_.File("spec")})
                .exit_code,
            0);
  // Picked up within about a second, without SIGHUP.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (CountInLog("loaded revoked keys") < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(CountInLog("loaded revoked keys"), 2) << agent_->Log();
  ExpectRefused("cert-revoked");
  // The live session opens nothing more.
  fd = ConnectTcp(local);
  if (fd >= 0) {
    EXPECT_FALSE(EchoRoundTrip(fd, "after"));
    close(fd);
  }
  EXPECT_TRUE(agent_->WaitForLog("channel refused"));
  EXPECT_THAT(agent_->Log(), ContainsRegex("channel refused .*reason=cert-revoked"));

  // A broken KRL: error logged once, the previous list stays in force.
  WriteFile(dir_.File("krl"), std::string("SSHKRL\n\0garbage", 15));
  EXPECT_TRUE(agent_->WaitForLog("cannot reload revoked keys; keeping the previous list"));
  EXPECT_THAT(agent_->Log(), HasSubstr(dir_.File("krl")));
  CommandResult still_refused = EchoThrough(user_);
  EXPECT_EQ(still_refused.exit_code, 255);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(CountInLog("cannot reload revoked keys"), 1);
}

TEST_F(CertificateTest, MalformedRevocationFileRefusesToStart) {
  WriteFile(dir_.File("revoked"), "this is not a key\n");
  CommandResult result = RunCommand({ALKNET_AGENT_BINARY, "--state-dir", dir_.File("state"), "--listen",
                                     "tcp://127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--revoked-keys",
                                     dir_.File("revoked")},
                                    "", std::chrono::seconds(20));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("startup failed"));
  EXPECT_THAT(result.err, HasSubstr(dir_.File("revoked") + ":1:"));
  EXPECT_THAT(result.err, Not(HasSubstr("listening address=tcp")));
  // A missing file too (fail closed).
  CommandResult missing = RunCommand({ALKNET_AGENT_BINARY, "--state-dir", dir_.File("state"), "--listen",
                                      "tcp://127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                      "--revoked-keys", dir_.File("absent.krl")},
                                     "", std::chrono::seconds(20));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr(dir_.File("absent.krl")));
}

// ---- (3) every CA type; cert-authority lines ----

TEST_F(CertificateTest, Ed25519RsaAndEcdsaCasAllWork) {
  std::vector<TestKey> cas = {ca_, MakeCa("ca_rsa", "rsa", "3072"), MakeCa("ca_p256", "ecdsa", "256"),
                              MakeCa("ca_p384", "ecdsa", "384"), MakeCa("ca_p521", "ecdsa", "521")};
  std::vector<TestKey> users;
  for (size_t i = 0; i < cas.size(); ++i) {
    users.push_back(MakeKey(dir_, "user" + std::to_string(i)));
    Sign(cas[i], users[i], {"-n", "tester", "-z", std::to_string(i + 1)});
  }
  StartAgent(cas);
  for (size_t i = 0; i < cas.size(); ++i) {
    CommandResult result = EchoThrough(users[i]);
    EXPECT_EQ(result.out, "ping\n") << cas[i].private_path << ": " << result.err;
  }
  const std::vector<std::string> algorithms = {"ssh-ed25519", "rsa-sha2-512", "ecdsa-sha2-nistp256",
                                               "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"};
  for (size_t i = 0; i < cas.size(); ++i) {
    CommandResult listed = RunCommand({"ssh-keygen", "-L", "-f", users[i].private_path + "-cert.pub"});
    EXPECT_THAT(listed.out, HasSubstr("(using " + algorithms[i] + ")"));
    EXPECT_THAT(agent_->Log(), HasSubstr("serial=" + std::to_string(i + 1) + " ca=" + cas[i].fingerprint));
  }
  EXPECT_EQ(echo_.connections(), static_cast<int>(cas.size()));
}

TEST_F(CertificateTest, RsaCaSigningWithSha1IsRefused) {
  TestKey rsa_ca = MakeCa("ca_rsa", "rsa", "2048");
  Sign(rsa_ca, user_, {"-t", "ssh-rsa", "-n", "tester"});
  StartAgent({rsa_ca});
  ExpectRefused("cert-invalid");
}

TEST_F(CertificateTest, CertAuthorityLineWithPrincipals) {
  StartAgent({}, "cert-authority,principals=\"ops,admins\" " + ca_.public_line + "\n");
  Sign(ca_, user_, {"-n", "ops"});
  CommandResult result = EchoThrough(user_);
  EXPECT_EQ(result.exit_code, 0) << result.err << agent_->Log();
  EXPECT_EQ(result.out, "ping\n");
  Sign(ca_, user_, {"-n", "tester"});  // the user name alone does not do on this line
  ExpectRefused("cert-wrong-principal");
}

TEST_F(CertificateTest, CertAuthorityLineWithoutPrincipalsWantsTheUserName) {
  StartAgent({}, "cert-authority " + ca_.public_line + "\n");
  Sign(ca_, user_, {"-n", "tester"});
  EXPECT_EQ(EchoThrough(user_).out, "ping\n");
  Sign(ca_, user_, {"-n", "ops"});
  ExpectRefused("cert-wrong-principal");
}

TEST_F(CertificateTest, CertAuthorityLineOptionsApplyToItsSessions) {
  EchoServer other;
  StartAgent({}, "cert-authority,permitopen=\"127.0.0.1:" + std::to_string(echo_.port()) + "\" " +
                     ca_.public_line + "\n");
  Sign(ca_, user_, {"-n", "tester"});
  EXPECT_EQ(EchoThrough(user_).out, "ping\n");
  CommandResult refused = EchoThrough(user_, "127.0.0.1:" + std::to_string(other.port()));
  EXPECT_THAT(refused.err, HasSubstr("open failed"));
  EXPECT_TRUE(agent_->WaitForLog("reason=permitopen-mismatch"));
  EXPECT_EQ(other.connections(), 0);
}

TEST_F(CertificateTest, CertAuthorityLineRestrictAndFrom) {
  TestKey second_ca = MakeKey(dir_, "ca2");
  TestKey second_user = MakeKey(dir_, "user2");
  StartAgent({}, "restrict,cert-authority " + ca_.public_line + "\n" + "cert-authority,from=\"10.0.0.0/8\" " +
                     second_ca.public_line + "\n");
  Sign(ca_, user_, {"-n", "tester"});
  CommandResult restricted = EchoThrough(user_);
  EXPECT_THAT(restricted.err, HasSubstr("open failed"));
  EXPECT_TRUE(agent_->WaitForLog("reason=port-forwarding-disabled"));
  Sign(second_ca, second_user, {"-n", "tester"}, "second");
  CommandResult from = EchoThrough(second_user);
  EXPECT_EQ(from.exit_code, 255);
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=from-mismatch"));
}

TEST_F(CertificateTest, TrustedCaFileAndCertAuthorityLineTogether) {
  TestKey line_ca = MakeKey(dir_, "line_ca");
  TestKey second_user = MakeKey(dir_, "user2");
  StartAgent({ca_}, "cert-authority,principals=\"ops\" " + line_ca.public_line + "\n");
  Sign(ca_, user_, {"-n", "tester"});
  Sign(line_ca, second_user, {"-n", "ops"}, "second");
  EXPECT_EQ(EchoThrough(user_).out, "ping\n");
  EXPECT_EQ(EchoThrough(second_user).out, "ping\n");
}

TEST_F(CertificateTest, SighupRemovingTheCaStopsNewChannelsOfLiveSessions) {
  Sign(ca_, user_, {"-n", "tester"});
  StartAgent({ca_});
  uint16_t local = 0;
  auto session = StartLocalForward(agent_->port(), user_, echo_.port(), dir_.path(), "ssh_session", &local);
  ASSERT_NE(session, nullptr);
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 16, 5)));
  close(fd);
  const int connections_before = echo_.connections();
  WriteFile(dir_.File("trusted_cas"), "");
  agent_->process().Signal(SIGHUP);
  ASSERT_TRUE(agent_->WaitForLog("loaded trusted CA keys count=0"));
  fd = ConnectTcp(local);
  if (fd >= 0) {
    EXPECT_FALSE(EchoRoundTrip(fd, "after"));
    close(fd);
  }
  EXPECT_TRUE(agent_->WaitForLog("reason=cert-untrusted-ca"));
  EXPECT_THAT(agent_->Log(), ContainsRegex("channel refused .*reason=cert-untrusted-ca"));
  EXPECT_TRUE(session->running());  // the session itself stays up
  EXPECT_EQ(echo_.connections(), connections_before);
}

}  // namespace
}  // namespace alknet::testing
