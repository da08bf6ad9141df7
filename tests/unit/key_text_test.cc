// authorized_keys lines rendered from parsed keys (server/auth/key_text.h): parse -> render ->
// parse gives the same key, the options text of a line as written, and RSA key sizes.
#include "server/auth/key_text.h"

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/fingerprint.h"
#include "server/auth/wire_reader.h"
#include "tests/support/agent_process.h"
#include "tests/unit/key_blobs.h"

namespace alknet::auth {
namespace {

using ::testing::HasSubstr;

const std::string kKey =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIObAnDs+QOg1+6AZ+iMEVmwdt/k10vLmiDPBQX2+vh5u alice@example";

struct RoundTrip {
  std::string name;
  std::string options;  // as an operator writes them
};

void PrintTo(const RoundTrip& trip, std::ostream* out) { *out << trip.options; }

class KeyTextRoundTripTest : public ::testing::TestWithParam<RoundTrip> {};

// parse -> RenderOptions + KeyLine -> parse: the same key and options; rendering is a fixed point.
TEST_P(KeyTextRoundTripTest, ParseRenderParseKeepsTheKey) {
  const std::string line = absl::StrCat(GetParam().options, GetParam().options.empty() ? "" : " ", kKey);
  absl::StatusOr<AuthorizedKey> first = ParseAuthorizedKeyLine(line);
  ASSERT_TRUE(first.ok()) << first.status() << "\n" << line;
  const std::string rendered = KeyLine(RenderOptions(first->options), *first);
  absl::StatusOr<AuthorizedKey> second = ParseAuthorizedKeyLine(rendered);
  ASSERT_TRUE(second.ok()) << second.status() << "\n" << rendered;
  EXPECT_TRUE(second->options == first->options) << line << "\nrendered as\n" << rendered;
  EXPECT_EQ(second->key_type, first->key_type);
  EXPECT_EQ(second->blob, first->blob);
  EXPECT_EQ(second->comment, first->comment);
  EXPECT_EQ(second->fingerprint, first->fingerprint);
  EXPECT_EQ(KeyLine(RenderOptions(second->options), *second), rendered);
  // The options as written are found again in the line they came from.
  EXPECT_EQ(OptionsText(line, *first), GetParam().options);
}

INSTANTIATE_TEST_SUITE_P(
    Lines, KeyTextRoundTripTest,
    ::testing::Values(
        RoundTrip{"NoOptions", ""},
        RoundTrip{"FromAndPermitOpen",
                  R"(from="10.0.0.0/8,!10.1.2.3,*.example.net",permitopen="db.internal:5432",)"
                  R"(permitopen="[2001:db8::1]:*",permitopen="*:443")"},
        RoundTrip{"PermitListenBarePortAndHost", R"(permitlisten="8080",permitlisten="localhost:9000")"},
        RoundTrip{"CommandWithQuotesAndFlags",
                  R"(command="echo \"hello, world\"; exit 0",no-pty,no-agent-forwarding,no-X11-forwarding)"},
        // sshd's only escape is \" : a backslash before anything else is itself.
        RoundTrip{"CommandWithBackslashes", R"(command="printf 'a\tb\n' | tr \\ / \"x\"")"},
        RoundTrip{"ExpiryLocalAndUtc", R"(expiry-time="20301231",expiry-time="203001021530Z",no-user-rc)"},
        RoundTrip{"RestrictThenAllow", R"(restrict,port-forwarding,pty,from="192.0.2.0/24")"},
        RoundTrip{"RestrictOverridesEarlierFlags", R"(no-pty,restrict)"},
        RoundTrip{"CertAuthorityWithPrincipals",
                  R"(cert-authority,principals="alice,ops-team",no-port-forwarding,no-x11-forwarding)"}),
    [](const ::testing::TestParamInfo<RoundTrip>& info) { return info.param.name; });

// environment= is an sshd option we would not enforce: the parser refuses the line, so there is
// never a parsed key with it to render.
TEST(KeyTextTest, EnvironmentOptionIsRefusedNotRendered) {
  absl::StatusOr<AuthorizedKey> parsed =
      ParseAuthorizedKeyLine(absl::StrCat(R"(environment="FOO=bar",no-pty )", kKey));
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("unsupported option 'environment'"));
}

TEST(KeyTextTest, RenderOptionsCanonicalForm) {
  absl::StatusOr<AuthorizedKey> parsed = ParseAuthorizedKeyLine(absl::StrCat(
      R"(no-pty,command="uptime",permitopen="[::1]:22",expiry-time="20300102153000Z",from="10.0.0.1" )",
      kKey));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(RenderOptions(parsed->options),
            R"(from="10.0.0.1",permitopen="[::1]:22",expiry-time="20300102153000Z",command="uptime",no-pty)");
  EXPECT_EQ(RenderOptions(KeyOptions{}), "");
}

TEST(KeyTextTest, KeyLineWithAndWithoutOptionsAndComment) {
  absl::StatusOr<AuthorizedKey> parsed = ParseAuthorizedKeyLine(kKey);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(KeyLine("", *parsed), kKey);
  EXPECT_EQ(KeyLine("no-pty", *parsed), absl::StrCat("no-pty ", kKey));
  parsed->comment.clear();
  EXPECT_EQ(KeyLine("", *parsed), kKey.substr(0, kKey.rfind(' ')));
}

TEST(KeyTextTest, OptionsTextSkipsTheKeyTypeInsideOptionsAndComment) {
  const std::string options = R"(command="ssh-ed25519 AAAA x",no-pty)";
  const std::string line = absl::StrCat("  ", options, "\t", kKey, " ssh-ed25519 again");
  absl::StatusOr<AuthorizedKey> parsed = ParseAuthorizedKeyLine(line);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(OptionsText(line, *parsed), options);
  EXPECT_EQ(OptionsText(kKey, *parsed), "");
}

TEST(KeyTextTest, RenderHostPortBracketsIpv6AndStarsAnyPort) {
  EXPECT_EQ(RenderHostPort({.host = "db", .port = 5432}), "db:5432");
  EXPECT_EQ(RenderHostPort({.host = "2001:db8::1", .port = 22}), "[2001:db8::1]:22");
  EXPECT_EQ(RenderHostPort({.host = "*", .any_port = true}), "*:*");
}

TEST(KeyTextTest, QuoteOptionValueEscapesQuotesOnly) {
  EXPECT_EQ(QuoteOptionValue(""), R"("")");
  EXPECT_EQ(QuoteOptionValue(R"(say "hi")"), R"("say \"hi\"")");
  EXPECT_EQ(QuoteOptionValue(R"(a\tb \\ c)"), R"("a\tb \\ c")");
  EXPECT_EQ(QuoteOptionValue(R"(\")"), R"("\\"")");  // parses back to \"
}

// ---- RSA key sizes ----

std::string RsaBlob(int bits, const testing::TempDir& dir) {
  const std::string path = dir.File(absl::StrCat("rsa", bits));
  testing::CommandResult made = testing::RunCommand(
      {"ssh-keygen", "-q", "-t", "rsa", "-b", std::to_string(bits), "-N", "", "-C", "t", "-f", path});
  EXPECT_EQ(made.exit_code, 0) << made.err;
  return LineBlob(testing::ReadFile(path + ".pub"));
}

TEST(RsaModulusBitsTest, KeysMadeBySshKeygen) {
  testing::TempDir dir;
  const std::string blob2048 = RsaBlob(2048, dir);
  const std::string blob3072 = RsaBlob(3072, dir);
  EXPECT_EQ(RsaModulusBits(blob2048), 2048);
  EXPECT_EQ(RsaModulusBits(blob3072), 3072);
  // Every truncation is unreadable, never a smaller size or a read past the end.
  for (size_t keep : {size_t{0}, size_t{3}, size_t{11}, size_t{30}, blob3072.size() - 1}) {
    EXPECT_EQ(RsaModulusBits(std::string_view(blob3072).substr(0, keep)), 0) << keep;
  }
}

TEST(RsaModulusBitsTest, MpintLeadingZerosAndOddSizes) {
  auto blob = [](std::string modulus) {
    std::string out;
    PutString(out, "ssh-rsa");
    PutString(out, std::string("\x01\x00\x01", 3));
    PutString(out, modulus);
    return out;
  };
  // A positive mpint with its top bit set carries a leading zero byte.
  EXPECT_EQ(RsaModulusBits(blob(std::string(1, '\0') + "\x80" + std::string(255, '\x01'))), 2048);
  EXPECT_EQ(RsaModulusBits(blob("\x01" + std::string(256, '\x01'))), 2049);
  EXPECT_EQ(RsaModulusBits(blob("\x7f")), 7);
  EXPECT_EQ(RsaModulusBits(blob(std::string(4, '\0'))), 0);
  EXPECT_EQ(RsaModulusBits(blob("")), 0);
  std::string truncated = blob(std::string(1, '\0') + "\x80" + std::string(255, '\x01'));
  truncated.pop_back();
  EXPECT_EQ(RsaModulusBits(truncated), 0);
}

}  // namespace
}  // namespace alknet::auth
