// Tests the config duration syntax: parsing, rejection of bad input, and shortest printing.
#include "server/config/duration.h"

#include <ostream>
#include <string>

#include "gtest/gtest.h"

namespace alknet::config {
namespace {

struct ParseCase {
  std::string text;
  absl::Duration expected;
};

void PrintTo(const ParseCase& c, std::ostream* os) { *os << "'" << c.text << "'"; }

class ParseDurationValidTest : public testing::TestWithParam<ParseCase> {};

TEST_P(ParseDurationValidTest, Parses) {
  absl::StatusOr<absl::Duration> parsed = ParseDuration(GetParam().text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParseDurationValidTest,
    testing::Values(
        ParseCase{"30s", absl::Seconds(30)}, ParseCase{"500ms", absl::Milliseconds(500)},
        ParseCase{"2m", absl::Minutes(2)}, ParseCase{"1h", absl::Hours(1)},
        ParseCase{"1m30s", absl::Seconds(90)}, ParseCase{"90s", absl::Seconds(90)},
        ParseCase{"30", absl::Seconds(30)}, ParseCase{"0", absl::ZeroDuration()},
        ParseCase{"0s", absl::ZeroDuration()}, ParseCase{"007s", absl::Seconds(7)},
        ParseCase{"1h2m3s4ms5us6ns", absl::Hours(1) + absl::Minutes(2) + absl::Seconds(3) +
                                         absl::Milliseconds(4) + absl::Microseconds(5) +
                                         absl::Nanoseconds(6)},
        ParseCase{"1s500ms", absl::Milliseconds(1500)},
        ParseCase{"1500ms", absl::Milliseconds(1500)}, ParseCase{"100us", absl::Microseconds(100)},
        ParseCase{"1ns", absl::Nanoseconds(1)}, ParseCase{"2562047h", absl::Hours(2562047)},
        ParseCase{"9223372036", absl::Seconds(9223372036)}));

struct BadCase {
  std::string text;
  std::string error;  // substring of the message
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << "'" << c.text << "'"; }

class ParseDurationInvalidTest : public testing::TestWithParam<BadCase> {};

TEST_P(ParseDurationInvalidTest, Rejects) {
  absl::StatusOr<absl::Duration> parsed = ParseDuration(GetParam().text);
  ASSERT_FALSE(parsed.ok()) << GetParam().text << " parsed as " << *parsed;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(parsed.status().message()).find(GetParam().error), std::string::npos)
      << parsed.status();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParseDurationInvalidTest,
    testing::Values(
        BadCase{"", "invalid duration '': empty"}, BadCase{"-1s", "durations cannot be negative"},
        BadCase{"-5", "cannot be negative"}, BadCase{"5x", "unknown unit 'x'"},
        BadCase{"5d", "unknown unit 'd'"}, BadCase{"5S", "unexpected character 'S'"},
        BadCase{"5 s", "unexpected character ' '"}, BadCase{" 5s", "expected a number at offset 0"},
        BadCase{"s", "expected a number"}, BadCase{"1.5s", "unexpected character '.'"},
        BadCase{"+5s", "expected a number"}, BadCase{"1m30", "the last number has no unit"},
        BadCase{"30s1m", "units must go from larger to smaller"},
        BadCase{"1s1s", "units must go from larger to smaller"}, BadCase{"9223372037", "too large"},
        BadCase{"2562048h", "too large"}, BadCase{"99999999999999999999s", "too large"},
        BadCase{"2562047h47m16s854ms775us808ns", "too large"},
        BadCase{std::string("5\0s", 3), "unexpected character '\\x00'"}));

struct FormatCase {
  absl::Duration duration;
  std::string text;
};

void PrintTo(const FormatCase& c, std::ostream* os) { *os << "'" << c.text << "'"; }

class FormatDurationTest : public testing::TestWithParam<FormatCase> {};

TEST_P(FormatDurationTest, PrintsShortestCanonicalForm) {
  EXPECT_EQ(config::FormatDuration(GetParam().duration), GetParam().text);
  if (GetParam().duration >= absl::ZeroDuration()) {
    absl::StatusOr<absl::Duration> back = ParseDuration(GetParam().text);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, GetParam().duration);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, FormatDurationTest,
                         testing::Values(FormatCase{absl::ZeroDuration(), "0s"},
                                         FormatCase{absl::Seconds(30), "30s"},
                                         FormatCase{absl::Milliseconds(500), "500ms"},
                                         FormatCase{absl::Minutes(2), "2m"},
                                         FormatCase{absl::Hours(1), "1h"},
                                         FormatCase{absl::Seconds(90), "1m30s"},
                                         FormatCase{absl::Milliseconds(1500), "1s500ms"},
                                         FormatCase{absl::Hours(25), "25h"},
                                         FormatCase{absl::Hours(1) + absl::Nanoseconds(1), "1h1ns"},
                                         FormatCase{absl::Microseconds(1), "1us"},
                                         FormatCase{absl::Seconds(-5), "-5s"}));

TEST(FormatDurationTest, RoundTripsThroughParse) {
  for (int64_t nanos :
       {int64_t{1}, int64_t{999}, int64_t{1000}, int64_t{1000001}, int64_t{59999999999},
        int64_t{3600000000000}, int64_t{3723004005006}, int64_t{9223372036854775807}}) {
    absl::Duration duration = absl::Nanoseconds(nanos);
    std::string text = config::FormatDuration(duration);
    absl::StatusOr<absl::Duration> back = ParseDuration(text);
    ASSERT_TRUE(back.ok()) << text << ": " << back.status();
    EXPECT_EQ(*back, duration) << text;
  }
}

TEST(FormatDurationTest, Infinite) {
  EXPECT_EQ(config::FormatDuration(absl::InfiniteDuration()), "inf");
}

}  // namespace
}  // namespace alknet::config
