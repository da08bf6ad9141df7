// Sockets inherited the way systemd passes them (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES), and
// their matching to configured listeners by family, address and port.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/net_address.h"
#include "server/common/unique_fd.h"

namespace alknet {

// The first inherited descriptor, as in sd_listen_fds(3).
inline constexpr int kListenFdsStart = 3;
// LISTEN_FDNAMES of a binary upgrade's sockets.
inline constexpr char kUpgradeFdName[] = "alknet-upgrade";
// The name of a quic:// worker's upgrade link (a unix SOCK_SEQPACKET socket): it belongs to
// the UDP socket inherited as `socket_fd`, and the process at its other end issues connection
// IDs of `epoch` ("alknet-link-4-0a0b0c0d").
std::string UpgradeLinkFdName(int socket_fd, uint32_t epoch);

// What the three variables say. `count` 0 means "nothing for us" (unset, or LISTEN_PID names
// another process: ignored, as sd_listen_fds does). Pure: no descriptor is touched.
struct ListenFdsSpec {
  int count = 0;
  std::vector<std::string> names;  // one per fd ("unknown" when LISTEN_FDNAMES is unset)
};
// Errors ("LISTEN_FDS: ...") for a count that is not a positive number, absurdly large, a
// LISTEN_PID that is not a number, or a LISTEN_FDNAMES with the wrong number of names.
absl::StatusOr<ListenFdsSpec> ParseListenFds(const char* listen_pid, const char* listen_fds,
                                             const char* listen_fdnames, pid_t self);

// The inherited listening sockets, taken once at startup. Take() hands out the one bound to a
// configured address; whatever is left unclaimed is an error for the caller to report.
class InheritedSockets {
 public:
  struct Socket {
    UniqueFd fd;
    std::string name;
    // SOCK_STREAM (listening TCP), SOCK_DGRAM (bound UDP, quic://) or SOCK_SEQPACKET (an
    // upgrade link, named by UpgradeLinkFdName)
    int type = SOCK_STREAM;
  };
  InheritedSockets() = default;
  explicit InheritedSockets(std::vector<Socket> sockets) : sockets_(std::move(sockets)) {}

  // Reads LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES from the environment, unsets them (children
  // must not see them), checks each descriptor is a listening TCP socket, a bound UDP one
  // (quic://, from a binary upgrade) or an upgrade link, and marks it close-on-exec.
  static absl::StatusOr<InheritedSockets> FromEnvironment();

  // The inherited socket bound to `address` (host resolved as a passive address, "*" every
  // address; port 0 matches any port), or nullopt. Errors only for an unresolvable host.
  absl::StatusOr<std::optional<UniqueFd>> Take(const HostPort& address, std::string_view label);
  // Every inherited UDP socket bound to `address` (the same matching), in inherited order: a
  // quic:// listener's per-worker sockets, worker 0 first. Empty when there is none.
  absl::StatusOr<std::vector<UniqueFd>> TakeAllDatagram(const HostPort& address,
                                                        std::string_view label);

  // The upgrade link that came with the UDP socket inherited as `socket_fd`, and the epoch its
  // name gives, or nullopt.
  struct UpgradeLink {
    UniqueFd fd;
    uint32_t epoch = 0;
  };
  std::optional<UpgradeLink> TakeUpgradeLink(int socket_fd);

  bool empty() const { return sockets_.empty(); }
  size_t size() const { return sockets_.size(); }
  // "fd 3 (name web) bound to 127.0.0.1:22, ..." for an error message about leftovers.
  std::string DescribeRemaining() const;

 private:
  // Takes the inherited sockets of `type` bound to `address`: the first only, or all.
  absl::StatusOr<std::vector<UniqueFd>> TakeMatching(const HostPort& address, std::string_view label,
                                                     int type, bool all);

  std::vector<Socket> sockets_;
};

}  // namespace alknet
