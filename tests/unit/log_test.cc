// Logger: the text and JSON forms carry the same fields, JSON each once; control characters,
// DEL and invalid UTF-8 never reach the sink raw; every value is bounded.
#include "server/common/log.h"

#include <cstdio>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/json_check.h"

namespace alknet {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

std::string Capture(LogFormat format, std::string_view message) {
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* sink = open_memstream(&buffer, &size);
  {
    Logger logger(LogLevel::kInfo, format, sink);
    logger.Warn("auth", message,
                {{"result", "rejected"}, {"src", "203.0.113.9"}, {"user", "evil\nuser \"x\""}});
    logger.Debug("auth", "hidden");
  }
  std::fclose(sink);
  std::string out(buffer, size);
  free(buffer);
  return out;
}

TEST(LogTest, TextLineIsOneLineOfKeyValues) {
  std::string line = Capture(LogFormat::kText, "");
  EXPECT_THAT(line, MatchesRegex("[0-9T:.-]+Z WARN auth: result=rejected src=203\\.0\\.113\\.9 "
                                 "user=\"evil\\\\nuser \\\\\"x\\\\\"\"\n"));
}

TEST(LogTest, JsonLineCarriesEachFieldOnce) {
  std::string line = Capture(LogFormat::kJson, "");
  EXPECT_THAT(line, HasSubstr("\"level\":\"WARN\",\"component\":\"auth\",\"result\":\"rejected\""));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("\"msg\"")));  // a message-less line is all fields
  EXPECT_THAT(line, HasSubstr("\"src\":\"203.0.113.9\""));
  EXPECT_THAT(line, HasSubstr("\"user\":\"evil\\nuser \\\"x\\\"\""));
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // exactly one line
  EXPECT_TRUE(test_json::IsFlatJsonObjectLine(line)) << line;
  std::string with_message = Capture(LogFormat::kJson, "refused");
  EXPECT_THAT(with_message, HasSubstr("\"msg\":\"refused\",\"result\":\"rejected\""));
  EXPECT_TRUE(test_json::IsFlatJsonObjectLine(with_message)) << with_message;
}

std::string CaptureOne(LogFormat format, std::string_view message, std::string value) {
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* sink = open_memstream(&buffer, &size);
  {
    Logger logger(LogLevel::kInfo, format, sink);
    logger.Warn("auth", message, {{"user", std::move(value)}, {"src", "203.0.113.9"}});
  }
  std::fclose(sink);
  std::string out(buffer, size);
  free(buffer);
  return out;
}

// Security round, item 5: what a client chooses (a 256 KiB user name of control bytes, DEL,
// invalid UTF-8) can neither make a line grow without bound nor make a JSON line invalid.
TEST(SecurityRound, Item5LogFloodHugeControlValueStaysBoundedAndValidJson) {
  std::string hostile;
  for (size_t i = 0; i < 256 * 1024; ++i) hostile.push_back(static_cast<char>(i % 0x20));
  for (LogFormat format : {LogFormat::kText, LogFormat::kJson}) {
    std::string line = CaptureOne(format, "", hostile);
    // One field of at most kMaxLogValueBytes, each byte escaped to at most 6.
    EXPECT_LT(line.size(), 6 * kMaxLogValueBytes + 200) << line.size();
    EXPECT_EQ(line.find('\n'), line.size() - 1);
    if (format == LogFormat::kJson) {
      EXPECT_TRUE(test_json::IsFlatJsonObjectLine(line));
    }
  }
  std::string message_flood = CaptureOne(LogFormat::kJson, hostile, "u");
  EXPECT_LT(message_flood.size(), 6 * kMaxLogValueBytes + 200);
  EXPECT_TRUE(test_json::IsFlatJsonObjectLine(message_flood));
}

TEST(SecurityRound, Item5LogEscapesDelAndInvalidUtf8) {
  const std::string value = std::string("a\x7f") + "\xff\xc0\xaf" + "\xed\xa0\x80" + "\xe2\x82" +
                            "ok\xc3\xa9" "";
  std::string json = CaptureOne(LogFormat::kJson, "", value);
  EXPECT_TRUE(test_json::IsFlatJsonObjectLine(json)) << json;
  EXPECT_THAT(json, HasSubstr("\"user\":\"a\\u007f\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd"
                              "\\ufffd\\ufffdok\xc3\xa9\""));
  std::string text = CaptureOne(LogFormat::kText, "", value);
  EXPECT_THAT(text, HasSubstr("user=\"a\\u007f\\ufffd"));
  EXPECT_EQ(text.find('\x7f'), std::string::npos);
  EXPECT_EQ(text.find('\xff'), std::string::npos);
}

TEST(SecurityRound, Item5LogTruncateKeepsCharactersWhole) {
  EXPECT_EQ(TruncateForLog("abc", 3), "abc");
  EXPECT_EQ(TruncateForLog("abcd", 3), "abc...");
  EXPECT_EQ(TruncateForLog("a\xc3\xa9" "b", 2), "a...");  // never half of the é
  EXPECT_EQ(TruncateForLog(std::string(500, 'u'), kMaxLoggedUserName).size(), kMaxLoggedUserName + 3);
}

TEST(LogTest, LevelsBelowTheMinimumAreDropped) {
  EXPECT_THAT(Capture(LogFormat::kText, "shown"), ::testing::Not(HasSubstr("hidden")));
}

}  // namespace
}  // namespace alknet
