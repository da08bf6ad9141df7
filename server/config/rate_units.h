// The rate_limits section's value syntax: rates ("20", "20/s", "30/m", "100/h") and byte sizes
// ("10MB", "512KiB", "1G", "65536"), and its conversion to the engine's RateLimitSettings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "server/common/rate_limiter.h"
#include "server/config/config.h"

namespace alknet::config {

// At most 1,000,000 per unit; 0 turns the rule off.
absl::Status ParseRate(std::string_view text, RateSpec& out);
std::string FormatRate(const RateSpec& rate);

// Bytes: an integer with an optional k/K, M, G, T (x1000) or Ki, Mi, Gi, Ti (x1024) suffix,
// an optional B and an optional /s; at most 1 TB (0 turns a rule off).
absl::Status ParseByteSize(std::string_view text, int64_t& out);
// The largest exact unit: 10000000 -> "10MB", 1048576 -> "1MiB", 1000 -> "1kB", 7 -> "7".
std::string FormatByteSize(int64_t bytes);

// "SHA256:a,SHA256:b" (at most 200; "" is none).
absl::Status ParseFingerprintList(std::string_view text, std::vector<std::string>& out);
std::string FormatFingerprintList(const std::vector<std::string>& fingerprints);

RateLimitSettings ToRateLimitSettings(const RateLimits& limits);

}  // namespace alknet::config
