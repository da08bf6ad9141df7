// The rate_limits section's value syntax (rates and byte sizes) and its engine settings.
#include "server/config/rate_units.h"

#include <array>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet::config {
namespace {

constexpr int64_t kMaxRateCount = 1'000'000;
constexpr int64_t kMaxBytes = int64_t{1'000'000'000'000};

absl::Status Bad(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("'", absl::CHexEscape(Sv(text.substr(0, 100))), "' ", Sv(why)));
}

// Leading decimal digits (at least one) into `value`; the rest stays in `text`.
bool TakeDigits(std::string_view& text, int64_t& value) {
  size_t i = 0;
  value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    value = value * 10 + (text[i] - '0');
    if (value > kMaxBytes * 1024) return false;
    ++i;
  }
  if (i == 0) return false;
  text.remove_prefix(i);
  return true;
}

struct Unit {
  std::string_view name;
  int64_t factor;
};
// Printing order: the first unit that divides the value exactly wins.
constexpr std::array<Unit, 8> kUnits = {{{"TiB", int64_t{1} << 40}, {"TB", 1'000'000'000'000},
                                         {"GiB", int64_t{1} << 30}, {"GB", 1'000'000'000},
                                         {"MiB", int64_t{1} << 20}, {"MB", 1'000'000},
                                         {"KiB", int64_t{1} << 10}, {"kB", 1'000}}};

}  // namespace

absl::Status ParseRate(std::string_view text, RateSpec& out) {
  std::string_view rest = text;
  int64_t count = 0;
  if (!TakeDigits(rest, count)) return Bad(text, "is not a rate (N, N/s, N/m or N/h)");
  char unit = 's';
  if (!rest.empty()) {
    if (rest.size() != 2 || rest[0] != '/' || (rest[1] != 's' && rest[1] != 'm' && rest[1] != 'h')) {
      return Bad(text, "is not a rate (N, N/s, N/m or N/h)");
    }
    unit = rest[1];
  }
  if (count > kMaxRateCount) return Bad(text, "is out of range (0..1000000 per unit)");
  out = RateSpec{count, unit};
  return absl::OkStatus();
}

std::string FormatRate(const RateSpec& rate) {
  if (rate.count == 0) return "0";
  return absl::StrCat(rate.count, "/", std::string(1, rate.unit));
}

absl::Status ParseByteSize(std::string_view text, int64_t& out) {
  std::string_view rest = text;
  int64_t value = 0;
  if (!TakeDigits(rest, value)) return Bad(text, "is not a byte size (e.g. 10MB, 512KiB)");
  if (rest.size() >= 2 && rest.substr(rest.size() - 2) == "/s") rest.remove_suffix(2);
  int64_t factor = 1;
  if (!rest.empty()) {
    char prefix = rest[0];
    bool binary = rest.size() >= 2 && rest[1] == 'i';
    int64_t base = binary ? 1024 : 1000;
    int power = prefix == 'k' || prefix == 'K' ? 1 : prefix == 'M' ? 2 : prefix == 'G' ? 3
              : prefix == 'T' ? 4 : 0;
    std::string_view tail = rest.substr(power == 0 ? 0 : (binary ? 2 : 1));
    if (tail != "" && tail != "B") return Bad(text, "is not a byte size (e.g. 10MB, 512KiB)");
    for (int i = 0; i < power; ++i) factor *= base;
  }
  if (value > kMaxBytes / factor) return Bad(text, "is out of range (0..1TB)");
  out = value * factor;
  return absl::OkStatus();
}

std::string FormatByteSize(int64_t bytes) {
  if (bytes == 0) return "0";
  for (const Unit& unit : kUnits) {
    if (bytes % unit.factor == 0) return absl::StrCat(bytes / unit.factor, Sv(unit.name));
  }
  return absl::StrCat(bytes);
}

absl::Status ParseFingerprintList(std::string_view text, std::vector<std::string>& out) {
  std::vector<std::string> parsed;
  for (std::string_view rest = text; !rest.empty();) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.substr(0, 7) != "SHA256:" || item.size() != 50) {
      return Bad(item, "is not a SHA256:... key fingerprint");
    }
    parsed.emplace_back(item);
  }
  if (parsed.size() > 200) return Bad(text.substr(0, 60), "lists more than 200 keys");
  out = std::move(parsed);
  return absl::OkStatus();
}

std::string FormatFingerprintList(const std::vector<std::string>& fingerprints) {
  std::string out;
  for (const std::string& fingerprint : fingerprints) {
    if (!out.empty()) out += ',';
    out += fingerprint;
  }
  return out;
}

double RateSpec::per_second() const {
  const double seconds = unit == 'h' ? 3600.0 : unit == 'm' ? 60.0 : 1.0;
  return static_cast<double>(count) / seconds;
}

RateLimitSettings ToRateLimitSettings(const RateLimits& limits) {
  return {.connections_per_source = limits.connections_per_source.per_second(),
          .connections_per_source_burst = static_cast<double>(limits.connections_per_source_burst),
          .channels_per_session = limits.channels_per_session.per_second(),
          .channels_per_session_burst = static_cast<double>(limits.channels_per_session_burst),
          .sessions_per_key = limits.sessions_per_key.per_second(),
          .sessions_per_key_burst = static_cast<double>(limits.sessions_per_key_burst),
          .max_sessions_per_key = limits.max_sessions_per_key,
          .max_remote_forwards_per_key = limits.max_remote_forwards_per_key,
          .bandwidth_per_key = limits.bandwidth_per_key,
          .bandwidth_per_key_burst = limits.bandwidth_per_key_burst,
          .bandwidth_exempt_keys = limits.bandwidth_exempt_keys};
}

}  // namespace alknet::config
