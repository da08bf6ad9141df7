// `alknet-admin --via ssh://[user@]host:port`: an SSH session (libssh client, blocking) with a
// direct-tcpip channel to "alknet-admin" port 0, bridged by one thread to a socketpair whose
// other end is handed to gRPC (grpc::CreateInsecureChannelFromFd).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <libssh/libssh.h>

#include "absl/status/statusor.h"

namespace alknet::admin_cli {

struct SshTarget {
  std::string user;  // empty: $USER
  std::string host;
  int port = 22;
};

// "ssh://[user@]host[:port]"; IPv6 hosts in brackets.
absl::StatusOr<SshTarget> ParseSshUrl(std::string_view url);

struct HostKeyCheck {
  std::string known_hosts;           // file in known_hosts format; empty: libssh's default
  std::string fingerprint;           // "SHA256:..." of the host key; wins over known_hosts
  bool insecure_accept_any = false;  // no check at all (tests, first contact)
};

class SshBridge {
 public:
  // Connects, checks the host key, authenticates with `identity` (a private key file) and opens
  // the admin channel. PermissionDenied when the agent refuses the channel (the key lacks the
  // admin role); Unavailable for connection failures; Unauthenticated for a refused key.
  static absl::StatusOr<std::unique_ptr<SshBridge>> Open(const SshTarget& target,
                                                         const std::string& identity,
                                                         const HostKeyCheck& check);
  ~SshBridge();

  // The socket gRPC talks over; ownership passes to the caller (gRPC closes it).
  int TakeGrpcFd();

 private:
  SshBridge() = default;
  void Run();

  ssh_session session_ = nullptr;
  ssh_channel channel_ = nullptr;
  int grpc_fd_ = -1;
  int bridge_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace alknet::admin_cli
