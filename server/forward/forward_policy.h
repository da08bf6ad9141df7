// Decides whether an authenticated key may open a direct-tcpip channel to host:port.
// The decision never logs the destination; callers log only the reason.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "server/auth/authorized_keys.h"
#include "server/common/reserved_names.h"

namespace alknet {

enum class ForwardVerdict {
  kAllowed,
  kForwardingDisabled,  // no-port-forwarding or restrict on the key
  kNotPermitted,        // permitopen= does not list the destination
  kReservedName,        // "alknet-*" names are the agent's own services, never dialled out
  kInvalidDestination,  // empty host, port 0, control characters
  kListenNotPermitted,  // permitlisten= does not list the requested listen address
  kPrivilegedPort,      // listen port below 1024 not named by permitlisten=
};

std::string_view ForwardVerdictName(ForwardVerdict verdict);

ForwardVerdict CheckDirectForward(const auth::KeyOptions& options, std::string_view host,
                                  uint32_t port);

// A remote (-R) forward: may the key listen on requested_host:port, and where to bind.
// Like sshd with GatewayPorts=no: the bind is loopback (127.0.0.1) unless permitlisten= names
// the requested host explicitly (then the numeric host itself is bound, wildcards included).
// Without permitlisten= any port >= 1024 (or 0: pick one) is allowed; with it, one entry must
// match host ("*" or equal, case-insensitive) and port (equal or "*"; a request for port 0
// needs "*"). The decision never logs.
struct ListenDecision {
  ForwardVerdict verdict = ForwardVerdict::kAllowed;
  std::string bind_host;  // numeric address to bind when allowed
};
ListenDecision CheckRemoteListen(const auth::KeyOptions& options, std::string_view requested_host,
                                 uint32_t port);

}  // namespace alknet
