// Authentication against the real agent with the stock OpenSSH client: accepted keys, refusals
// with their fail2ban-friendly log lines, key options, and what is never offered or allowed.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"
#include "tests/unit/json_check.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"

namespace alknet::testing {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

class AuthTest : public ::testing::Test {
 protected:
  void StartAgent(const std::string& authorized_keys, std::vector<std::string> extra = {}) {
    WriteFile(dir_.File("authorized_keys"), authorized_keys);
    extra.insert(extra.end(), {"--authorized-keys", dir_.File("authorized_keys")});
    agent_ = std::make_unique<AgentProcess>(dir_, extra);
    ASSERT_NE(agent_->port(), 0);
  }

  // ssh -W to the echo server: exit code and stderr tell whether auth and the channel worked.
  CommandResult EchoThrough(const TestKey& key, const std::string& destination = "",
                            std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = SshArgs(agent_->port(), key);
    for (std::string& arg : argv) {
      if (arg == "LogLevel=ERROR") arg = "LogLevel=INFO";
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), {"-W", destination.empty() ? "127.0.0.1:" + std::to_string(echo_.port())
                                                       : destination,
                             "127.0.0.1"});
    return RunCommand(argv, "ping\n");
  }

  TempDir dir_;
  EchoServer echo_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(AuthTest, AuthorizedKeyIsAcceptedAndLoggedOnOneLine) {
  TestKey key = MakeKey(dir_, "good");
  StartAgent(key.public_line + "\n");
  CommandResult result = EchoThrough(key);
  EXPECT_EQ(result.exit_code, 0) << result.err << agent_->Log();
  EXPECT_EQ(result.out, "ping\n");
  EXPECT_THAT(agent_->Log(),
              ContainsRegex("INFO auth: result=accepted method=publickey user=tester "
                            "src=127\\.0\\.0\\.1 port=[0-9]+ transport=tcp key=SHA256:"));
  EXPECT_THAT(agent_->Log(), HasSubstr("key=" + key.fingerprint + " key_type=ssh-ed25519"));
}

TEST_F(AuthTest, RsaAndEcdsaUserKeysWork) {
  TestKey rsa = MakeKey(dir_, "rsa_key", "rsa");
  TestKey ecdsa = MakeKey(dir_, "ecdsa_key", "ecdsa");
  StartAgent(rsa.public_line + "\n" + ecdsa.public_line + "\n");
  EXPECT_EQ(EchoThrough(rsa).out, "ping\n");
  EXPECT_EQ(EchoThrough(ecdsa).out, "ping\n");
}

TEST_F(AuthTest, UnknownKeyIsRefusedWithFail2banLine) {
  TestKey known = MakeKey(dir_, "known");
  TestKey stranger = MakeKey(dir_, "stranger");
  StartAgent(known.public_line + "\n");
  CommandResult result = EchoThrough(stranger);
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_THAT(result.err, HasSubstr("Permission denied (publickey)"));
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=unknown-key"));
  // The documented fail2ban failregex matches it.
  EXPECT_THAT(agent_->Log(), ContainsRegex("auth: result=rejected .* src=127\\.0\\.0\\.1 port=[0-9]+"));
  EXPECT_THAT(agent_->Log(), HasSubstr("key=" + stranger.fingerprint));
}

// The shipped fail2ban filter (deploy/fail2ban/filter.d/alknet.conf) through Debian's own
// fail2ban-regex over a real agent's log: every rejected authentication (unknown key, from
// 127.0.0.5) is matched with that source, no accepted one (from 127.0.0.6) and no other line is.
TEST_F(AuthTest, Fail2banFilterMatchesEveryRejectedAuthAndNoAcceptedOne) {
  if (!HaveProgram("fail2ban-regex")) {
    GTEST_SKIP() << "fail2ban-regex not installed (scripts/install-deps.sh --test installs fail2ban)";
  }
  TestKey known = MakeKey(dir_, "known");
  TestKey stranger = MakeKey(dir_, "stranger");
  StartAgent(known.public_line + "\n");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(EchoThrough(stranger, "", {"-b", "127.0.0.5"}).exit_code, 255);
    EXPECT_EQ(EchoThrough(known, "", {"-b", "127.0.0.6"}).out, "ping\n");
  }
  // Every auth line is in the log before it is handed to fail2ban-regex.
  auto count = CountOccurrences;
  for (int i = 0; i < 100 && count(agent_->Log(), "auth: result=accepted") < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string log = agent_->Log();
  std::vector<std::string> rejected;
  int accepted = 0;
  for (size_t at = 0; at < log.size();) {
    size_t eol = log.find('\n', at);
    if (eol == std::string::npos) eol = log.size();
    std::string line = log.substr(at, eol - at);
    if (line.find(" auth: result=rejected ") != std::string::npos) rejected.push_back(line);
    if (line.find(" auth: result=accepted ") != std::string::npos) ++accepted;
    at = eol + 1;
  }
  ASSERT_GE(rejected.size(), 3u) << log;
  ASSERT_EQ(accepted, 3) << log;
  WriteFile(dir_.File("agent.log"), log);
  const std::string filter = std::string(ALKNET_SOURCE_DIR) + "/deploy/fail2ban/filter.d/alknet.conf";
  // -o msg prints each matched line, -o ip the host the filter took from it.
  CommandResult lines = RunCommand({"fail2ban-regex", "-o", "msg", dir_.File("agent.log"), filter});
  ASSERT_EQ(lines.exit_code, 0) << lines.err << lines.out;
  std::vector<std::string> matched = absl::StrSplit(lines.out, '\n', absl::SkipEmpty());
  EXPECT_THAT(matched, ::testing::UnorderedElementsAreArray(rejected)) << log;
  CommandResult hosts = RunCommand({"fail2ban-regex", "-o", "ip", dir_.File("agent.log"), filter});
  ASSERT_EQ(hosts.exit_code, 0) << hosts.err << hosts.out;
  std::vector<std::string> banned = absl::StrSplit(hosts.out, '\n', absl::SkipEmpty());
  EXPECT_THAT(banned, ::testing::Each(std::string("127.0.0.5"))) << hosts.out;
  EXPECT_EQ(banned.size(), rejected.size()) << hosts.out;
}

// Security round, item 5: a client sends a huge user name (the stock ssh client, ~60 KiB)
// before authenticating; the agent's auth line keeps the first 100 characters, in text and in
// JSON (where the line stays valid JSON and each field is written once).
TEST_F(AuthTest, Item5LogFloodHugeUserNameKeepsTheAuthLineBounded) {
  TestKey known = MakeKey(dir_, "known");
  TestKey stranger = MakeKey(dir_, "stranger");
  const std::string huge_user = "x" + std::string(60000, 'u');
  for (const std::string format : {"text", "json"}) {
    agent_.reset();  // one agent at a time on this directory
    StartAgent(known.public_line + "\n", {"--log-format", format});
    std::vector<std::string> argv = SshArgs(agent_->port(), stranger);
    ASSERT_EQ(argv[argv.size() - 2], "-l");
    argv.back() = huge_user;
    argv.insert(argv.end(), {"-W", "127.0.0.1:1", "127.0.0.1"});
    CommandResult result = RunCommand(argv);
    EXPECT_EQ(result.exit_code, 255) << result.err;
    ASSERT_TRUE(agent_->WaitForLog("unknown-key")) << agent_->Log().substr(0, 4000);
    const std::string log = agent_->Log();
    size_t at = log.find("unknown-key");
    size_t begin = log.rfind('\n', at);
    begin = begin == std::string::npos ? 0 : begin + 1;
    const std::string line = log.substr(begin, log.find('\n', at) + 1 - begin);
    EXPECT_LT(line.size(), 1000u) << format;
    EXPECT_THAT(line, HasSubstr("x" + std::string(99, 'u') + "...")) << format;
    EXPECT_THAT(line, Not(HasSubstr(std::string(100, 'u')))) << format;
    EXPECT_LT(log.size(), 30000u) << format;  // the whole log: nothing repeats the name in full
    if (format == "json") {
      EXPECT_TRUE(test_json::IsFlatJsonObjectLine(line)) << line;
    }
  }
}

// An OpenSSH private key file for a FIDO key (sk-ssh-ed25519@openssh.com) that no token backs:
// enough for the stock ssh client to offer its public key (the probe needs no token).
// Returns the public key line.
std::string WriteSkEd25519KeyFile(const std::string& path) {
  auto put_u32 = [](std::string& out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
  };
  auto put_string = [&](std::string& out, std::string_view s) {
    put_u32(out, static_cast<uint32_t>(s.size()));
    out.append(s);
  };
  const std::string type = "sk-ssh-ed25519@openssh.com";
  std::string point(32, '\0');
  for (size_t i = 0; i < point.size(); ++i) point[i] = static_cast<char>(0x40 + i);
  std::string public_blob;
  put_string(public_blob, type);
  put_string(public_blob, point);
  put_string(public_blob, "ssh:");
  std::string secret;
  put_u32(secret, 0x12345678);
  put_u32(secret, 0x12345678);
  put_string(secret, type);
  put_string(secret, point);
  put_string(secret, "ssh:");
  secret += static_cast<char>(0x01);  // flags: user presence required
  put_string(secret, std::string(64, 'h'));  // key handle
  put_string(secret, "");                    // reserved
  put_string(secret, "fido-test");
  for (char pad = 1; secret.size() % 8 != 0; ++pad) secret += pad;
  std::string file = std::string("openssh-key-v1") + '\0';
  put_string(file, "none");
  put_string(file, "none");
  put_string(file, "");
  put_u32(file, 1);
  put_string(file, public_blob);
  put_string(file, secret);
  std::string base64 = absl::Base64Escape(file);
  std::string pem = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
  for (size_t i = 0; i < base64.size(); i += 70) pem += base64.substr(i, 70) + "\n";
  pem += "-----END OPENSSH PRIVATE KEY-----\n";
  WriteFile(path, pem);
  chmod(path.c_str(), 0600);
  const std::string line = type + " " + absl::Base64Escape(public_blob) + " fido-test";
  WriteFile(path + ".pub", line + "\n");
  return line;
}

// Security round, item 10: libssh 0.10 does not give the server a FIDO signature's flags, so
// user presence cannot be checked: sk keys are refused with a clear reason, even when listed.
TEST_F(AuthTest, Item10FidoSkKeyIsRefusedWithAClearReason) {
  TestKey sk;
  sk.private_path = dir_.File("id_ed25519_sk");
  sk.public_line = WriteSkEd25519KeyFile(sk.private_path);
  StartAgent(sk.public_line + "\n");
  CommandResult result = EchoThrough(sk);
  EXPECT_EQ(result.exit_code, 255) << result.err;
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=sk-key-unsupported method=publickey"))
      << agent_->Log() << result.err;
  EXPECT_THAT(agent_->Log(), HasSubstr("key_type=sk-ssh-ed25519@openssh.com"));
  EXPECT_THAT(agent_->Log(), Not(HasSubstr("result=accepted")));
}

TEST_F(AuthTest, ExpiredKeyIsRefused) {
  TestKey key = MakeKey(dir_, "old");
  StartAgent("expiry-time=\"20200101\" " + key.public_line + "\n");
  CommandResult result = EchoThrough(key);
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=key-expired"));
}

TEST_F(AuthTest, FutureExpiryStillWorks) {
  TestKey key = MakeKey(dir_, "fresh");
  StartAgent("expiry-time=\"29991231\" " + key.public_line + "\n");
  EXPECT_EQ(EchoThrough(key).out, "ping\n");
}

TEST_F(AuthTest, FromMismatchIsRefusedAndMatchingSourceIsAccepted) {
  TestKey key = MakeKey(dir_, "pinned");
  StartAgent("from=\"127.0.0.2,10.0.0.0/8\" " + key.public_line + "\n");
  CommandResult from_wrong = EchoThrough(key);
  EXPECT_EQ(from_wrong.exit_code, 255);
  EXPECT_TRUE(agent_->WaitForLog("result=rejected reason=from-mismatch"));
  // Same key from the listed source address: in.
  CommandResult from_listed = EchoThrough(key, "", {"-b", "127.0.0.2"});
  EXPECT_EQ(from_listed.exit_code, 0) << from_listed.err;
  EXPECT_EQ(from_listed.out, "ping\n");
}

TEST_F(AuthTest, PermitOpenAllowsOnlyListedDestinations) {
  EchoServer other;
  TestKey key = MakeKey(dir_, "limited");
  StartAgent("permitopen=\"127.0.0.1:" + std::to_string(echo_.port()) + "\" " + key.public_line + "\n");
  EXPECT_EQ(EchoThrough(key).out, "ping\n");
  CommandResult refused = EchoThrough(key, "127.0.0.1:" + std::to_string(other.port()));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("open failed"));
  EXPECT_TRUE(agent_->WaitForLog("reason=permitopen-mismatch"));
  EXPECT_EQ(other.connections(), 0);
}

TEST_F(AuthTest, RestrictAndNoPortForwardingRefuseChannels) {
  TestKey restricted = MakeKey(dir_, "restricted");
  TestKey no_forwarding = MakeKey(dir_, "noforward");
  TestKey reenabled = MakeKey(dir_, "reenabled");
  StartAgent("restrict " + restricted.public_line + "\n" +
             "no-port-forwarding " + no_forwarding.public_line + "\n" +
             "restrict,port-forwarding " + reenabled.public_line + "\n");
  EXPECT_THAT(EchoThrough(restricted).err, HasSubstr("open failed"));
  EXPECT_THAT(EchoThrough(no_forwarding).err, HasSubstr("open failed"));
  EXPECT_TRUE(agent_->WaitForLog("reason=port-forwarding-disabled"));
  EXPECT_EQ(EchoThrough(reenabled).out, "ping\n");
  EXPECT_EQ(echo_.connections(), 1);
}

TEST_F(AuthTest, ExecAndShellAreRefusedEvenWithCommandOption) {
  TestKey key = MakeKey(dir_, "commander");
  StartAgent("command=\"/bin/echo forced\" " + key.public_line + "\n");
  std::vector<std::string> argv = SshArgs(agent_->port(), key);
  argv.insert(argv.end(), {"127.0.0.1", "true"});
  CommandResult exec = RunCommand(argv);
  EXPECT_NE(exec.exit_code, 0);
  EXPECT_THAT(exec.out, Not(HasSubstr("forced")));
  std::vector<std::string> shell = SshArgs(agent_->port(), key);
  shell.insert(shell.end(), {"-T", "127.0.0.1"});
  EXPECT_NE(RunCommand(shell, "echo hi\n").exit_code, 0);
  EXPECT_TRUE(agent_->WaitForLog("reason=channel-type-not-supported"));
}

TEST_F(AuthTest, PasswordAndKeyboardInteractiveAreNeverOffered) {
  TestKey key = MakeKey(dir_, "someone");
  StartAgent(key.public_line + "\n");
  std::vector<std::string> argv = {"ssh", "-F", "/dev/null", "-v",
                                   "-o", "StrictHostKeyChecking=no",
                                   "-o", "UserKnownHostsFile=/dev/null",
                                   "-o", "PreferredAuthentications=password,keyboard-interactive",
                                   "-o", "PubkeyAuthentication=no",
                                   "-o", "NumberOfPasswordPrompts=1",
                                   "-p", std::to_string(agent_->port()), "-N", "tester@127.0.0.1"};
  CommandResult result = RunCommand(argv, "", std::chrono::seconds(20));
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_THAT(result.err, HasSubstr("Authentications that can continue: publickey\r\n"));
  EXPECT_THAT(result.err, Not(HasSubstr("password:")));
  EXPECT_THAT(result.err, HasSubstr("Permission denied (publickey)"));
}

TEST_F(AuthTest, MalformedAuthorizedKeysLinesAreReportedAndSkipped) {
  TestKey good = MakeKey(dir_, "survivor");
  StartAgent("# comment line\n"
             "ssh-ed25519 not-base64!!! broken\n"
             "bogus-option " + good.public_line + "\n" +
             good.public_line + "\n");
  EXPECT_TRUE(agent_->WaitForLog("keys: skipped bad line at=" + dir_.File("authorized_keys") + ":2"));
  EXPECT_THAT(agent_->Log(), HasSubstr(dir_.File("authorized_keys") + ":3"));
  EXPECT_THAT(agent_->Log(), HasSubstr("loaded authorized keys count=1"));
  EXPECT_EQ(EchoThrough(good).out, "ping\n");
}

TEST_F(AuthTest, SighupReloadsKeysWithoutDroppingSessions) {
  TestKey first = MakeKey(dir_, "first");
  TestKey second = MakeKey(dir_, "second");
  StartAgent(first.public_line + "\n");
  EXPECT_EQ(EchoThrough(second).exit_code, 255);
  // A session of the first key stays up across the reload and keeps forwarding.
  uint16_t local = 0;
  auto session = StartLocalForward(agent_->port(), first, echo_.port(), dir_.path(), "ssh_first", &local);
  ASSERT_NE(session, nullptr);
  WriteFile(dir_.File("authorized_keys"), first.public_line + "\n" + second.public_line + "\n");
  agent_->process().Signal(SIGHUP);
  ASSERT_TRUE(agent_->WaitForLog("loaded authorized keys count=2"));
  EXPECT_EQ(EchoThrough(second).out, "ping\n");
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EchoRoundTrip(fd, PatternBytes(1 << 20, 3)));
  close(fd);
  EXPECT_TRUE(session->running());
}

}  // namespace
}  // namespace alknet::testing
