// Unit tests for from= source matching, permitopen destination matching and wildcards.
#include "server/auth/address_patterns.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace alknet::auth {
namespace {

// ---- SourceAllowed ----

struct SourceCase {
  std::vector<std::string> patterns;
  std::string ip;
  bool allowed;
};

void PrintTo(const SourceCase& c, std::ostream* os) {
  *os << "{";
  for (const std::string& p : c.patterns) *os << p << ";";
  *os << "} " << c.ip << " -> " << (c.allowed ? "allowed" : "denied");
}

class SourceAllowedTest : public ::testing::TestWithParam<SourceCase> {};

TEST_P(SourceAllowedTest, Matches) {
  EXPECT_EQ(SourceAllowed(GetParam().patterns, GetParam().ip), GetParam().allowed);
}

INSTANTIATE_TEST_SUITE_P(
    Table, SourceAllowedTest,
    ::testing::Values(
        // Empty list allows everything.
        SourceCase{{}, "203.0.113.9", true}, SourceCase{{}, "not an address", true},
        // Exact addresses.
        SourceCase{{"192.0.2.7"}, "192.0.2.7", true}, SourceCase{{"192.0.2.7"}, "192.0.2.8", false},
        SourceCase{{"2001:db8::1"}, "2001:db8:0:0::1", true},  // numeric, not textual
        SourceCase{{"2001:DB8::1"}, "2001:db8::1", true},
        // IPv4 CIDR.
        SourceCase{{"10.0.0.0/8"}, "10.255.1.2", true},
        SourceCase{{"10.0.0.0/8"}, "11.0.0.1", false},
        SourceCase{{"192.168.1.128/25"}, "192.168.1.200", true},
        SourceCase{{"192.168.1.128/25"}, "192.168.1.127", false},
        SourceCase{{"0.0.0.0/0"}, "198.51.100.1", true},
        SourceCase{{"0.0.0.0/0"}, "2001:db8::1", false},  // other family never matches
        SourceCase{{"198.51.100.1/32"}, "198.51.100.1", true},
        // IPv6 CIDR.
        SourceCase{{"2001:db8::/32"}, "2001:db8:ffff::1", true},
        SourceCase{{"2001:db8::/32"}, "2001:db9::1", false},
        SourceCase{{"2001:db8:0:80::/57"}, "2001:db8:0:ff::1", true},
        SourceCase{{"2001:db8:0:80::/57"}, "2001:db8:0:7f::1", false},
        SourceCase{{"::/0"}, "::1", true}, SourceCase{{"::/0"}, "127.0.0.1", false},
        // v4-mapped client addresses are matched as IPv4 (as sshd normalises them).
        SourceCase{{"192.0.2.0/24"}, "::ffff:192.0.2.55", true},
        SourceCase{{"192.0.2.*"}, "::ffff:192.0.2.55", true},
        SourceCase{{"192.0.2.55"}, "::ffff:192.0.2.55", true},
        SourceCase{{"!192.0.2.0/24", "*"}, "::ffff:192.0.2.55", false},
        SourceCase{{"::ffff:192.0.2.55"}, "192.0.2.55", true},
        // Wildcards against the canonical address text.
        SourceCase{{"192.168.*"}, "192.168.44.3", true},
        SourceCase{{"192.168.*"}, "192.169.0.1", false}, SourceCase{{"10.0.0.?"}, "10.0.0.7", true},
        SourceCase{{"10.0.0.?"}, "10.0.0.17", false}, SourceCase{{"*"}, "2001:db8::1", true},
        SourceCase{{"2001:db8::*"}, "2001:DB8::abcd", true},
        SourceCase{{"fe80:*"}, "fe80::1", true},
        // Host-name patterns never match: we only ever see the numeric address.
        SourceCase{{"*.example.com"}, "192.0.2.1", false},
        SourceCase{{"!*.example.com", "*"}, "192.0.2.1", true},
        SourceCase{{"localhost"}, "127.0.0.1", false},
        // Negation: a matching negated entry denies, whatever its position.
        SourceCase{{"10.0.0.0/8", "!10.1.2.3"}, "10.1.2.3", false},
        SourceCase{{"!10.1.2.3", "10.0.0.0/8"}, "10.1.2.3", false},
        SourceCase{{"10.0.0.0/8", "!10.1.2.3"}, "10.1.2.4", true},
        SourceCase{{"!10.1.0.0/16", "10.*"}, "10.1.9.9", false},
        SourceCase{{"!10.1.0.0/16", "10.*"}, "10.2.9.9", true},
        SourceCase{{"!192.0.2.1"}, "192.0.2.2", false},  // only negations: nothing allows
        SourceCase{{"!*"}, "192.0.2.2", false},
        SourceCase{{"!2001:db8::/32", "*"}, "2001:db8::5", false},
        // Several positives: any one is enough.
        SourceCase{{"10.0.0.0/8", "192.168.0.0/16"}, "192.168.3.3", true},
        // Hand-built malformed entries match nothing and never crash.
        SourceCase{{"10.1.2.3/8"}, "10.1.2.3", false},
        SourceCase{{"10.0.0.0/99"}, "10.1.2.3", false},
        SourceCase{{"10.0.0.0/"}, "10.1.2.3", false}, SourceCase{{"/8"}, "10.1.2.3", false},
        SourceCase{{"10.0.0.0/8/8"}, "10.1.2.3", false},
        SourceCase{{"!10.1.2.3/8", "*"}, "10.1.2.3", true},
        SourceCase{{"", "!", "10.0.0.0/8"}, "10.1.2.3", true},
        // A client address that does not parse is denied when there is a list (fail closed).
        SourceCase{{"*"}, "not-an-ip", false}, SourceCase{{"*"}, "", false},
        SourceCase{{"*"}, "fe80::1%eth0", false}));

// ---- IsValidSourcePattern / CheckSourcePattern ----

struct ValidityCase {
  std::string entry;
  std::string error;  // empty when valid
};

void PrintTo(const ValidityCase& c, std::ostream* os) { *os << "'" << c.entry << "'"; }

class SourcePatternValidityTest : public ::testing::TestWithParam<ValidityCase> {};

TEST_P(SourcePatternValidityTest, Checks) {
  const ValidityCase& c = GetParam();
  absl::Status status = CheckSourcePattern(c.entry);
  EXPECT_EQ(IsValidSourcePattern(c.entry), c.error.empty());
  if (c.error.empty()) {
    EXPECT_TRUE(status.ok()) << status;
  } else {
    EXPECT_EQ(std::string(status.message()), c.error);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, SourcePatternValidityTest,
    ::testing::Values(
        ValidityCase{"192.0.2.1", ""}, ValidityCase{"!192.0.2.1", ""},
        ValidityCase{"10.0.0.0/8", ""}, ValidityCase{"!10.0.0.0/8", ""},
        ValidityCase{"0.0.0.0/0", ""}, ValidityCase{"2001:db8::/32", ""}, ValidityCase{"::/0", ""},
        ValidityCase{"::1/128", ""}, ValidityCase{"192.168.*", ""}, ValidityCase{"10.0.0.?", ""},
        ValidityCase{"*", ""}, ValidityCase{"!*", ""}, ValidityCase{"*.example.com", ""},
        ValidityCase{"host-1_a.example.org", ""}, ValidityCase{"2001:db8::*", ""},
        ValidityCase{"", "empty pattern"}, ValidityCase{"!", "empty pattern"},
        ValidityCase{"!!10.0.0.1", "invalid character '!'"},
        ValidityCase{"10.0.0.1 ", "invalid character ' '"},
        ValidityCase{"a\"b", "invalid character '\\\"'"},
        ValidityCase{"a\x01", "invalid character '\\x01'"},
        ValidityCase{"fe80::1%eth0", "invalid character '%'"},
        ValidityCase{"10.0.0.0/33", "prefix length 33 is too long for IPv4 (at most 32)"},
        ValidityCase{"2001:db8::/129", "prefix length 129 is too long for IPv6 (at most 128)"},
        ValidityCase{"10.0.0.0/", "invalid prefix length ''"},
        ValidityCase{"10.0.0.0/-1", "invalid prefix length '-1'"},
        ValidityCase{"10.0.0.0/0008", "invalid prefix length '0008'"},
        ValidityCase{"10.0.0.0/8/8", "invalid prefix length '8/8'"},
        ValidityCase{"/8", "'' is not an IPv4 or IPv6 address"},
        ValidityCase{"10.0.0/8", "'10.0.0' is not an IPv4 or IPv6 address"},
        ValidityCase{"host.example/8", "'host.example' is not an IPv4 or IPv6 address"},
        ValidityCase{"010.0.0.0/8", "'010.0.0.0' is not an IPv4 or IPv6 address"},
        ValidityCase{"10.0.0.1/8",
                     "host bits are set (inconsistent mask length; the network is '10.0.0.0/8')"},
        ValidityCase{"2001:db8::1/32",
                     "host bits are set (inconsistent mask length; the network "
                     "is '2001:db8::/32')"},
        ValidityCase{std::string(256, 'a'), "pattern is too long (256 characters, at most 255)"},
        ValidityCase{std::string(255, 'a'), ""}));

// ---- WildcardMatch ----

struct WildcardCase {
  std::string pattern;
  std::string text;
  bool matches;
};

class WildcardMatchTest : public ::testing::TestWithParam<WildcardCase> {};

TEST_P(WildcardMatchTest, Matches) {
  EXPECT_EQ(WildcardMatch(GetParam().pattern, GetParam().text), GetParam().matches)
      << GetParam().pattern << " vs " << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(
    Table, WildcardMatchTest,
    ::testing::Values(WildcardCase{"", "", true}, WildcardCase{"", "a", false},
                      WildcardCase{"*", "", true}, WildcardCase{"*", "anything", true},
                      WildcardCase{"?", "", false}, WildcardCase{"?", "x", true},
                      WildcardCase{"a*c", "abbbc", true}, WildcardCase{"a*c", "abbbd", false},
                      WildcardCase{"*.example.com", "www.example.com", true},
                      WildcardCase{"*.example.com", "example.com", false},
                      WildcardCase{"*.EXAMPLE.com", "Www.Example.COM", true},
                      WildcardCase{"a*b*c", "aXbYbZc", true}, WildcardCase{"a*b*c", "acb", false},
                      WildcardCase{"**", "x", true}, WildcardCase{"*?", "", false},
                      WildcardCase{"?*?", "ab", true}, WildcardCase{"abc", "abcd", false},
                      WildcardCase{"a*", "a", true},
                      WildcardCase{std::string(50, '*') + "b", std::string(5000, 'a'), false}));

// ---- DestinationAllowed ----

struct DestinationCase {
  std::vector<HostPortPattern> patterns;
  std::string host;
  uint16_t port;
  bool allowed;
};

class DestinationAllowedTest : public ::testing::TestWithParam<DestinationCase> {};

TEST_P(DestinationAllowedTest, Matches) {
  EXPECT_EQ(DestinationAllowed(GetParam().patterns, GetParam().host, GetParam().port),
            GetParam().allowed)
      << GetParam().host << ":" << GetParam().port;
}

const HostPortPattern kDb{"db.internal", 5432, false};
const HostPortPattern kAnyHost443{"*", 443, false};
const HostPortPattern kLocalAnyPort{"localhost", 0, true};
const HostPortPattern kV6{"2001:db8::1", 22, false};

INSTANTIATE_TEST_SUITE_P(
    Table, DestinationAllowedTest,
    ::testing::Values(
        DestinationCase{{}, "anything", 1, true}, DestinationCase{{kDb}, "db.internal", 5432, true},
        DestinationCase{{kDb}, "DB.Internal", 5432, true},  // host compared case-insensitively
        DestinationCase{{kDb}, "db.internal", 5433, false},
        DestinationCase{{kDb}, "db.internal.", 5432, false},  // literal comparison, no DNS
        DestinationCase{{kDb}, "10.0.0.5", 5432, false},
        DestinationCase{{kAnyHost443}, "example.org", 443, true},
        DestinationCase{{kAnyHost443}, "example.org", 80, false},
        DestinationCase{{kLocalAnyPort}, "localhost", 1, true},
        DestinationCase{{kLocalAnyPort}, "localhost", 65535, true},
        DestinationCase{{kLocalAnyPort}, "127.0.0.1", 22, false},
        DestinationCase{{HostPortPattern{"*", 0, true}}, "x", 9, true},
        DestinationCase{{kV6}, "2001:db8::1", 22, true},
        DestinationCase{{kDb, kAnyHost443, kV6}, "example.com", 443, true},
        DestinationCase{{kDb, kAnyHost443, kV6}, "example.com", 22, false}));

}  // namespace
}  // namespace alknet::auth
