// A listening TCP socket on a host:port ("*" = every address), non-blocking and close-on-exec.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "server/common/net_address.h"
#include "server/common/unique_fd.h"

namespace alknet {

// Tries each address the host resolves to (IPv6 ones with IPV6_V6ONLY) until one binds.
// Errors read "<label>: cannot resolve host: ...", "<label>: bind: Address already in use"
// (ALREADY_EXISTS), ...
absl::StatusOr<UniqueFd> ListenTcp(const HostPort& address, std::string_view label, int backlog = 1024);

}  // namespace alknet
