// libFuzzer entry: the config's duration syntax ("30s", "1m30s", "500ms", a bare number of
// seconds). Properties: never crash; a parsed duration is finite and >= 0 and prints to text
// that parses back to exactly the same duration; any non-negative int64 nanosecond count
// (from the first 8 bytes) prints to text that parses back to itself.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "server/config/duration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<absl::Duration> parsed = alknet::config::ParseDuration(text);
  if (parsed.ok()) {
    if (*parsed < absl::ZeroDuration() || *parsed == absl::InfiniteDuration()) __builtin_trap();
    const std::string printed = alknet::config::FormatDuration(*parsed);
    absl::StatusOr<absl::Duration> again = alknet::config::ParseDuration(printed);
    if (!again.ok() || *again != *parsed) __builtin_trap();
  }
  if (size >= 8) {
    int64_t nanos = 0;
    std::memcpy(&nanos, data, sizeof(nanos));
    if (nanos < 0) nanos = -(nanos + 1);
    const absl::Duration duration = absl::Nanoseconds(nanos);
    absl::StatusOr<absl::Duration> again = alknet::config::ParseDuration(alknet::config::FormatDuration(duration));
    if (!again.ok() || *again != duration) __builtin_trap();
  }
  return 0;
}
