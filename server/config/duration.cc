// Parses and prints durations in the config's syntax: "30s", "500ms", "2m", "1h", "1m30s".
#include "server/config/duration.h"

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet::config {
namespace {

struct Unit {
  std::string_view name;
  int64_t nanoseconds;
};

// Largest first: ParseDuration requires this order, FormatDuration emits it.
constexpr std::array<Unit, 6> kUnits = {{
    {"h", int64_t{3600} * 1000 * 1000 * 1000},
    {"m", int64_t{60} * 1000 * 1000 * 1000},
    {"s", int64_t{1000} * 1000 * 1000},
    {"ms", int64_t{1000} * 1000},
    {"us", int64_t{1000}},
    {"ns", int64_t{1}},
}};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }

absl::Status Invalid(std::string_view text, std::string_view reason) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid duration '", absl::CHexEscape(Sv(text)), "': ", Sv(reason)));
}

// Parses a run of decimal digits; false on int64 overflow.
bool ParseDigits(std::string_view digits, int64_t& value) {
  value = 0;
  for (char c : digits) {
    if (__builtin_mul_overflow(value, int64_t{10}, &value) ||
        __builtin_add_overflow(value, int64_t{c - '0'}, &value)) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDuration(std::string_view text) {
  if (text.empty()) return Invalid(text, "empty");
  if (text.front() == '-') return Invalid(text, "durations cannot be negative");

  const std::string_view too_large = "too large (the limit is about 292 years)";
  // A bare integer means seconds.
  bool all_digits = true;
  for (char c : text) all_digits = all_digits && IsDigit(c);
  if (all_digits) {
    int64_t seconds = 0;
    int64_t nanos = 0;
    if (!ParseDigits(text, seconds) ||
        __builtin_mul_overflow(seconds, kUnits[2].nanoseconds, &nanos)) {
      return Invalid(text, too_large);
    }
    return absl::Nanoseconds(nanos);
  }

  int64_t total = 0;
  size_t next_unit = 0;  // index into kUnits of the largest unit still allowed
  size_t pos = 0;
  while (pos < text.size()) {
    size_t digits_end = pos;
    while (digits_end < text.size() && IsDigit(text[digits_end])) ++digits_end;
    if (digits_end == pos) {
      return Invalid(text, absl::StrCat("expected a number at offset ", pos));
    }
    size_t unit_end = digits_end;
    while (unit_end < text.size() && IsLower(text[unit_end])) ++unit_end;
    std::string_view unit_name = text.substr(digits_end, unit_end - digits_end);
    if (unit_name.empty()) {
      if (digits_end == text.size()) {
        return Invalid(text, "the last number has no unit (use h, m, s, ms, us or ns)");
      }
      return Invalid(text, absl::StrCat("unexpected character '",
                                        absl::CHexEscape(Sv(text.substr(digits_end, 1))),
                                        "' (use h, m, s, ms, us or ns)"));
    }
    size_t unit_index = kUnits.size();
    for (size_t i = 0; i < kUnits.size(); ++i) {
      if (kUnits[i].name == unit_name) unit_index = i;
    }
    if (unit_index == kUnits.size()) {
      return Invalid(
          text, absl::StrCat("unknown unit '", Sv(unit_name), "' (use h, m, s, ms, us or ns)"));
    }
    if (unit_index < next_unit) {
      return Invalid(text, "units must go from larger to smaller, each at most once");
    }
    next_unit = unit_index + 1;
    int64_t value = 0;
    int64_t nanos = 0;
    if (!ParseDigits(text.substr(pos, digits_end - pos), value) ||
        __builtin_mul_overflow(value, kUnits[unit_index].nanoseconds, &nanos) ||
        __builtin_add_overflow(total, nanos, &total)) {
      return Invalid(text, too_large);
    }
    pos = unit_end;
  }
  return absl::Nanoseconds(total);
}

std::string FormatDuration(absl::Duration duration) {
  if (duration == absl::InfiniteDuration()) return "inf";
  if (duration == -absl::InfiniteDuration()) return "-inf";
  if (duration < absl::ZeroDuration()) return absl::StrCat("-", config::FormatDuration(-duration));
  std::string out;
  absl::Duration rest = duration;
  for (const Unit& unit : kUnits) {
    int64_t count = absl::IDivDuration(rest, absl::Nanoseconds(unit.nanoseconds), &rest);
    if (count != 0) absl::StrAppend(&out, count, Sv(unit.name));
  }
  if (out.empty()) return "0s";
  return out;
}

}  // namespace alknet::config
