// Security round item 12: the algorithm lists the real agent offers, read from a stock OpenSSH
// client's `ssh -vv` output ("peer server KEXINIT proposal"), by default and when configured.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"

namespace alknet::testing {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

using List = std::vector<std::string>;

// The server's KEXINIT lists as ssh -vv prints them: "KEX algorithms", "host key algorithms",
// "ciphers ctos", "ciphers stoc", "MACs ctos", "MACs stoc" -> names.
std::map<std::string, List> PeerServerProposal(const std::string& ssh_stderr) {
  std::map<std::string, List> lists;
  std::istringstream in(ssh_stderr);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find("peer server KEXINIT proposal") != std::string::npos) {
      inside = true;
      continue;
    }
    if (!inside) continue;
    const std::string prefix = "debug2: ";
    if (line.rfind(prefix, 0) != 0) break;
    std::string rest = line.substr(prefix.size());
    size_t colon = rest.find(": ");
    if (colon == std::string::npos) break;
    std::string key = rest.substr(0, colon);
    if (key == "first_kex_follows") break;
    List names;
    for (absl::string_view name : absl::StrSplit(rest.substr(colon + 2), ',', absl::SkipEmpty())) {
      names.emplace_back(name);
    }
    lists[key] = names;
  }
  return lists;
}

// The KEX list without the protocol markers libssh appends (strict KEX, ext-info).
List KexAlgorithms(const List& names) {
  List out;
  for (const std::string& name : names) {
    if (name.rfind("kex-strict-", 0) == 0 || name.rfind("ext-info-", 0) == 0) continue;
    out.push_back(name);
  }
  return out;
}

class AlgorithmsTest : public ::testing::Test {
 protected:
  // One handshake with ssh -vv (the key is not authorized: only the KEXINIT matters).
  std::map<std::string, List> Offered(AgentProcess& agent) {
    TestKey client = MakeKey(dir_, "client_" + std::to_string(++clients_));
    std::vector<std::string> argv = SshArgs(agent.port(), client);
    for (std::string& arg : argv) {
      if (arg == "LogLevel=ERROR") arg = "LogLevel=DEBUG2";
    }
    argv.insert(argv.end(), {"-vv", "127.0.0.1", "true"});
    CommandResult result = RunCommand(argv);
    auto lists = PeerServerProposal(result.err);
    EXPECT_FALSE(lists.empty()) << result.err;
    return lists;
  }

  TempDir dir_;
  int clients_ = 0;
};

TEST_F(AlgorithmsTest, Item12DefaultAlgorithmsOfferedToOpenSsh) {
  TestKey ed25519 = MakeKey(dir_, "host_ed25519");
  TestKey rsa = MakeKey(dir_, "host_rsa", "rsa");
  AgentProcess agent(dir_, {"--host-key", ed25519.private_path, "--host-key", rsa.private_path});
  auto lists = Offered(agent);
  EXPECT_EQ(KexAlgorithms(lists["KEX algorithms"]),
            List({"curve25519-sha256", "curve25519-sha256@libssh.org"}));
  EXPECT_EQ(lists["host key algorithms"], List({"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"}));
  const List ciphers = {"chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
                        "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"};
  EXPECT_EQ(lists["ciphers ctos"], ciphers);
  EXPECT_EQ(lists["ciphers stoc"], ciphers);
  const List macs = {"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"};
  EXPECT_EQ(lists["MACs ctos"], macs);
  EXPECT_EQ(lists["MACs stoc"], macs);
  // What a scanner flags: NIST curves, non-ETM MACs, SHA-1 signatures.
  for (const auto& [kind, names] : lists) {
    EXPECT_THAT(names, Each(Not(HasSubstr("nistp")))) << kind;
    EXPECT_THAT(names, Each(Not(HasSubstr("sha1")))) << kind;
    EXPECT_THAT(names, Not(::testing::Contains("ssh-rsa"))) << kind;
    if (kind.rfind("MACs", 0) == 0) {
      EXPECT_THAT(names, Each(HasSubstr("-etm@openssh.com")));
    }
  }
}

TEST_F(AlgorithmsTest, Item12ConfiguredAlgorithmListsChangeTheOffer) {
  WriteFile(dir_.File("agent.yaml"),
            "ssh:\n"
            "  macs: -hmac-sha2-512-etm@openssh.com\n"
            "  kex: ^curve25519-sha256@libssh.org\n"
            "  ciphers: aes256-gcm@openssh.com,aes128-ctr\n");
  TestKey ecdsa = MakeKey(dir_, "host_ecdsa", "ecdsa");
  AgentProcess agent(dir_, {"--config", dir_.File("agent.yaml"), "--host-key",
                            ecdsa.private_path});
  auto lists = Offered(agent);
  EXPECT_THAT(lists["MACs ctos"], ElementsAre("hmac-sha2-256-etm@openssh.com"));
  EXPECT_THAT(lists["MACs stoc"], ElementsAre("hmac-sha2-256-etm@openssh.com"));
  EXPECT_EQ(KexAlgorithms(lists["KEX algorithms"]),
            List({"curve25519-sha256@libssh.org", "curve25519-sha256"}));
  EXPECT_THAT(lists["ciphers ctos"], ElementsAre("aes256-gcm@openssh.com", "aes128-ctr"));
  // With the default host key list, an ECDSA host key is offered as its own algorithm.
  EXPECT_THAT(lists["host key algorithms"], ElementsAre("ecdsa-sha2-nistp256"));
}

TEST_F(AlgorithmsTest, Item12UnknownAlgorithmIsAConfigErrorWithLine) {
  WriteFile(dir_.File("agent.yaml"), "ssh:\n  kex: +sntrup761x25519-sha512@openssh.com\n");
  CommandResult result = RunCommand({ALKNET_AGENT_BINARY, "--config", dir_.File("agent.yaml"),
                                     "--state-dir", dir_.File("state"), "--print-config"});
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_THAT(result.err, HasSubstr("agent.yaml:2:8: ssh.kex: 'sntrup761x25519-sha512@openssh.com' "
                                    "is not a known KEX algorithm"));
}

}  // namespace
}  // namespace alknet::testing
