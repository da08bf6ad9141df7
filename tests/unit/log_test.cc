// Logger: the text and JSON forms carry the same fields; the auth line's key=value text survives
// in JSON's "msg" so one fail2ban regex can serve both; control characters never reach the sink.
#include "server/common/log.h"

#include <cstdio>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

TEST(LogTest, JsonLineCarriesFieldsAndTheTextFormInMsg) {
  std::string line = Capture(LogFormat::kJson, "");
  EXPECT_THAT(line, HasSubstr("\"level\":\"WARN\",\"component\":\"auth\""));
  EXPECT_THAT(line, HasSubstr("\"msg\":\"result=rejected src=203.0.113.9 "));
  EXPECT_THAT(line, HasSubstr("\"src\":\"203.0.113.9\""));
  EXPECT_THAT(line, HasSubstr("\"user\":\"evil\\nuser \\\"x\\\"\""));
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // exactly one line
}

TEST(LogTest, LevelsBelowTheMinimumAreDropped) {
  EXPECT_THAT(Capture(LogFormat::kText, "shown"), ::testing::Not(HasSubstr("hidden")));
}

}  // namespace
}  // namespace alknet
