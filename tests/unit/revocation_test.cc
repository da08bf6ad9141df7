// Unit tests for revocation: KRLs made by the real `ssh-keygen -k` (serial lists, ranges,
// bitmaps, key ids, explicit keys, SHA-1/SHA-256 hashes, updates), hand-built and corrupted KRLs,
// plain revoked-key lists, loading with errors that name the file, and change detection.
#include "server/auth/revocation.h"

#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/certificate.h"
#include "server/auth/fingerprint.h"
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

// A certificate as the revocation check sees it (no signature needed).
Certificate Cert(const std::string& ca_key, uint64_t serial, std::string key_id = "id",
                 std::string public_key = "user-key") {
  Certificate cert;
  cert.ca_key = ca_key;
  cert.serial = serial;
  cert.key_id = std::move(key_id);
  cert.public_key = std::move(public_key);
  return cert;
}

std::shared_ptr<const RevocationList> Load(const std::string& path) {
  absl::StatusOr<std::shared_ptr<const RevocationList>> list = LoadRevocationFiles({path});
  EXPECT_TRUE(list.ok()) << list.status();
  return list.ok() ? *list : std::make_shared<const RevocationList>();
}

// Hand-built KRLs.
std::string KrlHeader() {
  std::string out("SSHKRL\n\0", 8);
  PutUint32(out, 1);   // format version
  PutUint64(out, 1);   // krl version
  PutUint64(out, 0);   // generated
  PutUint64(out, 0);   // flags
  PutString(out, "");  // reserved
  PutString(out, "comment");
  return out;
}
std::string Section(uint8_t type, std::string_view body) {
  std::string out(1, static_cast<char>(type));
  PutString(out, body);
  return out;
}
std::string CertSection(std::string_view ca_key, const std::string& subsections) {
  std::string body;
  PutString(body, ca_key);
  PutString(body, "");
  return Section(1, body + subsections);
}
std::string U64(uint64_t v) {
  std::string out;
  PutUint64(out, v);
  return out;
}
std::string Str(std::string_view v) {
  std::string out;
  PutString(out, v);
  return out;
}

absl::Status ParseBytes(const std::string& data) {
  RevocationList list;
  return ParseKrl(data, list);
}

class RevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = MakeKey(dir_, "ca");
    user_ = MakeKey(dir_, "user");
    other_ = MakeKey(dir_, "other");
  }
  // ssh-keygen -k -f <krl> [args...] <spec lines written to a file>
  std::string MakeKrl(const std::string& name, std::vector<std::string> args, const std::string& spec,
                      bool update = false) {
    const std::string spec_path = dir_.File(name + ".spec");
    WriteFile(spec_path, spec);
    std::vector<std::string> argv = {"ssh-keygen", "-q", "-k", "-f", dir_.File(name)};
    if (update) argv.push_back("-u");
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(spec_path);
    CommandResult made = RunCommand(argv);
    EXPECT_EQ(made.exit_code, 0) << made.err;
    return dir_.File(name);
  }

  TempDir dir_;
  TestKey ca_;
  TestKey user_;
  TestKey other_;
};

TEST_F(RevocationTest, SerialListRangeBitmapAndKeyIdFromSshKeygen) {
  // ssh-keygen packs 7, 9, 42 into a bitmap and 100-200 into a range.
  const std::string krl = MakeKrl("krl", {"-s", ca_.private_path + ".pub"},
                                  "serial: 7\nserial: 9\nserial: 42\nserial: 100-200\nid: alice id\n");
  EXPECT_TRUE(IsKrl(ReadFile(krl)));
  auto list = Load(krl);
  const std::string ca = KeyBlob(ca_);
  const std::set<uint64_t> single = {7, 9, 42};
  for (uint64_t serial = 0; serial <= 250; ++serial) {
    const bool expected = single.count(serial) > 0 || (serial >= 100 && serial <= 200);
    EXPECT_EQ(list->IsCertificateRevoked(Cert(ca, serial)), expected) << serial;
  }
  EXPECT_TRUE(list->IsCertificateRevoked(Cert(ca, 0, "alice id")));
  EXPECT_FALSE(list->IsCertificateRevoked(Cert(ca, 0, "alice")));
  // Another CA's certificates are not affected.
  EXPECT_FALSE(list->IsCertificateRevoked(Cert(KeyBlob(other_), 42)));
  EXPECT_FALSE(list->IsCertificateRevoked(Cert(KeyBlob(other_), 0, "alice id")));
  EXPECT_EQ(list->certificate_section_count(), 1u);
}

TEST_F(RevocationTest, ManySerialsMatchExactly) {
  std::string spec;
  std::set<uint64_t> revoked;
  for (uint64_t serial = 1; serial < 3000; serial += (serial % 7) + 1) {
    spec += "serial: " + std::to_string(serial) + "\n";
    revoked.insert(serial);
  }
  spec += "serial: 5000-6000\nserial: 18446744073709551000-18446744073709551615\n";
  auto list = Load(MakeKrl("many", {"-s", ca_.private_path + ".pub"}, spec));
  const std::string ca = KeyBlob(ca_);
  for (uint64_t serial = 0; serial < 6100; ++serial) {
    const bool expected = revoked.count(serial) > 0 || (serial >= 5000 && serial <= 6000);
    ASSERT_EQ(list->IsCertificateRevoked(Cert(ca, serial)), expected) << serial;
  }
  EXPECT_TRUE(list->IsCertificateRevoked(Cert(ca, UINT64_MAX)));
  EXPECT_FALSE(list->IsCertificateRevoked(Cert(ca, 18446744073709550999ull)));
}

TEST_F(RevocationTest, RealCertificateBySerialAndUpdate) {
  const std::string krl = MakeKrl("krl", {"-s", ca_.private_path + ".pub"}, "serial: 5\n");
  ASSERT_EQ(RunCommand({"ssh-keygen", "-q", "-s", ca_.private_path, "-I", "bob", "-n", "tester", "-z", "6",
                        user_.private_path + ".pub"})
                .exit_code,
            0);
  absl::StatusOr<Certificate> cert =
      ParseAndVerifyCertificate(LineBlob(ReadFile(user_.private_path + "-cert.pub")));
  ASSERT_TRUE(cert.ok());
  EXPECT_FALSE(Load(krl)->IsCertificateRevoked(*cert));
  MakeKrl("krl", {"-s", ca_.private_path + ".pub"}, "serial: 6\n", /*update=*/true);
  EXPECT_TRUE(Load(krl)->IsCertificateRevoked(*cert));
  // ssh-keygen -Q agrees.
  CommandResult query = RunCommand({"ssh-keygen", "-Q", "-f", krl, user_.private_path + "-cert.pub"});
  EXPECT_NE(query.exit_code, 0);
}

TEST_F(RevocationTest, ExplicitKeyFromPublicKeyFile) {
  // `ssh-keygen -k -f krl key.pub` revokes the key explicitly.
  std::vector<std::string> argv = {"ssh-keygen", "-q", "-k", "-f", dir_.File("krl"), user_.private_path + ".pub"};
  ASSERT_EQ(RunCommand(argv).exit_code, 0);
  auto list = Load(dir_.File("krl"));
  EXPECT_TRUE(list->IsKeyRevoked(KeyBlob(user_)));
  EXPECT_FALSE(list->IsKeyRevoked(KeyBlob(other_)));
  // Certificates of that key, and certificates signed by a revoked CA key.
  EXPECT_TRUE(list->IsCertificateRevoked(Cert(KeyBlob(ca_), 1, "id", KeyBlob(user_))));
  EXPECT_TRUE(list->IsCertificateRevoked(Cert(KeyBlob(user_), 1, "id", KeyBlob(other_))));
  EXPECT_FALSE(list->IsCertificateRevoked(Cert(KeyBlob(ca_), 1, "id", KeyBlob(other_))));
  EXPECT_EQ(list->key_count(), 1u);
}

TEST_F(RevocationTest, HashesFromSpec) {
  const std::string krl = MakeKrl("hashes", {},
                                  "sha1: " + user_.public_line + "\n" + "sha256: " + other_.public_line +
                                      "\n" + "hash: " + ca_.fingerprint + "\n");
  auto list = Load(krl);
  EXPECT_TRUE(list->IsKeyRevoked(KeyBlob(user_)));
  EXPECT_TRUE(list->IsKeyRevoked(KeyBlob(other_)));
  EXPECT_TRUE(list->IsKeyRevoked(KeyBlob(ca_)));
  TestKey fresh = MakeKey(dir_, "fresh");
  EXPECT_FALSE(list->IsKeyRevoked(KeyBlob(fresh)));
  EXPECT_EQ(list->key_count(), 3u);
}

TEST_F(RevocationTest, EmptyKrlRevokesNothing) {
  ASSERT_EQ(RunCommand({"ssh-keygen", "-q", "-k", "-f", dir_.File("empty")}).exit_code, 0);
  auto list = Load(dir_.File("empty"));
  EXPECT_TRUE(list->empty());
  EXPECT_FALSE(list->IsKeyRevoked(KeyBlob(user_)));
}

TEST_F(RevocationTest, PlainListRevokesKeysAndCertifiedKeys) {
  ASSERT_EQ(RunCommand({"ssh-keygen", "-q", "-s", ca_.private_path, "-I", "x", "-n", "tester",
                        other_.private_path + ".pub"})
                .exit_code,
            0);
  const std::string cert_line = ReadFile(other_.private_path + "-cert.pub");
  WriteFile(dir_.File("revoked"), "# revoked\n\n  " + user_.public_line + "\r\n" + cert_line);
  auto list = Load(dir_.File("revoked"));
  EXPECT_TRUE(list->IsKeyRevoked(KeyBlob(user_)));
  EXPECT_TRUE(list->IsKeyRevoked(KeyBlob(other_)));
  EXPECT_FALSE(list->IsKeyRevoked(KeyBlob(ca_)));
}

TEST_F(RevocationTest, MalformedPlainListNamesFileAndLine) {
  WriteFile(dir_.File("revoked"), user_.public_line + "\nserial: 5\n");
  absl::StatusOr<std::shared_ptr<const RevocationList>> list = LoadRevocationFiles({dir_.File("revoked")});
  ASSERT_FALSE(list.ok());
  EXPECT_THAT(list.status().message(), HasSubstr(dir_.File("revoked") + ":2:"));
  WriteFile(dir_.File("mismatch"), "ssh-rsa " + user_.public_line.substr(user_.public_line.find(' ') + 1) + "\n");
  list = LoadRevocationFiles({dir_.File("mismatch")});
  ASSERT_FALSE(list.ok());
  EXPECT_THAT(list.status().message(), HasSubstr("does not match"));
}

TEST_F(RevocationTest, LoadErrorsNameTheFile) {
  absl::StatusOr<std::shared_ptr<const RevocationList>> missing = LoadRevocationFiles({dir_.File("nope")});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr(dir_.File("nope")));
  WriteFile(dir_.File("bad.krl"), KrlHeader() + Section(9, ""));
  absl::StatusOr<std::shared_ptr<const RevocationList>> bad = LoadRevocationFiles({dir_.File("bad.krl")});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr(dir_.File("bad.krl") + ": invalid KRL: unsupported KRL section type 9"));
  // Two good files merge.
  WriteFile(dir_.File("a"), user_.public_line + "\n");
  WriteFile(dir_.File("b"), other_.public_line + "\n");
  absl::StatusOr<std::shared_ptr<const RevocationList>> both = LoadRevocationFiles({dir_.File("a"), dir_.File("b")});
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE((*both)->IsKeyRevoked(KeyBlob(user_)));
  EXPECT_TRUE((*both)->IsKeyRevoked(KeyBlob(other_)));
}

TEST_F(RevocationTest, EveryTruncationIsSafe) {
  const std::string krl = ReadFile(MakeKrl("krl", {"-s", ca_.private_path + ".pub"},
                                           "serial: 7\nserial: 9\nserial: 100-200\nid: alice\n"));
  const std::string explicit_krl = [&] {
    RunCommand({"ssh-keygen", "-q", "-k", "-f", dir_.File("explicit"), user_.private_path + ".pub"});
    return ReadFile(dir_.File("explicit"));
  }();
  for (const std::string* data : {&krl, &explicit_krl}) {
    const size_t header = KrlHeader().size() - Str("comment").size() + Str("").size();
    for (size_t length = 0; length < data->size(); ++length) {
      RevocationList list;
      absl::Status status = ParseKrl(data->substr(0, length), list);
      // Inside the header, or inside the one section (length-prefixed): always an error.
      if (length != header) {
        EXPECT_FALSE(status.ok()) << length;
      }
    }
    RevocationList list;
    EXPECT_TRUE(ParseKrl(*data, list).ok());
  }
}

TEST(KrlParserTest, StrictStructure) {
  const std::string ca = Str("ssh-ed25519") + Str(std::string(32, 'k'));
  EXPECT_TRUE(ParseBytes(KrlHeader()).ok());
  EXPECT_FALSE(ParseBytes("SSHKRL\n").ok());
  EXPECT_FALSE(ParseBytes("not a krl").ok());
  {
    std::string wrong_version = KrlHeader();
    wrong_version[11] = 2;
    EXPECT_THAT(ParseBytes(wrong_version).message(), HasSubstr("format version 2"));
  }
  EXPECT_THAT(ParseBytes(KrlHeader() + Section(9, "")).message(), HasSubstr("unsupported KRL section"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x20, U64(0)))).message(),
              HasSubstr("serial 0"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x20, U64(5) + "x"))).message(),
              HasSubstr("truncated"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x21, U64(9) + U64(3)))).message(),
              HasSubstr("invalid range"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x21, U64(0) + U64(3)))).message(),
              HasSubstr("invalid range"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x21, U64(1) + U64(3) + "z"))).message(),
              HasSubstr("unparsed"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x22, U64(UINT64_MAX) + Str("\x03")))).message(),
              HasSubstr("wraps"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x22, U64(0) + Str("\x01")))).message(),
              HasSubstr("serial 0"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x22, U64(1) + Str("\x80")))).message(),
              HasSubstr("negative"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x23, Str(std::string("a\0", 2))))).message(),
              HasSubstr("NUL"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(ca, Section(0x24, ""))).message(),
              HasSubstr("subsection type 0x24"));
  EXPECT_THAT(ParseBytes(KrlHeader() + CertSection(Str("ssh-ed25519-cert-v01@openssh.com"), "")).message(),
              HasSubstr("certificate"));
  EXPECT_THAT(ParseBytes(KrlHeader() + Section(3, Str("short"))).message(), HasSubstr("20 bytes"));
  EXPECT_THAT(ParseBytes(KrlHeader() + Section(5, Str(std::string(20, 'h')))).message(), HasSubstr("32 bytes"));
  EXPECT_THAT(ParseBytes(KrlHeader() + Section(2, Str(""))).message(), HasSubstr("empty key"));
  // Extensions: critical ones are refused, others skipped.
  EXPECT_THAT(ParseBytes(KrlHeader() + Section(255, Str("x@example.com") + std::string(1, '\1') + Str("")))
                  .message(),
              HasSubstr("critical"));
  EXPECT_TRUE(ParseBytes(KrlHeader() + Section(255, Str("x@example.com") + std::string(1, '\0') + Str(""))).ok());
  EXPECT_TRUE(ParseBytes(KrlHeader() + CertSection(ca, Section(0x39, Str("y") + std::string(1, '\0') + Str("")))).ok());
  // Signatures are skipped, must be last.
  const std::string signature = Section(4, Str("signing-key")) + Str("signature-bytes");
  EXPECT_TRUE(ParseBytes(KrlHeader() + Section(2, Str("key")) + signature + signature).ok());
  EXPECT_THAT(ParseBytes(KrlHeader() + signature + Section(2, Str("key"))).message(),
              HasSubstr("after its signature"));
  EXPECT_FALSE(ParseBytes(KrlHeader() + Section(4, Str("signing-key"))).ok());
}

TEST(KrlParserTest, BitmapAndWildcardCa) {
  const std::string ca = Str("ssh-ed25519") + Str(std::string(32, 'k'));
  // Bits 0 and 9 of offset 100 (leading zero byte allowed), and "any CA" key ids.
  std::string bitmap = Str(std::string("\x00\x02\x01", 3));
  RevocationList list;
  ASSERT_TRUE(ParseKrl(KrlHeader() + CertSection(ca, Section(0x22, U64(100) + bitmap)) +
                           CertSection("", Section(0x23, Str("evil") + Str("worse"))),
                       list)
                  .ok());
  list.Finish();
  EXPECT_TRUE(list.IsCertificateRevoked(Cert(ca, 100)));
  EXPECT_TRUE(list.IsCertificateRevoked(Cert(ca, 109)));
  EXPECT_FALSE(list.IsCertificateRevoked(Cert(ca, 101)));
  EXPECT_FALSE(list.IsCertificateRevoked(Cert(ca, 99)));
  EXPECT_FALSE(list.IsCertificateRevoked(Cert(ca, 116)));
  EXPECT_TRUE(list.IsCertificateRevoked(Cert("another CA", 1, "worse")));
  EXPECT_FALSE(list.IsCertificateRevoked(Cert("another CA", 1, "fine")));
}

TEST(FileWatchTest, NoticesChangesCreationAndRemoval) {
  TempDir dir;
  const std::string path = dir.File("krl");
  FileWatch watch({path});
  EXPECT_FALSE(watch.Changed());
  WriteFile(path, "one");
  EXPECT_TRUE(watch.Changed());
  watch.Mark();
  EXPECT_FALSE(watch.Changed());
  usleep(20000);           // past the filesystem's timestamp granularity
  WriteFile(path, "two");  // same size, new mtime/ctime
  EXPECT_TRUE(watch.Changed());
  watch.Mark();
  unlink(path.c_str());
  EXPECT_TRUE(watch.Changed());
}

}  // namespace
}  // namespace alknet::auth
