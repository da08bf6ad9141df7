// Sockets inherited the way systemd passes them, matched to configured listeners.
#include "server/common/listen_fds.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"

namespace alknet {

namespace {
// More than any sane unit passes; a larger number is a broken environment, not a request.
constexpr int kMaxListenFds = 1024;
constexpr char kUpgradeLinkPrefix[] = "alknet-link-";

// Same family, address and (unless `want_port` is 0) port.
bool SameAddress(const sockaddr_storage& have, const sockaddr* want, uint16_t want_port) {
  if (have.ss_family != want->sa_family) return false;
  if (have.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&have);
    const auto* b = reinterpret_cast<const sockaddr_in*>(want);
    return a->sin_addr.s_addr == b->sin_addr.s_addr &&
           (want_port == 0 || ntohs(a->sin_port) == want_port);
  }
  if (have.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&have);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(want);
    return std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(in6_addr)) == 0 &&
           (want_port == 0 || ntohs(a->sin6_port) == want_port);
  }
  return false;
}
}  // namespace

std::string UpgradeLinkFdName(int socket_fd, uint32_t epoch) {
  return absl::StrCat(kUpgradeLinkPrefix, socket_fd, "-", absl::Hex(epoch, absl::kZeroPad8));
}

absl::StatusOr<ListenFdsSpec> ParseListenFds(const char* listen_pid, const char* listen_fds,
                                             const char* listen_fdnames, pid_t self) {
  ListenFdsSpec spec;
  if (listen_fds == nullptr) return spec;
  if (listen_pid == nullptr) {
    return absl::InvalidArgumentError("LISTEN_FDS is set but LISTEN_PID is not");
  }
  int pid = 0;
  if (!absl::SimpleAtoi(listen_pid, &pid) || pid <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("LISTEN_PID: not a process id: \"", listen_pid, "\""));
  }
  // For another process (a parent that forgot to unset them): not ours, as sd_listen_fds says.
  if (pid != self) return spec;
  int count = 0;
  if (!absl::SimpleAtoi(listen_fds, &count) || count <= 0 || count > kMaxListenFds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LISTEN_FDS: expected a number of descriptors from 1 to ", kMaxListenFds, ", got \"",
        listen_fds, "\""));
  }
  spec.count = count;
  if (listen_fdnames != nullptr) {
    spec.names = absl::StrSplit(listen_fdnames, ':');
    if (static_cast<int>(spec.names.size()) != count) {
      return absl::InvalidArgumentError(absl::StrCat("LISTEN_FDNAMES: ", spec.names.size(),
                                                     " names for LISTEN_FDS=", count));
    }
  } else {
    spec.names.assign(count, "unknown");
  }
  return spec;
}

absl::StatusOr<InheritedSockets> InheritedSockets::FromEnvironment() {
  absl::StatusOr<ListenFdsSpec> spec = ParseListenFds(
      std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"), std::getenv("LISTEN_FDNAMES"), getpid());
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (!spec.ok()) return spec.status();
  std::vector<Socket> sockets;
  for (int i = 0; i < spec->count; ++i) {
    int fd = kListenFdsStart + i;
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("LISTEN_FDS: inherited fd ", fd, " is not open"));
    }
    UniqueFd owned(fd);
    fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    int type = 0;
    int listening = 0;
    socklen_t len = sizeof(type);
    socklen_t len2 = sizeof(listening);
    bool listening_tcp = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
                         type == SOCK_STREAM &&
                         getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len2) == 0 &&
                         listening != 0;
    bool bound_udp = type == SOCK_DGRAM && LocalOf(fd).port != 0;
    sockaddr_storage family{};
    socklen_t family_len = sizeof(family);
    bool upgrade_link = type == SOCK_SEQPACKET && absl::StartsWith(spec->names[i], kUpgradeLinkPrefix) &&
                        getsockname(fd, reinterpret_cast<sockaddr*>(&family), &family_len) == 0 &&
                        family.ss_family == AF_UNIX;
    if (!listening_tcp && !bound_udp && !upgrade_link) {
      return absl::InvalidArgumentError(
          absl::StrCat("LISTEN_FDS: inherited fd ", fd, " (name ", spec->names[i],
                       ") is not a listening TCP socket, a bound UDP socket or an upgrade link"));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    sockets.push_back({std::move(owned), spec->names[i], type});
  }
  return InheritedSockets(std::move(sockets));
}

absl::StatusOr<std::optional<UniqueFd>> InheritedSockets::Take(const HostPort& address,
                                                               std::string_view label) {
  absl::StatusOr<std::vector<UniqueFd>> taken = TakeMatching(address, label, SOCK_STREAM, false);
  if (!taken.ok()) return taken.status();
  if (taken->empty()) return std::optional<UniqueFd>();
  return std::optional<UniqueFd>(std::move(taken->front()));
}

absl::StatusOr<std::vector<UniqueFd>> InheritedSockets::TakeAllDatagram(const HostPort& address,
                                                                        std::string_view label) {
  return TakeMatching(address, label, SOCK_DGRAM, true);
}

absl::StatusOr<std::vector<UniqueFd>> InheritedSockets::TakeMatching(const HostPort& address,
                                                                     std::string_view label,
                                                                     int type, bool all) {
  std::vector<UniqueFd> taken;
  if (sockets_.empty()) return taken;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = type;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* results = nullptr;
  const char* host = address.host == "*" ? nullptr : address.host.c_str();
  int rc = getaddrinfo(host, "0", &hints, &results);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(label), ": cannot resolve host: ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(results, freeaddrinfo);
  for (addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
    for (auto it = sockets_.begin(); it != sockets_.end();) {
      sockaddr_storage bound{};
      socklen_t len = sizeof(bound);
      if (it->type != type || getsockname(it->fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0 ||
          !SameAddress(bound, ai->ai_addr, address.port)) {
        ++it;
        continue;
      }
      taken.push_back(std::move(it->fd));
      it = sockets_.erase(it);
      if (!all) return taken;
    }
    if (!taken.empty()) return taken;
  }
  return taken;
}

std::optional<InheritedSockets::UpgradeLink> InheritedSockets::TakeUpgradeLink(int socket_fd) {
  const std::string prefix = absl::StrCat(kUpgradeLinkPrefix, socket_fd, "-");
  for (auto it = sockets_.begin(); it != sockets_.end(); ++it) {
    uint32_t epoch = 0;
    if (it->type != SOCK_SEQPACKET || !absl::StartsWith(it->name, prefix) ||
        it->name.size() != prefix.size() + 8 ||
        !absl::SimpleHexAtoi(absl::string_view(it->name).substr(prefix.size()), &epoch)) {
      continue;
    }
    UpgradeLink link{std::move(it->fd), epoch};
    sockets_.erase(it);
    return link;
  }
  return std::nullopt;
}

std::string InheritedSockets::DescribeRemaining() const {
  std::vector<std::string> parts;
  for (const Socket& socket : sockets_) {
    SocketEndpoint local = LocalOf(socket.fd.get());
    parts.push_back(absl::StrCat("fd ", socket.fd.get(), " (name ", socket.name, ") bound to ",
                                 HostPort{local.ip, local.port}.ToString()));
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace alknet
