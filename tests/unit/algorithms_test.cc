// Tests the SSH algorithm lists (security round item 12): defaults without NIST curves, non-ETM
// MACs or SHA-1, and sshd's list arithmetic (full list, +append, -remove, ^first).
#include "server/config/algorithms.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config/config_schema.h"
#include "server/config/config_yaml.h"

namespace alknet::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using List = std::vector<std::string>;

TEST(SecurityRound, Item12AlgorithmDefaultsAreModern) {
  SshAlgorithms algorithms;
  EXPECT_EQ(algorithms.kex, List({"curve25519-sha256", "curve25519-sha256@libssh.org"}));
  EXPECT_EQ(algorithms.ciphers,
            List({"chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
                  "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"}));
  EXPECT_EQ(algorithms.macs,
            List({"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"}));
  EXPECT_EQ(algorithms.host_key_algorithms, List({"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"}));
  // Every default is a name the config accepts.
  for (AlgorithmKind kind : {AlgorithmKind::kKex, AlgorithmKind::kCiphers, AlgorithmKind::kMacs,
                             AlgorithmKind::kHostKeys}) {
    List list = DefaultAlgorithms(kind);
    EXPECT_TRUE(ApplyAlgorithmSpec(kind, JoinAlgorithms(list), list).ok());
  }
}

TEST(SecurityRound, Item12AlgorithmListArithmetic) {
  List list = {"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"};

  // A full list replaces.
  ASSERT_TRUE(ApplyAlgorithmSpec(AlgorithmKind::kMacs, "hmac-sha2-512-etm@openssh.com", list).ok());
  EXPECT_THAT(list, ElementsAre("hmac-sha2-512-etm@openssh.com"));

  // + appends what is missing, keeps what is there in place.
  ASSERT_TRUE(ApplyAlgorithmSpec(AlgorithmKind::kMacs,
                                 "+hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com",
                                 list)
                  .ok());
  EXPECT_THAT(list, ElementsAre("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"));

  // ^ moves (or puts) names first, in the order given.
  ASSERT_TRUE(
      ApplyAlgorithmSpec(AlgorithmKind::kMacs, "^hmac-sha1-etm@openssh.com,hmac-sha2-256-etm@openssh.com", list)
          .ok());
  EXPECT_THAT(list, ElementsAre("hmac-sha1-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
                                "hmac-sha2-512-etm@openssh.com"));

  // - removes; removing an absent (known) name is fine.
  ASSERT_TRUE(
      ApplyAlgorithmSpec(AlgorithmKind::kMacs, "-hmac-sha1-etm@openssh.com,hmac-sha2-512", list).ok());
  EXPECT_THAT(list, ElementsAre("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"));
}

TEST(SecurityRound, Item12AlgorithmListErrorsLeaveTheListAlone) {
  const List start = DefaultAlgorithms(AlgorithmKind::kKex);
  struct Case {
    std::string spec;
    std::string message;
  };
  const Case cases[] = {
      {"", "names no KEX algorithm"},
      {"+", "names no KEX algorithm"},
      {"curve25519-sha256,,curve25519-sha256@libssh.org", "empty element"},
      {"+sntrup761x25519-sha512@openssh.com", "'sntrup761x25519-sha512@openssh.com' is not a known KEX"},
      {"-nope", "'nope' is not a known KEX algorithm"},
      {"^aes128-ctr", "'aes128-ctr' is not a known KEX algorithm"},  // a cipher, not a KEX
      {"curve25519-sha256,curve25519-sha256", "listed twice"},
      {"-curve25519-sha256,curve25519-sha256@libssh.org", "leaves no KEX algorithm"},
  };
  for (const Case& c : cases) {
    List list = start;
    absl::Status status = ApplyAlgorithmSpec(AlgorithmKind::kKex, c.spec, list);
    EXPECT_FALSE(status.ok()) << c.spec;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message)) << c.spec;
    EXPECT_EQ(list, start) << c.spec;
  }
}

TEST(SecurityRound, Item12UnknownAlgorithmInYamlIsAnErrorWithPosition) {
  AgentConfig config;
  absl::Status status = ApplyYaml("ssh:\n  kex: curve25519-sha256\n  macs: +hmac-md5\n",
                                  "agent.yaml", config);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("agent.yaml:3:9: ssh.macs: 'hmac-md5' is not a known MAC"));
  EXPECT_EQ(config, AgentConfig{});

  // The flag goes through the same table; a prefix applies to the value so far.
  ASSERT_TRUE(ApplyYaml("ssh:\n  macs: -hmac-sha2-512-etm@openssh.com\n", "agent.yaml", config).ok());
  EXPECT_THAT(config.ssh.macs, ElementsAre("hmac-sha2-256-etm@openssh.com"));
  ASSERT_TRUE(SetField(config, *FindFieldByFlag("--ssh-macs"), "+hmac-sha2-512-etm@openssh.com").ok());
  EXPECT_THAT(config.ssh.macs,
              ElementsAre("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"));
  EXPECT_FALSE(SetField(config, *FindFieldByFlag("--ssh-ciphers"), "3des").ok());
}

}  // namespace
}  // namespace alknet::config
