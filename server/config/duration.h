// Parses and prints durations in the config's syntax: "30s", "500ms", "2m", "1h", "1m30s".
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace alknet::config {

absl::StatusOr<absl::Duration> ParseDuration(std::string_view text);
std::string FormatDuration(absl::Duration duration);

}  // namespace alknet::config
