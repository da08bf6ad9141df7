// Unit tests for the authorized_keys parser: key types, every option, and the bad-line messages.
#include "server/auth/authorized_keys.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/fingerprint.h"

namespace alknet::auth {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Real public keys made with ssh-keygen (OpenSSH 9.2); the sk-* ones were assembled from the
// Ed25519 / P-256 keys with application "ssh:" and fingerprinted with `ssh-keygen -lf`.
constexpr std::string_view kEd25519Blob =
    "AAAAC3NzaC1lZDI1NTE5AAAAIObAnDs+QOg1+6AZ+iMEVmwdt/k10vLmiDPBQX2+vh5u";
constexpr std::string_view kEd25519Line =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIObAnDs+QOg1+6AZ+iMEVmwdt/k10vLmiDPBQX2+vh5u "
    "alice@example";
constexpr std::string_view kEd25519Fingerprint =
    "SHA256:zZaw2odR50zt1mfgw5n44O1CRqNmXsr4P32rjeOUs3U";
constexpr std::string_view kOtherEd25519Line =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnr2SlN2/jUhEKmkOVzUyQ0ygUzMJGSpgiPh+F7oJiG ca";
constexpr std::string_view kRsa2048Line =
    "ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAABAQCuzAdYs/Fb/"
    "E0BxNj4oUoIh8U8omsD+CW8+6L3aKwVnCCtHoQKka0lg3yLt5vJ5mq3"
    "/iae42pdf3NBcXL2rnDVjbPuhQLySJt9D2av26VzyWndTII0xi8qLUtlVKh+S1/DA09n5om7Kx4Qv2BGQp5k9XVlbUegyZ"
    "ypn2jtrHKvgS4F62VeGggWRP5g/gucTCZ5K7V+v1PyPiPCZWXkrQjGZ3Y6dDVRUd2vjyVnJGxvHkeK4RmxZw87bAaWSXuH"
    "TDwC2kXccQFKurtVKiBjQIlVfomiomUpaxvizedjKceD3vuim3eHWYPuKAv3ZxjqiFYnNwZ55QicpGxMAS5LM9qp "
    "bob@example";
constexpr std::string_view kRsa1024Line =
    "ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAAAgQCzykUXyvXtXNUDFLnsQK1AbUvP1X8AVviR64XVVDIuhT3cmuYBJ1i6TlNSdrjgbZ"
    "ZjkJnZvOwrK2U9LbygIRMTBkmhiPp/e3VBtd4tHkHY8Ddntuz81G7W/XOvHC13xI9oOtMhMfyv7nqUg1El/"
    "8IIIw2mT7qcXM"
    "Z4fSiCb40t4w== rsa1024";
constexpr std::string_view kEcdsa256Blob =
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN3pqSP1mIqxL7pe2p053qr0SNegW5Y+"
    "TLfbzlNB1R4e"
    "LStHDuR54RRnlt+YwJAT5zZpdn4ZkyL1avXazMWIkJo=";
constexpr std::string_view kEcdsa256Line =
    "ecdsa-sha2-nistp256 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN3pqSP1mIqxL7pe2p053qr0SNegW5Y+"
    "TLfbzlNB1R4e"
    "LStHDuR54RRnlt+YwJAT5zZpdn4ZkyL1avXazMWIkJo= ecdsa256";
constexpr std::string_view kEcdsa384Line =
    "ecdsa-sha2-nistp384 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBEFEazSI0Vsk6WOEX8Gc0OUJBK78BCPEjAUWoLon4O"
    "7v"
    "C4GWwq1PdGgkjX3wSlGAGNaCDEEBIJYThjlqtzP/O8BpDtSRv6igS77H+e/QkgXdeV9qn9g7xyzEQDzeOX3jZw== "
    "ecdsa384";
constexpr std::string_view kEcdsa521Line =
    "ecdsa-sha2-nistp521 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBABzni73kVtFdPuzZjm/"
    "8QAq9HT6muHxRL9rvT8k6V0V"
    "+BdYZRYppvfraEx9YaonUZxgqMDtLpFLy6Xy8VxLbw8R0gACUaJECSZmpIhoMh4fCvUKW/wteEcVOgGbjMOYoEF8p/"
    "VXGtiK"
    "EvgzlOJWH0X80sijY5ZpKqKmsecwStO3tryzEQ== ecdsa521";
constexpr std::string_view kSkEd25519Line =
    "sk-ssh-ed25519@openssh.com "
    "AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIObAnDs+QOg1+6AZ+iMEVmwdt/"
    "k10vLmiDPBQX2+vh5uAAAABHNz"
    "aDo= sk-ed";
constexpr std::string_view kSkEcdsaLine =
    "sk-ecdsa-sha2-nistp256@openssh.com "
    "AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBN3pqSP1mIqxL7pe2p053q"
    "r0"
    "SNegW5Y+TLfbzlNB1R4eLStHDuR54RRnlt+YwJAT5zZpdn4ZkyL1avXazMWIkJoAAAAEc3NoOg== sk-ec";
constexpr std::string_view kEd25519CertLine =
    "ssh-ed25519-cert-v01@openssh.com "
    "AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIBWlq4INiYeAttJStEgRC+"
    "R3dyuqfJkqejou2I5mL9//"
    "AAAAIObAnDs+QOg1+6AZ+iMEVmwdt/"
    "k10vLmiDPBQX2+vh5uAAAAAAAAAAAAAAABAAAAAmlkAAAACQAAAAVhbGljZQAAAAAA"
    "AAAA//////////"
    "8AAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJk"
    "aW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci"
    "1y"
    "YwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACAZ69kpTdv41IRCppDlc1MkNMoFMzCRkqYIj4fhe6CYhgAAAFMAAA"
    "AL"
    "c3NoLWVkMjU1MTkAAABAR10LPP3rWyUpkz2izPfGksoGSmZ3TkIC3HuM4mQbxnFvE6+aM9QZIGNZ777vleeZpJ+"
    "4Qht9KCcR"
    "xwUTUzvbDg== alice@example";

// ---- helpers to assemble key blobs by hand ----

std::string WireString(std::string_view data) {
  std::string out;
  const auto size = static_cast<uint32_t>(data.size());
  out += static_cast<char>(size >> 24);
  out += static_cast<char>(size >> 16);
  out += static_cast<char>(size >> 8);
  out += static_cast<char>(size);
  out += data;
  return out;
}

std::string Decoded(std::string_view base64) {
  std::optional<std::string> blob = Base64Decode(base64);
  EXPECT_TRUE(blob.has_value()) << base64;
  return blob.value_or("");
}

std::string LineFor(std::string_view type, std::string_view blob) {
  return std::string(type) + " " + Base64Encode(blob) + " test";
}

// An RSA blob with e = 65537 and a modulus of `modulus_bytes` bytes whose first byte is `top`.
std::string RsaBlob(size_t modulus_bytes, unsigned char top) {
  std::string modulus(modulus_bytes, '\x5a');
  modulus[0] = static_cast<char>(top);
  modulus.back() = '\x01';  // odd
  if ((top & 0x80) != 0) modulus.insert(modulus.begin(), '\0');
  return WireString("ssh-rsa") + WireString(std::string("\x01\x00\x01", 3)) + WireString(modulus);
}

// The P-256 point of kEcdsa256Blob (65 bytes, 0x04 || X || Y).
std::string Ecdsa256Point() {
  const std::string blob = Decoded(kEcdsa256Blob);
  return blob.substr(blob.size() - 65);
}

AuthorizedKey ParseOk(std::string_view line) {
  absl::StatusOr<AuthorizedKey> key = ParseAuthorizedKeyLine(line);
  EXPECT_TRUE(key.ok()) << line << "\n -> " << key.status();
  return key.ok() ? *key : AuthorizedKey{};
}

KeyOptions OptionsOf(std::string_view options) {
  return ParseOk(std::string(options) + " " + std::string(kEd25519Line)).options;
}

std::string ErrorOf(std::string_view line) {
  absl::StatusOr<AuthorizedKey> key = ParseAuthorizedKeyLine(line);
  if (key.ok()) return "<parsed ok>";
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(key.status().message());
}

std::string WithOptions(std::string_view options) {
  return std::string(options) + " " + std::string(kEd25519Line);
}

// ---- key types ----

struct KeyTypeCase {
  std::string_view line;
  std::string_view type;
  std::string_view comment;
  std::string_view fingerprint;  // from `ssh-keygen -lf`
};

class KeyTypeTest : public ::testing::TestWithParam<KeyTypeCase> {};

TEST_P(KeyTypeTest, ParsesTypeBlobCommentAndFingerprint) {
  const KeyTypeCase& c = GetParam();
  AuthorizedKey key = ParseOk(c.line);
  EXPECT_EQ(key.key_type, c.type);
  EXPECT_EQ(key.comment, c.comment);
  EXPECT_EQ(key.fingerprint, c.fingerprint);
  const size_t blob_start = c.line.find(' ') + 1;
  const std::string_view encoded =
      c.line.substr(blob_start, c.line.find(' ', blob_start) - blob_start);
  EXPECT_EQ(key.blob, Decoded(encoded));
  EXPECT_EQ(key.options, KeyOptions{});
  EXPECT_EQ(key.source, "");
}

INSTANTIATE_TEST_SUITE_P(
    RealKeys, KeyTypeTest,
    ::testing::Values(KeyTypeCase{kEd25519Line, "ssh-ed25519", "alice@example",
                                  "SHA256:zZaw2odR50zt1mfgw5n44O1CRqNmXsr4P32rjeOUs3U"},
                      KeyTypeCase{kRsa2048Line, "ssh-rsa", "bob@example",
                                  "SHA256:+NJIhnnd26OSiyrt/Wi4qLxJ2Q0S8WARMv6MrwNFh8c"},
                      KeyTypeCase{kRsa1024Line, "ssh-rsa", "rsa1024",
                                  "SHA256:oJxdv0daViWg1GvAOD0OvHWR0UQwrRxPo9gVeByK6sY"},
                      KeyTypeCase{kEcdsa256Line, "ecdsa-sha2-nistp256", "ecdsa256",
                                  "SHA256:Y2QGQejLudLs939UfzyKZHUxGXZg706LtGzZLcjGHas"},
                      KeyTypeCase{kEcdsa384Line, "ecdsa-sha2-nistp384", "ecdsa384",
                                  "SHA256:ahZ6I+IsfThlsZELBvoRRBKeTUId6s0624yINgJbEng"},
                      KeyTypeCase{kEcdsa521Line, "ecdsa-sha2-nistp521", "ecdsa521",
                                  "SHA256:zYU2nWHb9vBoVFE0RAZtqHO+bNWgtbLaKvbKgTItrDk"},
                      KeyTypeCase{kSkEd25519Line, "sk-ssh-ed25519@openssh.com", "sk-ed",
                                  "SHA256:B1i1njLY3/GXTAAuMjIDKyQnCDIekpxEUpXHDkt/gXI"},
                      KeyTypeCase{kSkEcdsaLine, "sk-ecdsa-sha2-nistp256@openssh.com", "sk-ec",
                                  "SHA256:d5hzDnBEcbrXS1JpIggKo/EgZyDeGeh66W4G30bErUs"}));

TEST(AuthorizedKeyLineTest, CommentIsOptionalAndMayContainSpaces) {
  EXPECT_EQ(ParseOk(std::string("ssh-ed25519 ") + std::string(kEd25519Blob)).comment, "");
  EXPECT_EQ(
      ParseOk(std::string("ssh-ed25519 ") + std::string(kEd25519Blob) + "  Alice Smith, laptop  ")
          .comment,
      "Alice Smith, laptop");
}

TEST(AuthorizedKeyLineTest, LeadingBlanksAndTabSeparatorsAreAccepted) {
  AuthorizedKey key =
      ParseOk(std::string(" \tssh-ed25519\t") + std::string(kEd25519Blob) + "\tcomment\r\n");
  EXPECT_EQ(key.key_type, "ssh-ed25519");
  EXPECT_EQ(key.comment, "comment");
  EXPECT_EQ(key.fingerprint, kEd25519Fingerprint);
}

TEST(AuthorizedKeyLineTest, RsaAtExactly1024BitsIsAccepted) {
  EXPECT_EQ(ParseOk(LineFor("ssh-rsa", RsaBlob(128, 0x80))).key_type, "ssh-rsa");
}

TEST(AuthorizedKeyLineTest, SecurityKeyWithEmptyApplicationIsAccepted) {
  const std::string blob = WireString("sk-ssh-ed25519@openssh.com") +
                           WireString(std::string(32, '\x11')) + WireString("");
  EXPECT_EQ(ParseOk(LineFor("sk-ssh-ed25519@openssh.com", blob)).key_type,
            "sk-ssh-ed25519@openssh.com");
}

// ---- options ----

TEST(KeyOptionsTest, DefaultsAllowEverything) {
  KeyOptions options = ParseOk(kEd25519Line).options;
  EXPECT_TRUE(options.port_forwarding);
  EXPECT_TRUE(options.pty);
  EXPECT_TRUE(options.agent_forwarding);
  EXPECT_TRUE(options.x11_forwarding);
  EXPECT_TRUE(options.user_rc);
  EXPECT_FALSE(options.restrict);
  EXPECT_FALSE(options.cert_authority);
  EXPECT_THAT(options.from, IsEmpty());
  EXPECT_THAT(options.permit_open, IsEmpty());
  EXPECT_THAT(options.permit_listen, IsEmpty());
  EXPECT_FALSE(options.expiry.has_value());
  EXPECT_FALSE(options.command.has_value());
}

struct FlagCase {
  std::string_view options;
  KeyOptions expected;
};

KeyOptions Flags(bool port_forwarding, bool pty, bool agent, bool x11, bool user_rc,
                 bool restrict = false, bool cert_authority = false) {
  KeyOptions options;
  options.port_forwarding = port_forwarding;
  options.pty = pty;
  options.agent_forwarding = agent;
  options.x11_forwarding = x11;
  options.user_rc = user_rc;
  options.restrict = restrict;
  options.cert_authority = cert_authority;
  return options;
}

class FlagOptionTest : public ::testing::TestWithParam<FlagCase> {};

TEST_P(FlagOptionTest, SetsFlags) {
  EXPECT_EQ(OptionsOf(GetParam().options), GetParam().expected) << GetParam().options;
}

INSTANTIATE_TEST_SUITE_P(
    AllFlags, FlagOptionTest,
    ::testing::Values(
        FlagCase{"no-port-forwarding", Flags(false, true, true, true, true)},
        FlagCase{"no-pty", Flags(true, false, true, true, true)},
        FlagCase{"no-agent-forwarding", Flags(true, true, false, true, true)},
        FlagCase{"no-X11-forwarding", Flags(true, true, true, false, true)},
        FlagCase{"no-user-rc", Flags(true, true, true, true, false)},
        FlagCase{"port-forwarding,pty,agent-forwarding,X11-forwarding,user-rc",
                 Flags(true, true, true, true, true)},
        FlagCase{"cert-authority", Flags(true, true, true, true, true, false, true)},
        FlagCase{"restrict", Flags(false, false, false, false, false, true)},
        // Later options re-enable what restrict turned off; order matters as in sshd.
        FlagCase{"restrict,port-forwarding", Flags(true, false, false, false, false, true)},
        FlagCase{"restrict,pty,agent-forwarding,x11-forwarding,user-rc",
                 Flags(false, true, true, true, true, true)},
        FlagCase{"port-forwarding,restrict", Flags(false, false, false, false, false, true)},
        FlagCase{"no-pty,pty", Flags(true, true, true, true, true)},
        FlagCase{"pty,no-pty", Flags(true, false, true, true, true)},
        // Option names are case-insensitive.
        FlagCase{"NO-PTY,No-Port-Forwarding", Flags(false, false, true, true, true)},
        FlagCase{"RESTRICT,Cert-Authority", Flags(false, false, false, false, false, true, true)}));

TEST(KeyOptionsTest, CommandKeepsQuotedCommasSpacesAndEscapedQuotes) {
  KeyOptions options = OptionsOf(R"(command="echo \"hi, there\" && ls C:\\tmp",no-pty)");
  ASSERT_TRUE(options.command.has_value());
  // Only \" is an escape; any other backslash stays as written (sshd opt_dequote).
  EXPECT_EQ(*options.command, R"(echo "hi, there" && ls C:\\tmp)");
  EXPECT_FALSE(options.pty);
}

TEST(KeyOptionsTest, EmptyCommandIsKept) {
  KeyOptions options = OptionsOf(R"(command="")");
  ASSERT_TRUE(options.command.has_value());
  EXPECT_EQ(*options.command, "");
}

TEST(KeyOptionsTest, FromSplitsOnCommasInsideQuotes) {
  KeyOptions options =
      OptionsOf(R"(from="10.0.0.0/8,!10.1.2.3,192.168.*,2001:db8::/32,*.example.com")");
  EXPECT_THAT(options.from, ElementsAre("10.0.0.0/8", "!10.1.2.3", "192.168.*", "2001:db8::/32",
                                        "*.example.com"));
}

TEST(KeyOptionsTest, FromOptionNameIsCaseInsensitive) {
  EXPECT_THAT(OptionsOf(R"(FROM="192.0.2.1")").from, ElementsAre("192.0.2.1"));
}

TEST(KeyOptionsTest, PrincipalsSplitOnCommas) {
  KeyOptions options = OptionsOf(R"(cert-authority,principals="alice,bob")");
  EXPECT_TRUE(options.cert_authority);
  EXPECT_THAT(options.principals, ElementsAre("alice", "bob"));
}

TEST(KeyOptionsTest, CertAuthorityLinesAreKept) {
  ParsedKeys parsed = ParseAuthorizedKeys(
      std::string("cert-authority,principals=\"deploy\" ") + std::string(kOtherEd25519Line) + "\n",
      "ak");
  ASSERT_THAT(parsed.problems, IsEmpty());
  ASSERT_EQ(parsed.keys.size(), 1u);
  EXPECT_TRUE(parsed.keys[0].options.cert_authority);
  EXPECT_THAT(parsed.keys[0].options.principals, ElementsAre("deploy"));
}

struct PermitCase {
  std::string_view options;
  std::vector<HostPortPattern> open;
  std::vector<HostPortPattern> listen;
};

class PermitOptionTest : public ::testing::TestWithParam<PermitCase> {};

TEST_P(PermitOptionTest, Parses) {
  KeyOptions options = OptionsOf(GetParam().options);
  EXPECT_EQ(options.permit_open, GetParam().open) << GetParam().options;
  EXPECT_EQ(options.permit_listen, GetParam().listen) << GetParam().options;
}

HostPortPattern HP(std::string host, uint16_t port) { return {std::move(host), port, false}; }
HostPortPattern AnyPort(std::string host) { return {std::move(host), 0, true}; }

INSTANTIATE_TEST_SUITE_P(
    PermitOpenAndListen, PermitOptionTest,
    ::testing::Values(
        PermitCase{R"(permitopen="db.internal:5432")", {HP("db.internal", 5432)}, {}},
        PermitCase{R"(permitopen="*:443")", {HP("*", 443)}, {}},
        PermitCase{R"(permitopen="localhost:*")", {AnyPort("localhost")}, {}},
        PermitCase{R"(permitopen="*:*")", {AnyPort("*")}, {}},
        PermitCase{R"(permitopen="[2001:db8::1]:22")", {HP("2001:db8::1", 22)}, {}},
        PermitCase{R"(permitopen="[::1]:*")", {AnyPort("::1")}, {}},
        PermitCase{R"(permitopen="192.0.2.1:65535")", {HP("192.0.2.1", 65535)}, {}},
        PermitCase{R"(permitopen="a:1",PermitOpen="b:2",permitopen="c:3")",
                   {HP("a", 1), HP("b", 2), HP("c", 3)},
                   {}},
        PermitCase{R"(permitlisten="8080")", {}, {HP("*", 8080)}},
        PermitCase{R"(permitlisten="*")", {}, {AnyPort("*")}},
        PermitCase{R"(permitlisten="localhost:8080")", {}, {HP("localhost", 8080)}},
        PermitCase{R"(permitlisten="[::1]:9000",permitlisten="127.0.0.1:*")",
                   {},
                   {HP("::1", 9000), AnyPort("127.0.0.1")}},
        PermitCase{R"(permitopen="h:22",permitlisten="2222")", {HP("h", 22)}, {HP("*", 2222)}}));

// ---- expiry-time ----

absl::Time Utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

absl::Time Local(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  absl::TimeZone zone;
  if (!absl::LoadTimeZone("localtime", &zone)) zone = absl::UTCTimeZone();
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), zone);
}

struct ExpiryCase {
  std::string_view options;
  absl::Time expected;
};

class ExpiryTest : public ::testing::TestWithParam<ExpiryCase> {};

TEST_P(ExpiryTest, Parses) {
  KeyOptions options = OptionsOf(GetParam().options);
  ASSERT_TRUE(options.expiry.has_value()) << GetParam().options;
  EXPECT_EQ(*options.expiry, GetParam().expected) << GetParam().options;
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ExpiryTest,
    ::testing::Values(
        ExpiryCase{R"(expiry-time="20300102Z")", Utc(2030, 1, 2)},
        ExpiryCase{R"(expiry-time="203001020304Z")", Utc(2030, 1, 2, 3, 4)},
        ExpiryCase{R"(expiry-time="20300102030405Z")", Utc(2030, 1, 2, 3, 4, 5)},
        ExpiryCase{R"(expiry-time="20300102030405z")", Utc(2030, 1, 2, 3, 4, 5)},
        ExpiryCase{R"(expiry-time="20300102UTC")", Utc(2030, 1, 2)},
        ExpiryCase{R"(expiry-time="20240229235959Z")", Utc(2024, 2, 29, 23, 59, 59)},
        ExpiryCase{R"(expiry-time="20300102")", Local(2030, 1, 2)},
        ExpiryCase{R"(expiry-time="203001020304")", Local(2030, 1, 2, 3, 4)},
        ExpiryCase{R"(expiry-time="20300102030405")", Local(2030, 1, 2, 3, 4, 5)},
        // Several expiry-time options: the earliest wins, as in sshd.
        ExpiryCase{R"(expiry-time="20310101Z",expiry-time="20300101Z")", Utc(2030, 1, 1)},
        ExpiryCase{R"(expiry-time="20300101Z",expiry-time="20310101Z")", Utc(2030, 1, 1)}));

// ---- bad lines ----

struct BadLineCase {
  std::string name;
  std::string line;
  std::string message;
};

void PrintTo(const BadLineCase& c, std::ostream* os) { *os << c.name; }

class BadLineTest : public ::testing::TestWithParam<BadLineCase> {};

TEST_P(BadLineTest, IsRejectedWithPreciseMessage) {
  EXPECT_EQ(ErrorOf(GetParam().line), GetParam().message) << GetParam().line;
}

std::vector<BadLineCase> BadLines() {
  const std::string ed25519 = Decoded(kEd25519Blob);
  const std::string point = Ecdsa256Point();
  std::string off_curve_point = point;
  off_curve_point.back() = static_cast<char>(off_curve_point.back() ^ 0x01);
  const std::string long_line =
      "ssh-ed25519 " + std::string(kEd25519Blob) + " " + std::string(9000, 'c');
  return {
      // Options.
      {"UnknownOption", WithOptions("permit-open=\"a:1\""), "unknown option 'permit-open'"},
      {"UnknownFlag", WithOptions("no-pty,no-shell"), "unknown option 'no-shell'"},
      {"NegatedRestrict", WithOptions("no-restrict"), "unknown option 'no-restrict'"},
      {"Environment", WithOptions("environment=\"A=b\""), "unsupported option 'environment'"},
      {"Tunnel", WithOptions("tunnel=\"0\""), "unsupported option 'tunnel'"},
      {"VerifyRequired", WithOptions("verify-required"), "unsupported option 'verify-required'"},
      {"NoTouchRequired", WithOptions("no-touch-required"),
       "unsupported option 'no-touch-required'"},
      {"MissingClosingQuote", "command=\"ls " + std::string(kEd25519Line),
       "options: missing closing quote"},
      {"UnquotedValue", WithOptions("from=10.0.0.1"),
       "option 'from': value must be in double quotes"},
      {"ValueOptionWithoutValue", WithOptions("from"),
       "option 'from' needs a value (from=\"...\")"},
      {"FlagWithValue", WithOptions("no-pty=\"yes\""), "option 'no-pty' does not take a value"},
      {"GarbageAfterValue", WithOptions("command=\"ls\"x"),
       "unexpected 'x' after the value of option 'command'"},
      {"TrailingComma", WithOptions("no-pty,"), "unexpected end of options after ','"},
      {"EmptyOption", WithOptions("no-pty,,no-agent-forwarding"),
       "empty option in the option list"},
      {"DuplicateFrom", WithOptions("from=\"1.2.3.4\",from=\"5.6.7.8\""),
       "duplicate option 'from'"},
      {"DuplicateCommand", WithOptions("command=\"a\",command=\"b\""),
       "duplicate option 'command'"},
      {"DuplicatePrincipals", WithOptions("principals=\"a\",principals=\"b\""),
       "duplicate option 'principals'"},
      {"EmptyPrincipal", WithOptions("principals=\"a,,b\""), "principals: empty principal name"},
      {"OptionsOnly", "no-pty,no-agent-forwarding", "missing key type after the options"},
      // from=
      {"FromEmpty", WithOptions("from=\"\""), "from: invalid pattern '': empty pattern"},
      {"FromSpace", WithOptions("from=\"10.0.0.1, 10.0.0.2\""),
       "from: invalid pattern ' 10.0.0.2': invalid character ' '"},
      {"FromBadCidrAddress", WithOptions("from=\"10.0.0/8\""),
       "from: invalid pattern '10.0.0/8': '10.0.0' is not an IPv4 or IPv6 address"},
      {"FromBadPrefix", WithOptions("from=\"10.0.0.0/x\""),
       "from: invalid pattern '10.0.0.0/x': invalid prefix length 'x'"},
      {"FromPrefixTooLong", WithOptions("from=\"10.0.0.0/33\""),
       "from: invalid pattern '10.0.0.0/33': prefix length 33 is too long for IPv4 (at most 32)"},
      {"FromHostBits", WithOptions("from=\"10.1.2.3/8\""),
       "from: invalid pattern '10.1.2.3/8': host bits are set (inconsistent mask length; the "
       "network is '10.0.0.0/8')"},
      {"FromWildcardCidr", WithOptions("from=\"10.*/8\""),
       "from: invalid pattern '10.*/8': '10.*' is not an IPv4 or IPv6 address"},
      {"FromBareBang", WithOptions("from=\"!\""), "from: invalid pattern '!': empty pattern"},
      // permitopen= / permitlisten=
      {"PermitOpenBadPort", WithOptions("permitopen=\"host:x\""), "permitopen: invalid port 'x'"},
      {"PermitOpenPortZero", WithOptions("permitopen=\"host:0\""), "permitopen: invalid port '0'"},
      {"PermitOpenPortTooBig", WithOptions("permitopen=\"host:65536\""),
       "permitopen: invalid port '65536'"},
      {"PermitOpenNoPort", WithOptions("permitopen=\"host\""),
       "permitopen: missing port in 'host' (expected host:port)"},
      {"PermitOpenEmptyPort", WithOptions("permitopen=\"host:\""), "permitopen: invalid port ''"},
      {"PermitOpenNoHost", WithOptions("permitopen=\":22\""), "permitopen: missing host in ':22'"},
      {"PermitOpenList", WithOptions("permitopen=\"a:1,b:2\""),
       "permitopen: invalid port '1,b:2' (one host:port per permitopen option)"},
      {"PermitOpenBareIpv6", WithOptions("permitopen=\"2001:db8::1:22\""),
       "permitopen: IPv6 address must be in brackets ('[addr]:port') in '2001:db8::1:22'"},
      {"PermitOpenUnclosedBracket", WithOptions("permitopen=\"[::1:22\""),
       "permitopen: missing ']' in '[::1:22'"},
      {"PermitOpenBracketNoPort", WithOptions("permitopen=\"[::1]\""),
       "permitopen: expected ':port' after ']' in '[::1]'"},
      {"PermitOpenBracketNotIpv6", WithOptions("permitopen=\"[host]:22\""),
       "permitopen: invalid IPv6 address 'host'"},
      {"PermitOpenHostWithSpace", WithOptions("permitopen=\"a b:22\""),
       "permitopen: invalid host 'a b'"},
      {"PermitListenPortZero", WithOptions("permitlisten=\"0\""), "permitlisten: invalid port '0'"},
      {"PermitListenBadPort", WithOptions("permitlisten=\"localhost:http\""),
       "permitlisten: invalid port 'http'"},
      // expiry-time=
      {"ExpiryShort", WithOptions("expiry-time=\"2030\""),
       "expiry-time: invalid time '2030' (expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, "
       "optionally followed by Z for UTC)"},
      {"ExpiryLetters", WithOptions("expiry-time=\"2030O101\""),
       "expiry-time: invalid time '2030O101' (expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, "
       "optionally followed by Z for UTC)"},
      {"ExpiryFeb30", WithOptions("expiry-time=\"20300230\""),
       "expiry-time: '20300230' is not a valid calendar date and time"},
      {"ExpiryMonth13", WithOptions("expiry-time=\"20301301Z\""),
       "expiry-time: '20301301Z' is not a valid calendar date and time"},
      {"ExpiryHour24", WithOptions("expiry-time=\"203001012400Z\""),
       "expiry-time: '203001012400Z' is not a valid calendar date and time"},
      {"ExpiryNotLeapYear", WithOptions("expiry-time=\"20230229Z\""),
       "expiry-time: '20230229Z' is not a valid calendar date and time"},
      {"ExpiryBefore1970", WithOptions("expiry-time=\"19600101Z\""),
       "expiry-time: '19600101Z' is not after 1970"},
      // Key type and base64.
      {"CertificateType", std::string(kEd25519CertLine),
       "certificate key type 'ssh-ed25519-cert-v01@openssh.com' is not accepted in "
       "authorized_keys (list the CA key with cert-authority instead)"},
      {"CertificateTypeAfterOptions", "no-pty " + std::string(kEd25519CertLine),
       "certificate key type 'ssh-ed25519-cert-v01@openssh.com' is not accepted in "
       "authorized_keys (list the CA key with cert-authority instead)"},
      {"DsaType", "ssh-dss AAAAB3NzaC1kc3MAAACBAP test", "unsupported key type 'ssh-dss'"},
      {"UnknownTypeWord", "ssh-foo " + std::string(kEd25519Blob), "unsupported key type 'ssh-foo'"},
      {"UnknownTypeAfterOptions", "no-pty ssh-foo " + std::string(kEd25519Blob),
       "unsupported key type 'ssh-foo'"},
      {"MissingBlob", "ssh-ed25519", "missing base64 key data after key type 'ssh-ed25519'"},
      {"BadBase64Char", "ssh-ed25519 AAAA$AAA", "base64 key data is invalid"},
      {"BadBase64Length", "ssh-ed25519 " + std::string(kEd25519Blob.substr(1)),
       "base64 key data is invalid"},
      {"TypeMismatch", "ssh-rsa " + std::string(kEd25519Blob),
       "key type 'ssh-rsa' does not match the type inside the key blob ('ssh-ed25519')"},
      {"TypeMismatchEcdsaCurve", "ecdsa-sha2-nistp384 " + std::string(kEcdsa256Blob),
       "key type 'ecdsa-sha2-nistp384' does not match the type inside the key blob "
       "('ecdsa-sha2-nistp256')"},
      // Key blob structure.
      {"EmptyBlobTypeTruncated", LineFor("ssh-ed25519", std::string("\0\0\0\x20ssh", 7)),
       "key blob is truncated (missing key type)"},
      {"TruncatedEd25519", LineFor("ssh-ed25519", ed25519.substr(0, ed25519.size() - 1)),
       "key blob is truncated (missing Ed25519 public key)"},
      {"TrailingBytes", LineFor("ssh-ed25519", ed25519 + "xyz"), "key blob has 3 trailing bytes"},
      {"Ed25519WrongLength",
       LineFor("ssh-ed25519", WireString("ssh-ed25519") + WireString(std::string(31, 'k'))),
       "Ed25519 public key must be 32 bytes, got 31"},
      {"SkMissingApplication",
       LineFor("sk-ssh-ed25519@openssh.com",
               WireString("sk-ssh-ed25519@openssh.com") + WireString(std::string(32, 'k'))),
       "key blob is truncated (missing security key application)"},
      {"ShortRsa", LineFor("ssh-rsa", RsaBlob(96, 0xc3)), "RSA key too short (768 bits)"},
      {"RsaOneBitShort", LineFor("ssh-rsa", RsaBlob(128, 0x7f)), "RSA key too short (1023 bits)"},
      {"RsaTooLong", LineFor("ssh-rsa", RsaBlob(2049, 0x01)), "RSA key too long (16385 bits)"},
      {"RsaTruncatedModulus",
       LineFor("ssh-rsa", WireString("ssh-rsa") + WireString(std::string("\x01\x00\x01", 3))),
       "key blob is truncated (missing RSA modulus)"},
      {"RsaNegativeModulus",
       LineFor("ssh-rsa", WireString("ssh-rsa") + WireString(std::string("\x01\x00\x01", 3)) +
                              WireString(std::string(128, '\xc1'))),
       "RSA modulus is negative"},
      {"RsaModulusLeadingZero",
       LineFor("ssh-rsa", WireString("ssh-rsa") + WireString(std::string("\x01\x00\x01", 3)) +
                              WireString(std::string(1, '\0') + std::string(128, '\x41'))),
       "RSA modulus is not minimally encoded"},
      {"RsaEvenExponent",
       LineFor("ssh-rsa", WireString("ssh-rsa") + WireString(std::string("\x01\x00\x00", 3)) +
                              WireString(std::string(128, '\x41'))),
       "RSA public exponent is invalid (must be odd and at least 3)"},
      {"RsaZeroExponent",
       LineFor("ssh-rsa",
               WireString("ssh-rsa") + WireString("") + WireString(std::string(128, '\x41'))),
       "RSA public exponent is zero"},
      {"EcdsaCurveMismatch",
       LineFor("ecdsa-sha2-nistp256",
               WireString("ecdsa-sha2-nistp256") + WireString("nistp384") + WireString(point)),
       "ECDSA curve 'nistp384' does not match key type 'ecdsa-sha2-nistp256'"},
      {"EcdsaShortPoint",
       LineFor("ecdsa-sha2-nistp256", WireString("ecdsa-sha2-nistp256") + WireString("nistp256") +
                                          WireString(point.substr(0, 33))),
       "ECDSA public key for nistp256 must be 65 bytes, got 33"},
      {"EcdsaCompressedPoint",
       LineFor("ecdsa-sha2-nistp256", WireString("ecdsa-sha2-nistp256") + WireString("nistp256") +
                                          WireString("\x02" + point.substr(1))),
       "ECDSA public key must be an uncompressed point"},
      {"EcdsaOffCurve",
       LineFor("ecdsa-sha2-nistp256", WireString("ecdsa-sha2-nistp256") + WireString("nistp256") +
                                          WireString(off_curve_point)),
       "ECDSA public key is not a valid point on nistp256"},
      // Whole line.
      {"NulByte", std::string("ssh-ed25519 AAAA\0AAA", 20), "line contains a NUL byte"},
      {"TooLong", long_line, "line too long (9081 bytes, at most 8192)"},
      {"Empty", "   ", "empty line"},
      {"Comment", "# ssh-ed25519 AAAA", "comment line"},
  };
}

INSTANTIATE_TEST_SUITE_P(Table, BadLineTest, ::testing::ValuesIn(BadLines()),
                         [](const ::testing::TestParamInfo<BadLineCase>& info) {
                           return info.param.name;
                         });

// ---- whole files ----

TEST(ParseAuthorizedKeysTest, SkipsBlankAndCommentLinesAndReportsBadOnesWithFileAndLine) {
  const std::string text = std::string("# keys for alice\n") +                   // 1
                           "\n" +                                                // 2
                           std::string(kEd25519Line) + "\r\n" +                  // 3
                           "   # indented comment\n" +                           // 4
                           "no-pty,bogus " + std::string(kRsa2048Line) + "\n" +  // 5
                           " \t \n" +                                            // 6
                           "restrict " + std::string(kEcdsa256Line) + "\n" +     // 7
                           "ssh-ed25519 not-base64";  // 8, no final newline
  ParsedKeys parsed = ParseAuthorizedKeys(text, "/home/alice/.ssh/authorized_keys");
  ASSERT_EQ(parsed.keys.size(), 2u);
  EXPECT_EQ(parsed.keys[0].source, "/home/alice/.ssh/authorized_keys:3");
  EXPECT_EQ(parsed.keys[0].comment, "alice@example");
  EXPECT_EQ(parsed.keys[1].source, "/home/alice/.ssh/authorized_keys:7");
  EXPECT_TRUE(parsed.keys[1].options.restrict);
  ASSERT_EQ(parsed.problems.size(), 2u);
  EXPECT_EQ(parsed.problems[0].source, "/home/alice/.ssh/authorized_keys:5");
  EXPECT_EQ(parsed.problems[0].message, "unknown option 'bogus'");
  EXPECT_EQ(parsed.problems[1].source, "/home/alice/.ssh/authorized_keys:8");
  EXPECT_EQ(parsed.problems[1].message, "base64 key data is invalid");
}

TEST(ParseAuthorizedKeysTest, LongAndNulLinesAreProblemsEvenWhenCommentedOut) {
  const std::string text = "#" + std::string(8192, 'x') + "\n" + std::string("# a\0b\n", 6) +
                           std::string(kEd25519Line) + "\n";
  ParsedKeys parsed = ParseAuthorizedKeys(text, "f");
  ASSERT_EQ(parsed.keys.size(), 1u);
  EXPECT_EQ(parsed.keys[0].source, "f:3");
  ASSERT_EQ(parsed.problems.size(), 2u);
  EXPECT_EQ(parsed.problems[0].source, "f:1");
  EXPECT_EQ(parsed.problems[0].message, "line too long (8193 bytes, at most 8192)");
  EXPECT_EQ(parsed.problems[1].source, "f:2");
  EXPECT_EQ(parsed.problems[1].message, "line contains a NUL byte");
}

TEST(ParseAuthorizedKeysTest, LineOfExactly8KiBIsAllowed) {
  std::string line = std::string(kEd25519Line) + " ";
  line += std::string(8192 - line.size(), 'c');
  ParsedKeys parsed = ParseAuthorizedKeys(line, "f");
  EXPECT_THAT(parsed.problems, IsEmpty());
  EXPECT_EQ(parsed.keys.size(), 1u);
}

TEST(ParseAuthorizedKeysTest, EmptyTextHasNothing) {
  ParsedKeys parsed = ParseAuthorizedKeys("", "f");
  EXPECT_THAT(parsed.keys, IsEmpty());
  EXPECT_THAT(parsed.problems, IsEmpty());
}

TEST(ParseAuthorizedKeysTest, DuplicateKeysAreAllKept) {
  ParsedKeys parsed = ParseAuthorizedKeys(
      std::string(kEd25519Line) + "\nno-pty " + std::string(kEd25519Line) + "\n", "f");
  ASSERT_EQ(parsed.keys.size(), 2u);
  EXPECT_EQ(parsed.keys[0].blob, parsed.keys[1].blob);
}

class LoadAuthorizedKeysFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "alknet_ak_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::remove((dir_ + "/authorized_keys").c_str());
    rmdir((dir_ + "/subdir").c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(LoadAuthorizedKeysFileTest, MissingFileIsAnEmptySet) {
  absl::StatusOr<ParsedKeys> parsed = LoadAuthorizedKeysFile(dir_ + "/does-not-exist");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->keys, IsEmpty());
  EXPECT_THAT(parsed->problems, IsEmpty());
}

TEST_F(LoadAuthorizedKeysFileTest, ReadsAndParsesWithPathInSources) {
  const std::string path = dir_ + "/authorized_keys";
  std::FILE* file = std::fopen(path.c_str(), "w");
  ASSERT_NE(file, nullptr);
  const std::string text = std::string(kEd25519Line) + "\nbad line\n";
  std::fwrite(text.data(), 1, text.size(), file);
  std::fclose(file);
  absl::StatusOr<ParsedKeys> parsed = LoadAuthorizedKeysFile(path);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->keys.size(), 1u);
  EXPECT_EQ(parsed->keys[0].source, path + ":1");
  ASSERT_EQ(parsed->problems.size(), 1u);
  EXPECT_EQ(parsed->problems[0].source, path + ":2");
  EXPECT_EQ(parsed->problems[0].message, "unknown option 'bad'");
}

TEST_F(LoadAuthorizedKeysFileTest, DirectoryIsAnError) {
  const std::string path = dir_ + "/subdir";
  ASSERT_EQ(mkdir(path.c_str(), 0700), 0);
  EXPECT_FALSE(LoadAuthorizedKeysFile(path).ok());
}

}  // namespace
}  // namespace alknet::auth
