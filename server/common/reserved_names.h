// The "alknet-*" destination names reserved for the agent's own services: one definition for
// the server's forwarding policy and the client role's SOCKS5 / -L checks.
#pragma once

#include <string_view>

#include "absl/strings/match.h"
#include "server/common/strings.h"

namespace alknet {

// The name prefix reserved for the agent's own services (admin API over SSH, ...).
inline constexpr std::string_view kReservedDestinationPrefix = "alknet-";
// direct-tcpip to "alknet-admin" port 0 from an admin-role key reaches the admin API.
inline constexpr std::string_view kAdminDestination = "alknet-admin";

// True for names starting with "alknet-" in any case: never dialled out by the server, never
// asked for by the client role on behalf of a local program.
inline bool IsReservedDestination(std::string_view host) {
  return absl::StartsWithIgnoreCase(Sv(host), Sv(kReservedDestinationPrefix));
}

}  // namespace alknet
