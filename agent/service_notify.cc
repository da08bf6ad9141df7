// sd_notify(3) over a unix datagram socket; see service_notify.h.
#include "agent/service_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/unique_fd.h"

namespace alknet::agent {

ServiceNotifier ServiceNotifier::FromEnvironment() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  return ServiceNotifier(path == nullptr ? "" : path);
}

absl::Status ServiceNotifier::Notify(std::string_view message) const {
  if (!enabled()) return absl::OkStatus();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof(address.sun_path) ||
      (socket_path_[0] != '/' && socket_path_[0] != '@')) {
    return absl::InvalidArgumentError(
        absl::StrCat("NOTIFY_SOCKET: '", socket_path_, "' is not a socket path or @name"));
  }
  std::memcpy(address.sun_path, socket_path_.data(), socket_path_.size());
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  const socklen_t length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path_.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus("NOTIFY_SOCKET: socket", errno);
  if (::sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&address), length) < 0) {
    return ErrnoStatus(absl::StrCat("NOTIFY_SOCKET: send to ", socket_path_), errno);
  }
  return absl::OkStatus();
}

absl::Status ServiceNotifier::Ready(std::string_view status) const {
  return Notify(absl::StrCat("READY=1\nMAINPID=", ::getpid(), "\nSTATUS=", std::string(status)));
}

absl::Status ServiceNotifier::Reloading() const {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const uint64_t usec = static_cast<uint64_t>(now.tv_sec) * 1000000u +
                        static_cast<uint64_t>(now.tv_nsec) / 1000u;
  return Notify(absl::StrCat("RELOADING=1\nMONOTONIC_USEC=", usec, "\nSTATUS=reloading"));
}

absl::Status ServiceNotifier::Stopping() const { return Notify("STOPPING=1\nSTATUS=stopping"); }

}  // namespace alknet::agent
