// A listening TCP socket on a host:port.
#include "server/common/tcp_listen.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"

namespace alknet {

absl::StatusOr<UniqueFd> ListenTcp(const HostPort& address, std::string_view label, int backlog) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* results = nullptr;
  std::string port = absl::StrCat(address.port);
  const char* host = address.host == "*" ? nullptr : address.host.c_str();
  int rc = getaddrinfo(host, port.c_str(), &hints, &results);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(label), ": cannot resolve host: ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(results, freeaddrinfo);
  absl::Status last = absl::UnavailableError(absl::StrCat(Sv(label), ": no address"));
  for (addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      last = ErrnoStatus(absl::StrCat(Sv(label), ": socket"), errno);
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last = ErrnoStatus(absl::StrCat(Sv(label), ": bind"), errno);
      continue;
    }
    if (listen(fd.get(), backlog) != 0) {
      last = ErrnoStatus(absl::StrCat(Sv(label), ": listen"), errno);
      continue;
    }
    return fd;
  }
  return last;
}

}  // namespace alknet
