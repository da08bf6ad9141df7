// Decides whether an authenticated key may open a direct-tcpip channel to host:port.
#include "server/forward/forward_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

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
    case ForwardVerdict::kListenNotPermitted: return "permitlisten-mismatch";
    case ForwardVerdict::kPrivilegedPort: return "privileged-port";
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
  if (IsReservedDestination(host)) {
    return ForwardVerdict::kReservedName;
  }
  if (!options.port_forwarding) return ForwardVerdict::kForwardingDisabled;
  if (!auth::DestinationAllowed(options.permit_open, host, static_cast<uint16_t>(port))) {
    return ForwardVerdict::kNotPermitted;
  }
  return ForwardVerdict::kAllowed;
}

namespace {

bool IsWildcardHost(std::string_view host) {
  return host.empty() || host == "*" || host == "0.0.0.0" || host == "::";
}

bool IsNumericHost(const std::string& host) {
  in6_addr v6{};
  in_addr v4{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

}  // namespace

ListenDecision CheckRemoteListen(const auth::KeyOptions& options, std::string_view requested_host,
                                 uint32_t port) {
  ListenDecision decision;
  if (requested_host.size() > 255 || port > 65535) {
    decision.verdict = ForwardVerdict::kInvalidDestination;
    return decision;
  }
  for (char c : requested_host) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      decision.verdict = ForwardVerdict::kInvalidDestination;
      return decision;
    }
  }
  if (!options.port_forwarding) {
    decision.verdict = ForwardVerdict::kForwardingDisabled;
    return decision;
  }
  // Does a permitlisten= entry name this host explicitly (not through "*")?
  bool named_explicitly = false;
  std::string named_host;
  bool permitted = options.permit_listen.empty();
  for (const auth::HostPortPattern& pattern : options.permit_listen) {
    bool port_ok = pattern.any_port || (port != 0 && pattern.port == port);
    if (!port_ok) continue;
    if (pattern.host == "*") {
      permitted = true;
    } else if (absl::EqualsIgnoreCase(Sv(pattern.host), Sv(requested_host)) ||
               ((pattern.host == "0.0.0.0" || pattern.host == "::") &&
                IsWildcardHost(requested_host))) {
      permitted = true;
      named_explicitly = true;
      named_host = pattern.host;
    }
  }
  if (!permitted) {
    decision.verdict = ForwardVerdict::kListenNotPermitted;
    return decision;
  }
  if (port != 0 && port < 1024 && options.permit_listen.empty()) {
    decision.verdict = ForwardVerdict::kPrivilegedPort;
    return decision;
  }
  std::string host(requested_host);
  if (named_explicitly) {
    if (IsWildcardHost(host)) host = named_host;
    if (absl::EqualsIgnoreCase(Sv(host), "localhost")) host = "127.0.0.1";
    // Names other than localhost are not resolved on the loop: they bind loopback.
    decision.bind_host = IsNumericHost(host) ? host : "127.0.0.1";
    return decision;
  }
  // GatewayPorts=no: wildcards and other hosts bind loopback; explicit loopback literals stay.
  if (!IsWildcardHost(host) && IsNumericHost(host) &&
      (absl::StartsWith(Sv(host), "127.") || host == "::1")) {
    decision.bind_host = host;
  } else {
    decision.bind_host = "127.0.0.1";
  }
  return decision;
}

}  // namespace alknet
