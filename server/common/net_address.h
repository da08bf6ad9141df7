// Parses and formats endpoints: "host:port", "[v6]:port", "tcp://host:port", sockaddrs.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace alknet {

struct HostPort {
  std::string host;  // a name, an IPv4 literal or an IPv6 literal without brackets
  uint16_t port = 0;

  std::string ToString() const;  // brackets IPv6 literals
  bool operator==(const HostPort&) const = default;
};

// "host:port" or "[v6addr]:port"; port 0..65535 (allow_zero decides whether 0 is valid).
absl::StatusOr<HostPort> ParseHostPort(std::string_view text, bool allow_zero = true);

// A listener or server address with its transport: "tcp://127.0.0.1:2222".
struct EndpointUrl {
  std::string scheme;  // "tcp" or "tls" (later "quic")
  HostPort address;

  std::string ToString() const;
  bool operator==(const EndpointUrl&) const = default;
};
absl::StatusOr<EndpointUrl> ParseEndpointUrl(std::string_view text);

// Numeric address and port of a socket address (AF_INET / AF_INET6; v4-mapped v6 shown as v4).
struct SocketEndpoint {
  std::string ip;
  uint16_t port = 0;
};
SocketEndpoint DescribeSockaddr(const sockaddr* addr, socklen_t len);
SocketEndpoint PeerOf(int fd);
SocketEndpoint LocalOf(int fd);

}  // namespace alknet
