// Parses and formats endpoints: "host:port", "[v6]:port", "tcp://host:port", sockaddrs.
#include "server/common/net_address.h"
#include "server/common/strings.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace alknet {

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text, bool allow_zero) {
  HostPort result;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("'", Sv(text), "' is not [IPv6]:port"));
    }
    result.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("'", Sv(text), "' has no :port"));
    }
    if (text.substr(0, colon).find(':') != std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", Sv(text), "': IPv6 addresses need brackets, as in [::1]:22"));
    }
    result.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  if (result.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", Sv(text), "' has an empty host"));
  }
  uint32_t port = 0;
  if (port_text.empty() || port_text.size() > 5 || !absl::SimpleAtoi(Sv(port_text), &port) ||
      port > 65535 || (!allow_zero && port == 0)) {
    return absl::InvalidArgumentError(absl::StrCat("'", Sv(text), "' has an invalid port '",
                                                   Sv(port_text), "'"));
  }
  result.port = static_cast<uint16_t>(port);
  return result;
}

std::string EndpointUrl::ToString() const {
  return absl::StrCat(scheme, "://", address.ToString());
}

absl::StatusOr<EndpointUrl> ParseEndpointUrl(std::string_view text) {
  size_t sep = text.find("://");
  if (sep == std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", Sv(text), "' is not scheme://host:port (e.g. tcp://127.0.0.1:2222)"));
  }
  EndpointUrl url;
  url.scheme = std::string(text.substr(0, sep));
  if (url.scheme != "tcp" && url.scheme != "tls" && url.scheme != "quic") {
    return absl::InvalidArgumentError(absl::StrCat("'", Sv(text), "': unsupported transport '",
                                                   url.scheme, "' (supported: tcp, tls, quic)"));
  }
  auto address = ParseHostPort(text.substr(sep + 3));
  if (!address.ok()) return address.status();
  url.address = *std::move(address);
  return url;
}

SocketEndpoint DescribeSockaddr(const sockaddr* addr, socklen_t len) {
  SocketEndpoint endpoint;
  char buffer[INET6_ADDRSTRLEN] = {};
  if (addr->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in->sin_addr, buffer, sizeof(buffer));
    endpoint.port = ntohs(in->sin_port);
  } else if (addr->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buffer, sizeof(buffer));
    } else {
      inet_ntop(AF_INET6, &in6->sin6_addr, buffer, sizeof(buffer));
    }
    endpoint.port = ntohs(in6->sin6_port);
  } else if (addr->sa_family == AF_UNIX) {
    endpoint.ip = "unix";
    return endpoint;
  }
  endpoint.ip = buffer;
  return endpoint;
}

SocketEndpoint PeerOf(int fd) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) return {};
  return DescribeSockaddr(reinterpret_cast<sockaddr*>(&storage), len);
}

SocketEndpoint LocalOf(int fd) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) return {};
  return DescribeSockaddr(reinterpret_cast<sockaddr*>(&storage), len);
}

}  // namespace alknet
