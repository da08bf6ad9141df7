// Helpers shared by the files of AdminCore (agent/admin/admin_*.cc); not part of its interface.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/time/time.h"
#include "alknet/admin/v1/keys.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace alknet::admin::internal {

inline void SetTimestamp(google::protobuf::Timestamp* out, absl::Time time) {
  int64_t nanos = absl::ToUnixNanos(time);
  int64_t seconds = nanos / 1000000000;
  int64_t rest = nanos % 1000000000;
  if (rest < 0) {
    rest += 1000000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rest));
}

inline bool IsAdmin(v1::KeyRole role) { return role == v1::KEY_ROLE_ADMIN; }

// Sessions ended because their key was removed (keys rm --kill, here or on another replica).
inline constexpr std::string_view kKeyRemovedReason = "key removed by admin";

}  // namespace alknet::admin::internal
