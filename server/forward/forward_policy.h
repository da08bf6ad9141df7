// Decides whether an authenticated key may open a direct-tcpip channel to host:port.
// The decision never logs the destination; callers log only the reason.
#pragma once

#include <cstdint>
#include <string_view>

#include "server/auth/authorized_keys.h"

namespace alknet {

enum class ForwardVerdict {
  kAllowed,
  kForwardingDisabled,  // no-port-forwarding or restrict on the key
  kNotPermitted,        // permitopen= does not list the destination
  kReservedName,        // "alknet-*" names are the agent's own services, never dialled out
  kInvalidDestination,  // empty host, port 0, control characters
};

std::string_view ForwardVerdictName(ForwardVerdict verdict);

// The name prefix reserved for the agent's own services (admin API over SSH, ...).
inline constexpr std::string_view kReservedDestinationPrefix = "alknet-";

ForwardVerdict CheckDirectForward(const auth::KeyOptions& options, std::string_view host,
                                  uint32_t port);

}  // namespace alknet
