// Unit tests for OpenSSH certificates: the parser and CA signature check on certificates made at
// test time by the real ssh-keygen (every CA and key type), hand-corrupted blobs, the policy
// (EvaluateCertificate: trust routes, validity, principals, options), trusted CA key files and
// the certificate fields of the auth log line.
#include "server/auth/certificate.h"

#include <cstdio>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/auth_log.h"
#include "server/auth/certificate_policy.h"
#include "server/auth/fingerprint.h"
#include "server/auth/revocation.h"
#include "server/auth/wire_reader.h"
#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/unit/key_blobs.h"

namespace alknet::auth {
namespace {

using ::alknet::testing::CommandResult;
using ::alknet::testing::MakeKey;
using ::alknet::testing::ReadFile;
using ::alknet::testing::RunCommand;
using ::alknet::testing::TempDir;
using ::alknet::testing::TestKey;
using ::alknet::testing::WriteFile;
using ::testing::HasSubstr;

// ssh-keygen -s <ca> -I <id> <args...> <user>.pub; returns the certificate blob.
std::string Sign(const TestKey& ca, const TestKey& user, std::vector<std::string> args,
                 const std::string& id = "test-id") {
  std::vector<std::string> argv = {"ssh-keygen", "-q", "-s", ca.private_path, "-I", id};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(user.private_path + ".pub");
  CommandResult made = RunCommand(argv);
  EXPECT_EQ(made.exit_code, 0) << made.err;
  return LineBlob(ReadFile(user.private_path + "-cert.pub"));
}

// Re-encodes a parsed certificate (tests mutate fields, then check what the parser says).
std::string Encode(const Certificate& cert) {
  std::string out;
  PutString(out, cert.certificate_type);
  PutString(out, cert.nonce);
  SshWireReader key(cert.public_key);
  std::string_view type;
  key.ReadString(type);
  out.append(key.rest());
  PutUint64(out, cert.serial);
  PutUint32(out, cert.type);
  PutString(out, cert.key_id);
  std::string principals;
  for (const std::string& p : cert.principals) PutString(principals, p);
  PutString(out, principals);
  PutUint64(out, cert.valid_after);
  PutUint64(out, cert.valid_before);
  for (const auto* options : {&cert.critical_options, &cert.extensions}) {
    std::string section;
    for (const CertificateOption& option : *options) {
      PutString(section, option.name);
      PutString(section, option.data);
    }
    PutString(out, section);
  }
  PutString(out, cert.reserved);
  PutString(out, cert.ca_key);
  PutString(out, cert.signature);
  return out;
}

std::string NestedString(std::string_view value) {
  std::string out;
  PutString(out, value);
  return out;
}

class CertificateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = MakeKey(dir_, "ca");
    user_ = MakeKey(dir_, "user");
  }
  Certificate ParseOk(const std::string& blob) {
    absl::StatusOr<Certificate> cert = ParseAndVerifyCertificate(blob);
    EXPECT_TRUE(cert.ok()) << cert.status();
    return cert.ok() ? *cert : Certificate{};
  }

  TempDir dir_;
  TestKey ca_;
  TestKey user_;
};

TEST_F(CertificateTest, ParsesEveryFieldOfAnEd25519Certificate) {
  const std::string blob =
      Sign(ca_, user_,
           {"-n", "tester,bob", "-V", "-1h:+1h", "-z", "42", "-O", "clear", "-O", "permit-port-forwarding",
            "-O", "extension:custom@example.com=v", "-O", "force-command=/bin/true", "-O",
            "source-address=10.0.0.0/8,192.0.2.1"},
           "alice id");
  Certificate cert = ParseOk(blob);
  EXPECT_EQ(cert.certificate_type, "ssh-ed25519-cert-v01@openssh.com");
  EXPECT_EQ(cert.key_type, "ssh-ed25519");
  EXPECT_EQ(cert.public_key, KeyBlob(user_));
  EXPECT_EQ(Sha256Fingerprint(cert.public_key), user_.fingerprint);
  EXPECT_EQ(cert.ca_key, KeyBlob(ca_));
  EXPECT_EQ(cert.ca_key_type, "ssh-ed25519");
  EXPECT_EQ(cert.signature_algorithm, "ssh-ed25519");
  EXPECT_EQ(cert.serial, 42u);
  EXPECT_EQ(cert.type, kUserCertificate);
  EXPECT_EQ(cert.key_id, "alice id");
  EXPECT_EQ(cert.principals, (std::vector<std::string>{"tester", "bob"}));
  EXPECT_EQ(cert.valid_before - cert.valid_after, 7200u);
  EXPECT_EQ(cert.nonce.size(), 32u);
  ASSERT_EQ(cert.critical_options.size(), 2u);
  EXPECT_EQ(cert.critical_options[0].name, "force-command");
  EXPECT_EQ(*CertificateOptionString(cert.critical_options[0]), "/bin/true");
  EXPECT_EQ(cert.critical_options[1].name, "source-address");
  EXPECT_EQ(*CertificateOptionString(cert.critical_options[1]), "10.0.0.0/8,192.0.2.1");
  ASSERT_EQ(cert.extensions.size(), 2u);
  EXPECT_EQ(cert.extensions[0].name, "custom@example.com");
  EXPECT_EQ(cert.extensions[0].data, NestedString("v"));
  EXPECT_TRUE(cert.HasExtension("permit-port-forwarding"));
  EXPECT_FALSE(cert.HasExtension("permit-pty"));
  EXPECT_EQ(cert.blob, blob);
  EXPECT_EQ(Encode(cert), blob);  // the test encoder reproduces the original bytes
}

TEST_F(CertificateTest, DefaultsAndForeverValidity) {
  Certificate cert = ParseOk(Sign(ca_, user_, {"-n", "tester"}));
  EXPECT_EQ(cert.valid_after, 0u);
  EXPECT_EQ(cert.valid_before, kCertificateForever);
  EXPECT_EQ(cert.serial, 0u);
  EXPECT_TRUE(cert.critical_options.empty());
  std::vector<std::string> names;
  for (const CertificateOption& e : cert.extensions) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"permit-X11-forwarding", "permit-agent-forwarding",
                                             "permit-port-forwarding", "permit-pty", "permit-user-rc"}));
  Certificate host = ParseOk(Sign(ca_, user_, {"-h", "-n", "host.example"}));
  EXPECT_EQ(host.type, kHostCertificate);
}

TEST_F(CertificateTest, EveryCaTypeAndUserKeyTypeVerifies) {
  struct CaCase {
    std::string name;
    std::string type;
    std::vector<std::string> bits;
    std::vector<std::string> sign_args;
    std::string algorithm;
  };
  const std::vector<CaCase> cas = {
      {"ca_ed25519", "ed25519", {}, {}, "ssh-ed25519"},
      {"ca_rsa", "rsa", {}, {}, "rsa-sha2-512"},
      {"ca_rsa256", "rsa", {}, {"-t", "rsa-sha2-256"}, "rsa-sha2-256"},
      {"ca_p256", "ecdsa", {"-b", "256"}, {}, "ecdsa-sha2-nistp256"},
      {"ca_p384", "ecdsa", {"-b", "384"}, {}, "ecdsa-sha2-nistp384"},
      {"ca_p521", "ecdsa", {"-b", "521"}, {}, "ecdsa-sha2-nistp521"},
  };
  std::vector<TestKey> users = {MakeKey(dir_, "u_ed25519"), MakeKey(dir_, "u_rsa", "rsa"),
                                MakeKey(dir_, "u_ecdsa", "ecdsa")};
  for (const CaCase& c : cas) {
    TestKey ca;
    ca.private_path = dir_.File(c.name);
    std::vector<std::string> argv = {"ssh-keygen", "-q", "-t", c.type, "-N", "", "-f", ca.private_path};
    argv.insert(argv.end(), c.bits.begin(), c.bits.end());
    ASSERT_EQ(RunCommand(argv).exit_code, 0);
    ca.public_line = ReadFile(ca.private_path + ".pub");
    for (const TestKey& user : users) {
      std::vector<std::string> args = c.sign_args;
      args.insert(args.end(), {"-n", "tester"});
      Certificate cert = ParseOk(Sign(ca, user, args));
      EXPECT_EQ(cert.signature_algorithm, c.algorithm) << c.name;
      EXPECT_EQ(cert.ca_key, KeyBlob(ca)) << c.name;
      EXPECT_EQ(cert.public_key, KeyBlob(user)) << c.name << " " << user.private_path;
      EXPECT_TRUE(IsCertificateKeyType(cert.certificate_type));
    }
  }
}

TEST_F(CertificateTest, RsaSha1CaSignatureIsRefused) {
  TestKey rsa_ca = MakeKey(dir_, "rsa_ca", "rsa");
  const std::string blob = Sign(rsa_ca, user_, {"-t", "ssh-rsa", "-n", "tester"});
  absl::StatusOr<Certificate> cert = ParseCertificate(blob);
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(cert->signature_algorithm, "ssh-rsa");
  absl::Status verified = VerifyCertificateSignature(*cert);
  EXPECT_FALSE(verified.ok());
  EXPECT_THAT(verified.message(), HasSubstr("SHA-1"));
}

TEST_F(CertificateTest, EveryTruncationIsAnError) {
  const std::string blob = Sign(ca_, user_, {"-n", "tester", "-O", "source-address=10.0.0.0/8"});
  for (size_t length = 0; length < blob.size(); ++length) {
    EXPECT_FALSE(ParseCertificate(blob.substr(0, length)).ok()) << "length " << length;
  }
  EXPECT_TRUE(ParseCertificate(blob).ok());
}

TEST_F(CertificateTest, TruncationInsideEachLengthFieldNamesTheField) {
  const std::string blob = Sign(ca_, user_, {"-n", "tester"});
  absl::StatusOr<Certificate> cut = ParseCertificate(blob.substr(0, 40));
  ASSERT_FALSE(cut.ok());
  EXPECT_THAT(cut.status().message(), HasSubstr("truncated"));
}

TEST_F(CertificateTest, EveryFlippedBitFailsParseOrSignature) {
  const std::string blob = Sign(ca_, user_, {"-n", "tester", "-z", "7"});
  ASSERT_TRUE(ParseAndVerifyCertificate(blob).ok());
  for (size_t i = 0; i < blob.size(); ++i) {
    for (int bit : {0, 7}) {
      std::string corrupt = blob;
      corrupt[i] = static_cast<char>(corrupt[i] ^ (1 << bit));
      EXPECT_FALSE(ParseAndVerifyCertificate(corrupt).ok()) << "byte " << i << " bit " << bit;
    }
  }
}

TEST_F(CertificateTest, FlippedSignatureByteFailsVerification) {
  const std::string blob = Sign(ca_, user_, {"-n", "tester"});
  std::string corrupt = blob;
  corrupt[corrupt.size() - 5] ^= 0x40;
  absl::StatusOr<Certificate> cert = ParseCertificate(corrupt);
  ASSERT_TRUE(cert.ok());
  absl::Status verified = VerifyCertificateSignature(*cert);
  EXPECT_FALSE(verified.ok());
  EXPECT_THAT(verified.message(), HasSubstr("does not verify"));
}

TEST_F(CertificateTest, TrailingGarbageIsRefused) {
  const std::string blob = Sign(ca_, user_, {"-n", "tester"});
  absl::StatusOr<Certificate> cert = ParseCertificate(blob + "x");
  ASSERT_FALSE(cert.ok());
  EXPECT_THAT(cert.status().message(), HasSubstr("1 trailing bytes"));
}

TEST_F(CertificateTest, StructuralViolationsAreRefused) {
  const Certificate good = ParseOk(Sign(ca_, user_, {"-n", "tester", "-O", "force-command=x", "-O",
                                                    "source-address=10.0.0.0/8"}));
  auto expect_error = [&](Certificate cert, std::string_view message) {
    absl::StatusOr<Certificate> parsed = ParseCertificate(Encode(cert));
    ASSERT_FALSE(parsed.ok()) << message;
    EXPECT_THAT(parsed.status().message(), HasSubstr(std::string(message)));
  };
  {
    Certificate c = good;
    std::swap(c.critical_options[0], c.critical_options[1]);
    expect_error(c, "not sorted");
  }
  {
    Certificate c = good;
    std::swap(c.extensions[0], c.extensions[1]);
    expect_error(c, "extensions are not sorted");
  }
  {
    Certificate c = good;
    c.extensions.insert(c.extensions.begin() + 1, c.extensions[1]);
    expect_error(c, "duplicate extension");
  }
  {
    Certificate c = good;
    c.type = 3;
    expect_error(c, "unknown certificate type 3");
  }
  {
    Certificate c = good;
    c.key_id = std::string("a\0b", 3);
    expect_error(c, "key id contains a NUL byte");
  }
  {
    Certificate c = good;
    c.principals.push_back(std::string("x\0", 2));
    expect_error(c, "principal contains a NUL byte");
  }
  {
    Certificate c = good;
    c.principals.assign(kMaxCertificatePrincipals + 1, "p");
    expect_error(c, "too many principals");
  }
  {
    Certificate c = good;
    c.ca_key = good.blob;  // a certificate as the CA key
    expect_error(c, "itself a certificate");
  }
  {
    Certificate c = good;
    c.certificate_type = "ssh-dss-cert-v01@openssh.com";
    expect_error(c, "unsupported certificate type");
  }
  {
    Certificate c = good;
    c.public_key = NestedString("ssh-ed25519") + NestedString("short");
    expect_error(c, "certified key");
  }
  {
    // Options sorted and unique, but a principal list that is not a list of strings.
    Certificate c = good;
    c.principals = {"tester"};
    std::string broken = Encode(c);
    const std::string list = NestedString("tester");
    const size_t at = broken.find(NestedString(list));
    ASSERT_NE(at, std::string::npos);
    broken.replace(at, 4 + list.size(), NestedString(list + "\x01"));
    absl::StatusOr<Certificate> parsed = ParseCertificate(broken);
    EXPECT_FALSE(parsed.ok());
  }
  // Re-encoded unchanged, it still parses and verifies.
  EXPECT_TRUE(ParseAndVerifyCertificate(Encode(good)).ok());
}

TEST_F(CertificateTest, OptionValuesAreNestedStrings) {
  CertificateOption option{"force-command", NestedString("/bin/true")};
  EXPECT_EQ(*CertificateOptionString(option), "/bin/true");
  option.data += "x";
  EXPECT_FALSE(CertificateOptionString(option).ok());
  option.data = "raw";
  EXPECT_FALSE(CertificateOptionString(option).ok());
  option.data = NestedString(std::string("a\0b", 3));
  EXPECT_FALSE(CertificateOptionString(option).ok());
}

TEST_F(CertificateTest, OversizedBlobIsRefusedUpFront) {
  EXPECT_FALSE(ParseCertificate(std::string(kMaxCertificateSize + 1, 'a')).ok());
}

// Security round, item 9: an RSA CA key whose exponent or modulus is out of bounds is refused
// while parsing, before any arithmetic: a huge exponent would make each check as slow as a
// private-key operation.
TEST_F(CertificateTest, Item9CertificateCpuRsaExponentAndModulusAreBounded) {
  TestKey rsa_ca = MakeKey(dir_, "rsa_ca", "rsa");
  absl::StatusOr<Certificate> cert = ParseCertificate(Sign(rsa_ca, user_, {"-n", "tester"}));
  ASSERT_TRUE(cert.ok()) << cert.status();
  SshWireReader key(cert->ca_key);
  std::string_view type, exponent, modulus;
  ASSERT_TRUE(key.ReadString(type) && key.ReadString(exponent) && key.ReadString(modulus));
  auto rsa_key = [](std::string_view e, std::string_view n) {
    std::string blob;
    PutString(blob, "ssh-rsa");
    PutString(blob, e);
    PutString(blob, n);
    return blob;
  };
  auto with_ca = [&](std::string_view e, std::string_view n) {
    Certificate changed = *cert;
    changed.ca_key = rsa_key(e, n);
    return Encode(changed);
  };
  ASSERT_TRUE(ParseCertificate(with_ca(exponent, modulus)).ok());
  // A 2048-bit exponent (the modulus itself, made odd), 2^64+1, an even one, 1.
  std::string huge(modulus);
  huge.back() = static_cast<char>(huge.back() | 1);
  const std::string two64_plus_1 = std::string("\x01") + std::string(7, '\0') + "\x01";
  for (const std::string& e : {huge, two64_plus_1, std::string("\x01\x00\x00", 3), std::string("\x01")}) {
    absl::StatusOr<Certificate> refused = ParseCertificate(with_ca(e, modulus));
    ASSERT_FALSE(refused.ok()) << e.size();
    EXPECT_THAT(refused.status().message(), HasSubstr("RSA public exponent is"));
    // The signature check refuses such a key on its own too.
    EXPECT_THAT(VerifySshSignature(rsa_key(e, modulus), cert->signature, "data").message(),
                HasSubstr("exponent"));
  }
  // 2^32+1 is odd and 33 bits: allowed.
  EXPECT_THAT(ParseCertificate(with_ca(std::string("\x01\x00\x00\x00\x01", 5), modulus)).status().message(),
              ::testing::Not(HasSubstr("exponent")));
  // A 512-bit and a 16392-bit modulus.
  for (size_t bytes : {size_t{64}, size_t{2049}}) {
    std::string n(bytes, '\xff');
    n.insert(0, 1, '\0');
    absl::StatusOr<Certificate> refused = ParseCertificate(with_ca(exponent, n));
    ASSERT_FALSE(refused.ok());
    EXPECT_THAT(refused.status().message(), HasSubstr("RSA key too"));
  }
}

// ---- policy ----

class CertificatePolicyTest : public CertificateTest {
 protected:
  Certificate Make(std::vector<std::string> args, const std::string& id = "test-id") {
    return ParseOk(Sign(ca_, user_, std::move(args), id));
  }
  TrustedCaSet TrustCa() {
    ParsedKeys parsed = ParseTrustedCaKeys(ca_.public_line + "\n", "ca_keys");
    EXPECT_TRUE(parsed.problems.empty());
    return TrustedCaSet(std::move(parsed.keys));
  }
  KeySet CaLine(const std::string& options) {
    absl::StatusOr<AuthorizedKey> key = ParseAuthorizedKeyLine(options + " " + ca_.public_line);
    EXPECT_TRUE(key.ok()) << key.status();
    key->source = "authorized_keys:1";
    return KeySet({*key});
  }
  CertificateVerdict Check(const Certificate& cert, const TrustedCaSet* cas, const KeySet* keys,
                           std::string_view user = "tester", std::string_view ip = "192.0.2.7") {
    return EvaluateCertificate(cert, {.user = user, .source_ip = ip, .now = absl::Now(),
                                      .authorized_keys = keys, .trusted_cas = cas});
  }
};

TEST_F(CertificatePolicyTest, TrustedCaWithPrincipalIsAccepted) {
  TrustedCaSet cas = TrustCa();
  CertificateVerdict verdict = Check(Make({"-n", "tester"}), &cas, nullptr);
  EXPECT_TRUE(verdict.accepted()) << verdict.reason << ": " << verdict.detail;
  EXPECT_TRUE(verdict.permit_port_forwarding);
  EXPECT_FALSE(verdict.via_authorized_keys);
  EXPECT_EQ(verdict.ca_source, "ca_keys:1");
  EXPECT_EQ(verdict.options, KeyOptions{});
}

TEST_F(CertificatePolicyTest, RejectionReasons) {
  TrustedCaSet cas = TrustCa();
  EXPECT_EQ(Check(Make({"-h", "-n", "tester"}), &cas, nullptr).reason, "cert-not-user");
  EXPECT_EQ(Check(Make({"-n", "tester"}), nullptr, nullptr).reason, "cert-untrusted-ca");
  TrustedCaSet other;
  EXPECT_EQ(Check(Make({"-n", "tester"}), &other, nullptr).reason, "cert-untrusted-ca");
  EXPECT_EQ(Check(Make({"-n", "tester", "-V", "20200101:20200102"}), &cas, nullptr).reason, "cert-expired");
  EXPECT_EQ(Check(Make({"-n", "tester", "-V", "+1d:+2d"}), &cas, nullptr).reason, "cert-not-yet-valid");
  EXPECT_EQ(Check(Make({"-n", "alice,bob"}), &cas, nullptr).reason, "cert-wrong-principal");
  EXPECT_EQ(Check(Make({}), &cas, nullptr).reason, "cert-wrong-principal");  // no principals
  EXPECT_EQ(Check(Make({"-n", "tester", "-O", "critical:foo=bar"}), &cas, nullptr).reason,
            "cert-unknown-critical-option");
  EXPECT_EQ(Check(Make({"-n", "tester", "-O", "verify-required"}), &cas, nullptr).reason,
            "cert-unknown-critical-option");
  Certificate pinned = Make({"-n", "tester", "-O", "source-address=127.0.0.1/32,10.0.0.0/8"});
  EXPECT_EQ(Check(pinned, &cas, nullptr, "tester", "127.0.0.2").reason, "cert-source-address");
  EXPECT_TRUE(Check(pinned, &cas, nullptr, "tester", "127.0.0.1").accepted());
  EXPECT_TRUE(Check(pinned, &cas, nullptr, "tester", "10.9.8.7").accepted());
  EXPECT_TRUE(Check(Make({"-n", "tester", "-O", "force-command=/bin/false"}), &cas, nullptr).accepted());
}

// Security round, item 9: the CA signature costs CPU only once the CA is trusted. A
// certificate from an unknown CA with a garbage signature is cert-untrusted-ca (no
// verification happened); the same certificate under a trusted CA is cert-invalid.
TEST_F(CertificatePolicyTest, Item9CertificateCpuUntrustedCaIsRefusedBeforeTheSignature) {
  Certificate cert = Make({"-n", "tester"});
  cert.signature[cert.signature.size() - 3] ^= 0x55;
  absl::StatusOr<Certificate> garbage = ParseCertificate(Encode(cert));
  ASSERT_TRUE(garbage.ok()) << garbage.status();
  ASSERT_FALSE(VerifyCertificateSignature(*garbage).ok());
  auto evaluate = [&](const TrustedCaSet* cas, bool verify) {
    return EvaluateCertificate(*garbage, {.user = "tester", .source_ip = "192.0.2.7",
                                          .verify_signature = verify, .trusted_cas = cas});
  };
  TrustedCaSet none;
  EXPECT_EQ(evaluate(&none, true).reason, "cert-untrusted-ca");
  EXPECT_EQ(evaluate(nullptr, true).reason, "cert-untrusted-ca");
  TrustedCaSet cas = TrustCa();
  CertificateVerdict verdict = evaluate(&cas, true);
  EXPECT_EQ(verdict.reason, "cert-invalid");
  EXPECT_THAT(verdict.detail, HasSubstr("does not verify"));
  KeySet line = CaLine("cert-authority");
  EXPECT_EQ(EvaluateCertificate(*garbage, {.user = "tester", .source_ip = "192.0.2.7",
                                           .verify_signature = true, .authorized_keys = &line})
                .reason,
            "cert-invalid");
  // A good signature under a trusted CA passes the same check.
  EXPECT_TRUE(EvaluateCertificate(Make({"-n", "tester"}),
                                  {.user = "tester", .source_ip = "192.0.2.7",
                                   .verify_signature = true, .trusted_cas = &cas})
                  .accepted());
}

TEST_F(CertificatePolicyTest, ClockSkewWidensTheWindowBothWays) {
  TrustedCaSet cas = TrustCa();
  Certificate cert = Make({"-n", "tester", "-V", "20300101:20300102"});
  const absl::Time after = absl::FromUnixSeconds(static_cast<int64_t>(cert.valid_after));
  const absl::Time before = absl::FromUnixSeconds(static_cast<int64_t>(cert.valid_before));
  auto at = [&](absl::Time now, absl::Duration skew) {
    return EvaluateCertificate(cert, {.user = "tester", .source_ip = "192.0.2.7", .now = now,
                                      .clock_skew = skew, .trusted_cas = &cas})
        .reason;
  };
  EXPECT_EQ(at(after - absl::Seconds(30), absl::Minutes(1)), "");
  EXPECT_EQ(at(after - absl::Seconds(30), absl::ZeroDuration()), "cert-not-yet-valid");
  EXPECT_EQ(at(after, absl::ZeroDuration()), "");
  EXPECT_EQ(at(before - absl::Seconds(1), absl::ZeroDuration()), "");
  EXPECT_EQ(at(before, absl::ZeroDuration()), "cert-expired");
  EXPECT_EQ(at(before + absl::Seconds(30), absl::Minutes(1)), "");
  EXPECT_EQ(at(before + absl::Seconds(60), absl::Minutes(1)), "cert-expired");
  // Channel re-checks skip the window.
  EXPECT_TRUE(EvaluateCertificate(cert, {.user = "tester", .source_ip = "192.0.2.7",
                                         .now = before + absl::Hours(1), .check_validity_period = false,
                                         .trusted_cas = &cas})
                  .accepted());
  // "forever" does not overflow with skew.
  Certificate forever = Make({"-n", "tester"});
  EXPECT_EQ(EvaluateCertificate(forever, {.user = "tester", .source_ip = "192.0.2.7",
                                          .clock_skew = absl::Hours(1), .trusted_cas = &cas})
                .reason,
            "");
}

TEST_F(CertificatePolicyTest, CertAuthorityLine) {
  KeySet plain = CaLine("cert-authority");
  EXPECT_TRUE(Check(Make({"-n", "tester"}), nullptr, &plain).accepted());
  EXPECT_EQ(Check(Make({"-n", "alice"}), nullptr, &plain).reason, "cert-wrong-principal");
  // Unlike sshd, an empty principal list is refused on a line without principals= too.
  EXPECT_EQ(Check(Make({}), nullptr, &plain).reason, "cert-wrong-principal");

  KeySet with_principals = CaLine("cert-authority,principals=\"ops,admins\"");
  CertificateVerdict ops = Check(Make({"-n", "ops"}), nullptr, &with_principals);
  EXPECT_TRUE(ops.accepted()) << ops.detail;
  EXPECT_TRUE(ops.via_authorized_keys);
  EXPECT_EQ(ops.ca_source, "authorized_keys:1");
  EXPECT_EQ(Check(Make({"-n", "tester"}), nullptr, &with_principals).reason, "cert-wrong-principal");
  EXPECT_EQ(Check(Make({}), nullptr, &with_principals).reason, "cert-wrong-principal");

  KeySet expired = CaLine("cert-authority,expiry-time=\"20200101\"");
  EXPECT_EQ(Check(Make({"-n", "tester"}), nullptr, &expired).reason, "key-expired");
  KeySet from = CaLine("cert-authority,from=\"10.0.0.0/8\"");
  EXPECT_EQ(Check(Make({"-n", "tester"}), nullptr, &from).reason, "from-mismatch");
  EXPECT_TRUE(Check(Make({"-n", "tester"}), nullptr, &from, "tester", "10.1.1.1").accepted());

  // The line's options govern the session.
  KeySet limited = CaLine("cert-authority,permitopen=\"db:5432\",no-port-forwarding");
  CertificateVerdict verdict = Check(Make({"-n", "tester"}), nullptr, &limited);
  ASSERT_TRUE(verdict.accepted());
  EXPECT_FALSE(verdict.options.port_forwarding);
  ASSERT_EQ(verdict.options.permit_open.size(), 1u);
  EXPECT_EQ(verdict.options.permit_open[0].host, "db");

  // A non-cert-authority line for the CA key trusts nothing.
  absl::StatusOr<AuthorizedKey> bare = ParseAuthorizedKeyLine(ca_.public_line);
  KeySet not_ca({*bare});
  EXPECT_EQ(Check(Make({"-n", "tester"}), nullptr, &not_ca).reason, "cert-untrusted-ca");
}

TEST_F(CertificatePolicyTest, BothRoutesAreTried) {
  TrustedCaSet cas = TrustCa();
  KeySet line = CaLine("cert-authority,principals=\"ops\"");
  // The trusted_user_ca_keys route wants the user name; the line accepts "ops".
  CertificateVerdict verdict = Check(Make({"-n", "ops"}), &cas, &line);
  EXPECT_TRUE(verdict.accepted());
  EXPECT_TRUE(verdict.via_authorized_keys);
  // Both fail: the trusted_user_ca_keys reason is reported.
  EXPECT_EQ(Check(Make({"-n", "nobody"}), &cas, &line).reason, "cert-wrong-principal");
  // The file route wins when it accepts (no line options).
  CertificateVerdict file = Check(Make({"-n", "tester"}), &cas, &line);
  EXPECT_TRUE(file.accepted());
  EXPECT_FALSE(file.via_authorized_keys);
}

TEST_F(CertificatePolicyTest, NoPermitPortForwardingIsReported) {
  TrustedCaSet cas = TrustCa();
  CertificateVerdict verdict = Check(Make({"-n", "tester", "-O", "clear", "-O", "permit-pty"}), &cas, nullptr);
  EXPECT_TRUE(verdict.accepted());
  EXPECT_FALSE(verdict.permit_port_forwarding);
}

TEST_F(CertificatePolicyTest, ExtensionDataOnFlagsIsInvalid) {
  TrustedCaSet cas = TrustCa();
  Certificate cert = Make({"-n", "tester"});
  cert.extensions[0].data = NestedString("x");  // policy only looks at fields, not the signature
  EXPECT_EQ(Check(cert, &cas, nullptr).reason, "cert-invalid");
  Certificate bad_source = Make({"-n", "tester"});
  bad_source.critical_options = {{"source-address", NestedString("10.0.0.1/8")}};
  EXPECT_EQ(Check(bad_source, &cas, nullptr).reason, "cert-invalid");
}

TEST_F(CertificatePolicyTest, RevocationComesFirst) {
  TrustedCaSet cas = TrustCa();
  Certificate cert = Make({"-n", "tester", "-z", "42"}, "alice");
  RevocationList by_serial;
  by_serial.RevokeSerialRange(cert.ca_key, 40, 50);
  by_serial.Finish();
  auto check = [&](const RevocationList& list) {
    return EvaluateCertificate(cert, {.user = "tester", .source_ip = "192.0.2.7", .trusted_cas = &cas,
                                      .revoked = &list})
        .reason;
  };
  EXPECT_EQ(check(by_serial), "cert-revoked");
  RevocationList by_key;
  by_key.RevokeKey(KeyBlob(user_));
  EXPECT_EQ(check(by_key), "cert-revoked");
  RevocationList by_ca;
  by_ca.RevokeKey(KeyBlob(ca_));
  EXPECT_EQ(check(by_ca), "cert-revoked");
  RevocationList by_id;
  by_id.RevokeKeyId("", "alice");
  EXPECT_EQ(check(by_id), "cert-revoked");
  RevocationList unrelated;
  unrelated.RevokeSerialRange(cert.ca_key, 43, 50);
  unrelated.RevokeKeyId(cert.ca_key, "bob");
  unrelated.Finish();
  EXPECT_EQ(check(unrelated), "");
}

TEST(CertificateSourceAddressTest, ParsesAddressesAndCidrs) {
  EXPECT_EQ(*ParseCertificateSourceAddress("127.0.0.1/32,10.0.0.0/8,::1,2001:db8::/32,192.0.2.7"),
            (std::vector<std::string>{"127.0.0.1/32", "10.0.0.0/8", "::1", "2001:db8::/32", "192.0.2.7"}));
  for (const char* bad : {"", "10.0.0.0/8,", "host.example", "10.0.0.*", "!10.0.0.0/8", "10.0.0.1/8",
                          "10.0.0.0/33", "1.2.3.4 "}) {
    EXPECT_FALSE(ParseCertificateSourceAddress(bad).ok()) << bad;
  }
}

TEST_F(CertificateTest, TrustedCaKeysFileRefusesOptionsAndCertificates) {
  const std::string cert_line = ReadFile(user_.private_path + ".pub");  // plain, fine
  Sign(ca_, user_, {"-n", "tester"});
  const std::string cert = ReadFile(user_.private_path + "-cert.pub");
  ParsedKeys parsed = ParseTrustedCaKeys("# CAs\n\n" + ca_.public_line + "\n" + "cert-authority " +
                                             ca_.public_line + "\n" + cert + "ssh-ed25519 !!!\n",
                                         "cas");
  ASSERT_EQ(parsed.keys.size(), 1u);
  EXPECT_EQ(parsed.keys[0].source, "cas:3");
  ASSERT_EQ(parsed.problems.size(), 3u);
  EXPECT_EQ(parsed.problems[0].source, "cas:4");
  EXPECT_THAT(parsed.problems[0].message, HasSubstr("options are not allowed"));
  EXPECT_THAT(parsed.problems[1].message, HasSubstr("not a certificate"));
  TrustedCaSet set(std::move(parsed.keys));
  EXPECT_NE(set.Find(KeyBlob(ca_)), nullptr);
  EXPECT_EQ(set.Find(LineBlob(cert_line)), nullptr);
  EXPECT_FALSE(LoadTrustedCaKeysFile(dir_.File("missing")).ok());
  WriteFile(dir_.File("cas"), ca_.public_line + "\n");
  absl::StatusOr<ParsedKeys> loaded = LoadTrustedCaKeysFile(dir_.File("cas"));
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->keys.size(), 1u);
}

// ---- the auth log line ----

std::string LogLine(const AuthEvent& event) {
  std::FILE* sink = std::tmpfile();
  Logger logger(LogLevel::kInfo, LogFormat::kText, sink);
  LogAuthEvent(logger, event);
  std::rewind(sink);
  std::string text;
  char buffer[1024];
  while (size_t got = std::fread(buffer, 1, sizeof(buffer), sink)) text.append(buffer, got);
  std::fclose(sink);
  return text;
}

TEST(CertificateAuthLogTest, CertificateFieldsFollowTheKey) {
  CertificateLogInfo cert{"alice id", 42, "SHA256:ca"};
  std::string accepted = LogLine({.accepted = true, .method = "publickey", .user = "tester",
                                  .source_ip = "192.0.2.7", .source_port = 5, .transport = "tcp",
                                  .fingerprint = "SHA256:key",
                                  .key_type = "ssh-ed25519-cert-v01@openssh.com", .certificate = &cert});
  EXPECT_THAT(accepted, HasSubstr("INFO auth: result=accepted method=publickey user=tester src=192.0.2.7 "
                                  "port=5 transport=tcp key=SHA256:key "
                                  "key_type=ssh-ed25519-cert-v01@openssh.com cert_id=\"alice id\" "
                                  "serial=42 ca=SHA256:ca\n"));
  CertificateLogInfo plain_id{"alice", 0, "SHA256:ca"};
  std::string rejected = LogLine({.accepted = false, .reason = "cert-expired", .method = "publickey",
                                  .user = "tester", .source_ip = "192.0.2.7", .source_port = 5,
                                  .transport = "tcp", .fingerprint = "SHA256:key", .key_type = "t",
                                  .certificate = &plain_id});
  EXPECT_THAT(rejected, HasSubstr("WARN auth: result=rejected reason=cert-expired method=publickey"));
  EXPECT_THAT(rejected, HasSubstr("cert_id=\"alice\" serial=0 ca=SHA256:ca\n"));
}

TEST(CertificateAuthLogTest, KeyIdCannotForgeFields) {
  EXPECT_EQ(EscapeCertificateKeyId("plain id"), "plain id");
  EXPECT_EQ(EscapeCertificateKeyId(std::string("x src=1.2.3.4 \"%\\\n\x7f\xff\0", 21)),
            "x src%3D1.2.3.4 %22%25%5C%0A%7F%FF%00");
  CertificateLogInfo evil{"x\" src=203.0.113.1 port=1", 1, "SHA256:ca"};
  std::string line = LogLine({.accepted = false, .reason = "cert-untrusted-ca", .method = "publickey",
                              .user = "u", .source_ip = "192.0.2.7", .source_port = 5, .transport = "tcp",
                              .fingerprint = "SHA256:k", .key_type = "t", .certificate = &evil});
  EXPECT_THAT(line, ::testing::Not(HasSubstr("src=203.0.113.1")));
  EXPECT_THAT(line, HasSubstr("src=192.0.2.7 port=5"));
}

}  // namespace
}  // namespace alknet::auth
