// A rate-limit rejection: counted by rule, logged as the fail2ban auth line, throttled.
#include "server/ssh/rate_rejections.h"

#include "server/auth/auth_log.h"

namespace alknet {

void RecordRateRejection(Logger& logger, EngineMetrics& metrics, RateLimiter& limiter,
                         const RateRejection& rejection, const StreamInfo& info,
                         std::string_view user, std::string_view fingerprint) {
  metrics.Rejected(rejection.metric);
  if (!limiter.ShouldLog(rejection.rule, info.peer.ip)) return;
  auth::LogAuthEvent(logger, {.accepted = false, .reason = rejection.rule,
                              .method = fingerprint.empty() ? "none" : "publickey", .user = user,
                              .source_ip = info.peer.ip, .source_port = info.peer.port,
                              .transport = info.transport, .fingerprint = fingerprint});
}

}  // namespace alknet
