// A rate-limit rejection: counted by rule (never by destination) and written as the fail2ban
// auth line (result=rejected reason=<rule> ... src=<ip> port=<n>), at most once per rule and
// source per RateLimiter::kLogIntervalNanos.
#pragma once

#include <string_view>

#include "server/common/log.h"
#include "server/common/rate_limiter.h"
#include "server/metrics/engine_metrics.h"
#include "server/transport/transport.h"

namespace alknet {

struct RateRejection {
  RejectReason metric;
  std::string_view rule;  // "conn-rate", "channel-rate", "session-rate", "sessions-per-key",
                          // "rforwards-per-key", "key-table-full"
};

inline constexpr RateRejection kConnRateRejection{RejectReason::kConnRate, "conn-rate"};
inline constexpr RateRejection kChannelRateRejection{RejectReason::kChannelRate, "channel-rate"};
inline constexpr RateRejection kSessionRateRejection{RejectReason::kSessionRate, "session-rate"};
inline constexpr RateRejection kSessionsPerKeyRejection{RejectReason::kSessionsPerKey,
                                                        "sessions-per-key"};
inline constexpr RateRejection kRemoteForwardsPerKeyRejection{RejectReason::kRemoteForwardsPerKey,
                                                              "rforwards-per-key"};
inline constexpr RateRejection kKeyTableFullRejection{RejectReason::kKeyTableFull, "key-table-full"};

// `user` and `fingerprint` may be empty (a connection refused at accept has neither).
void RecordRateRejection(Logger& logger, EngineMetrics& metrics, RateLimiter& limiter,
                         const RateRejection& rejection, const StreamInfo& info,
                         std::string_view user = {}, std::string_view fingerprint = {});

}  // namespace alknet
