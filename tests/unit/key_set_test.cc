// Unit tests for KeySet / KeyStore lookup and for the auth log line (auth_log has no own file).
#include "server/auth/key_set.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/auth_log.h"
#include "tests/unit/json_check.h"

namespace alknet::auth {
namespace {

AuthorizedKey Key(std::string blob, std::string comment) {
  AuthorizedKey key;
  key.key_type = "ssh-ed25519";
  key.blob = std::move(blob);
  key.comment = std::move(comment);
  return key;
}

KeySet MakeSet(std::vector<AuthorizedKey> keys) { return KeySet(std::move(keys)); }

TEST(KeySetTest, FindsByBlob) {
  KeySet set = MakeSet({Key("blob-a", "a"), Key("blob-b", "b")});
  EXPECT_EQ(set.size(), 2u);
  const AuthorizedKey* found = set.Find("blob-b");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->comment, "b");
  EXPECT_EQ(set.Find("blob-c"), nullptr);
  EXPECT_EQ(set.Find(""), nullptr);
}

TEST(KeySetTest, FirstOccurrenceWins) {
  KeySet set = MakeSet({Key("same", "first"), Key("other", "x"), Key("same", "second")});
  EXPECT_EQ(set.size(), 3u);  // every line is kept; only the lookup prefers the first
  ASSERT_NE(set.Find("same"), nullptr);
  EXPECT_EQ(set.Find("same")->comment, "first");
  EXPECT_EQ(set.keys()[2].comment, "second");
}

TEST(KeySetTest, BinaryBlobsWithNulBytesAreDistinct) {
  const std::string a(
      "\0\0\0\x01"
      "a",
      5);
  const std::string b(
      "\0\0\0\x01"
      "b",
      5);
  KeySet set = MakeSet({Key(a, "a"), Key(b, "b")});
  ASSERT_NE(set.Find(b), nullptr);
  EXPECT_EQ(set.Find(b)->comment, "b");
  EXPECT_EQ(set.Find(std::string("\0\0\0\x01", 4)), nullptr);
}

TEST(KeySetTest, EmptySet) {
  KeySet set = MakeSet({});
  EXPECT_EQ(set.size(), 0u);
  EXPECT_EQ(set.Find("x"), nullptr);
}

TEST(KeyStoreTest, ReplaceSwapsWhileOldSnapshotStaysValid) {
  auto first = std::make_shared<const KeySet>(std::vector<AuthorizedKey>{Key("a", "old")});
  KeyStore store(first);
  std::shared_ptr<const KeySet> held = store.Current();
  store.Replace(std::make_shared<const KeySet>(std::vector<AuthorizedKey>{Key("b", "new")}));
  EXPECT_NE(held->Find("a"), nullptr);  // a session's snapshot outlives the swap
  EXPECT_EQ(store.Current()->Find("a"), nullptr);
  ASSERT_NE(store.Current()->Find("b"), nullptr);
  EXPECT_EQ(store.Current()->Find("b")->comment, "new");
}

TEST(KeyStoreTest, ConcurrentReadersAndReplacer) {
  KeyStore store(std::make_shared<const KeySet>(std::vector<AuthorizedKey>{Key("k", "0")}));
  std::vector<std::thread> readers;
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&store] {
      for (int i = 0; i < 2000; ++i) {
        std::shared_ptr<const KeySet> set = store.Current();
        ASSERT_NE(set->Find("k"), nullptr);
      }
    });
  }
  for (int i = 1; i <= 200; ++i) {
    store.Replace(
        std::make_shared<const KeySet>(std::vector<AuthorizedKey>{Key("k", std::to_string(i))}));
  }
  for (std::thread& reader : readers) reader.join();
  EXPECT_EQ(store.Current()->Find("k")->comment, "200");
}

// ---- LogAuthEvent ----

// Runs `log` against a Logger writing into memory; returns the text after "<time> ".
std::string CaptureLine(LogLevel min_level, LogFormat format,
                        const std::function<void(Logger&)>& log) {
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* sink = open_memstream(&buffer, &size);
  EXPECT_NE(sink, nullptr);
  {
    Logger logger(min_level, format, sink);
    log(logger);
  }
  std::fclose(sink);
  std::string text(buffer, size);
  std::free(buffer);
  if (format == LogFormat::kText) {
    const size_t space = text.find(' ');
    if (space != std::string::npos) text = text.substr(space + 1);
  }
  return text;
}

TEST(AuthLogTest, AcceptedIsInfoWithFieldsInFixedOrder) {
  AuthEvent event;
  event.accepted = true;
  event.reason = "ignored-when-accepted";
  event.method = "publickey";
  event.user = "alice";
  event.source_ip = "192.0.2.7";
  event.source_port = 50122;
  event.transport = "tcp";
  event.fingerprint = "SHA256:zZaw2odR50zt1mfgw5n44O1CRqNmXsr4P32rjeOUs3U";
  event.key_type = "ssh-ed25519";
  EXPECT_EQ(CaptureLine(LogLevel::kInfo, LogFormat::kText,
                        [&](Logger& logger) { LogAuthEvent(logger, event); }),
            "INFO auth: result=accepted method=publickey user=alice src=192.0.2.7 port=50122 "
            "transport=tcp key=SHA256:zZaw2odR50zt1mfgw5n44O1CRqNmXsr4P32rjeOUs3U "
            "key_type=ssh-ed25519\n");
}

TEST(AuthLogTest, RejectedIsWarnWithReasonSecondAndNoKeyFieldsWhenEmpty) {
  AuthEvent event;
  event.accepted = false;
  event.reason = "unknown-key";
  event.method = "none";
  event.user = "bob";
  event.source_ip = "2001:db8::5";
  event.source_port = 2222;
  event.transport = "tcp";
  EXPECT_EQ(CaptureLine(LogLevel::kInfo, LogFormat::kText,
                        [&](Logger& logger) { LogAuthEvent(logger, event); }),
            "WARN auth: result=rejected reason=unknown-key method=none user=bob src=2001:db8::5 "
            "port=2222 transport=tcp\n");
}

TEST(AuthLogTest, KeyAndKeyTypeAreOmittedIndependently) {
  AuthEvent event;
  event.reason = "expired";
  event.method = "publickey";
  event.user = "carol";
  event.source_ip = "198.51.100.1";
  event.source_port = 1;
  event.transport = "tcp";
  event.key_type = "ssh-rsa";
  EXPECT_EQ(CaptureLine(LogLevel::kInfo, LogFormat::kText,
                        [&](Logger& logger) { LogAuthEvent(logger, event); }),
            "WARN auth: result=rejected reason=expired method=publickey user=carol "
            "src=198.51.100.1 port=1 transport=tcp key_type=ssh-rsa\n");
  event.key_type = "";
  event.fingerprint = "SHA256:abc";
  EXPECT_EQ(CaptureLine(LogLevel::kInfo, LogFormat::kText,
                        [&](Logger& logger) { LogAuthEvent(logger, event); }),
            "WARN auth: result=rejected reason=expired method=publickey user=carol "
            "src=198.51.100.1 port=1 transport=tcp key=SHA256:abc\n");
}

TEST(AuthLogTest, HostileUserNameCannotForgeFields) {
  AuthEvent event;
  event.reason = "unknown-key";
  event.method = "password";
  event.user = "x src=10.0.0.1\nfake";
  event.source_ip = "192.0.2.9";
  event.source_port = 4;
  event.transport = "tcp";
  const std::string line = CaptureLine(LogLevel::kInfo, LogFormat::kText,
                                       [&](Logger& logger) { LogAuthEvent(logger, event); });
  EXPECT_EQ(line,
            "WARN auth: result=rejected reason=unknown-key method=password "
            "user=\"x src=10.0.0.1\\nfake\" src=192.0.2.9 port=4 transport=tcp\n");
}

TEST(AuthLogTest, JsonFormatKeepsTheSameFields) {
  AuthEvent event;
  event.accepted = true;
  event.method = "publickey";
  event.user = "alice";
  event.source_ip = "192.0.2.7";
  event.source_port = 7;
  event.transport = "tcp";
  const std::string line = CaptureLine(LogLevel::kInfo, LogFormat::kJson,
                                       [&](Logger& logger) { LogAuthEvent(logger, event); });
  EXPECT_THAT(line, ::testing::HasSubstr(
                        "\"level\":\"INFO\",\"component\":\"auth\",\"result\":"
                        "\"accepted\",\"method\":\"publickey\",\"user\":\"alice\",\"src\":"
                        "\"192.0.2.7\",\"port\":\"7\",\"transport\":\"tcp\"}"));
}

// Security round, item 5: a user name of 256 KiB (the most one SSH packet carries) is logged
// as its first 100 characters, as sshd does; a certificate key id is bounded too.
TEST(SecurityRound, Item5LogFloodAuthLineCutsUserNameAndKeyId) {
  const std::string huge_user(256 * 1024, '\x01');
  const std::string huge_key_id(256 * 1024, '=');
  const CertificateLogInfo cert{huge_key_id, 7, "SHA256:ca"};
  AuthEvent event;
  event.reason = "unknown-key";
  event.method = "publickey";
  event.user = huge_user;
  event.source_ip = "192.0.2.9";
  event.source_port = 4;
  event.transport = "tcp";
  event.fingerprint = "SHA256:abc";
  event.key_type = "ssh-ed25519-cert-v01@openssh.com";
  event.certificate = &cert;
  for (LogFormat format : {LogFormat::kText, LogFormat::kJson}) {
    const std::string line = CaptureLine(LogLevel::kInfo, format,
                                         [&](Logger& logger) { LogAuthEvent(logger, event); });
    // 100 user bytes escaped 6x, 256 key id bytes escaped 3x (then \ maybe), the rest small.
    EXPECT_LT(line.size(), 100 * 6 + kMaxLoggedKeyId * 3 * 2 + 400) << line.size();
    EXPECT_THAT(line, ::testing::HasSubstr(std::string(format == LogFormat::kText ? "user=\"" : "\"user\":\"") +
                                           [] {
                                             std::string escaped;
                                             for (int i = 0; i < 100; ++i) escaped += "\\u0001";
                                             return escaped;
                                           }() + "...\""));
    if (format == LogFormat::kJson) {
      EXPECT_TRUE(alknet::test_json::IsFlatJsonObjectLine(line)) << line;
    }
  }
}

TEST(AuthLogTest, LevelFilteringApplies) {
  AuthEvent accepted;
  accepted.accepted = true;
  AuthEvent rejected;
  rejected.reason = "unknown-key";
  EXPECT_EQ(CaptureLine(LogLevel::kWarning, LogFormat::kText,
                        [&](Logger& logger) { LogAuthEvent(logger, accepted); }),
            "");
  EXPECT_THAT(CaptureLine(LogLevel::kWarning, LogFormat::kText,
                          [&](Logger& logger) { LogAuthEvent(logger, rejected); }),
              ::testing::StartsWith("WARN auth: result=rejected reason=unknown-key"));
}

}  // namespace
}  // namespace alknet::auth
