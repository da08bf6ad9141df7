// Decides whether an authenticated key may open a direct-tcpip channel to host:port.
#include "server/forward/forward_policy.h"
#include "server/common/strings.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "server/auth/address_patterns.h"

namespace alknet {

std::string_view ForwardVerdictName(ForwardVerdict verdict) {
  switch (verdict) {
    case ForwardVerdict::kAllowed: return "allowed";
    case ForwardVerdict::kForwardingDisabled: return "port-forwarding-disabled";
    case ForwardVerdict::kNotPermitted: return "permitopen-mismatch";
    case ForwardVerdict::kReservedName: return "reserved-destination";
    case ForwardVerdict::kInvalidDestination: return "invalid-destination";
  }
  return "invalid-destination";
}

ForwardVerdict CheckDirectForward(const auth::KeyOptions& options, std::string_view host,
                                  uint32_t port) {
  if (host.empty() || host.size() > 255 || port == 0 || port > 65535) {
    return ForwardVerdict::kInvalidDestination;
  }
  for (char c : host) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return ForwardVerdict::kInvalidDestination;
  }
  if (absl::StartsWithIgnoreCase(Sv(host), Sv(kReservedDestinationPrefix))) {
    return ForwardVerdict::kReservedName;
  }
  if (!options.port_forwarding) return ForwardVerdict::kForwardingDisabled;
  if (!auth::DestinationAllowed(options.permit_open, host, static_cast<uint16_t>(port))) {
    return ForwardVerdict::kNotPermitted;
  }
  return ForwardVerdict::kAllowed;
}

}  // namespace alknet
