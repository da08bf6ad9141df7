// The transport seam: whatever carries the bytes, the SSH layer gets one connected stream fd.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/common/net_address.h"
#include "server/common/unique_fd.h"
#include "server/loop/event_loop.h"

namespace alknet {

// Who is on the other end and how they came in. Never holds a tunnel destination.
struct StreamInfo {
  std::string transport;  // "tcp", later "tls", "quic"
  SocketEndpoint peer;
  SocketEndpoint local;
};

// A duplex byte stream ready for SSH: a socket (TCP) or one end of a socketpair bridged to a
// TLS/QUIC stream by the transport. Non-blocking, close-on-exec.
struct ConnectedStream {
  UniqueFd fd;
  StreamInfo info;
};

// Turns an accepted connection into a ConnectedStream on the worker loop that will own the
// SSH session (a TLS transport handshakes there). `done` runs on that loop at most once: with
// the stream, or with an error for a failed handshake; a connection that never turns out to be
// SSH (TLS stealth: web traffic, a full budget) ends without calling it.
class ServerTransport {
 public:
  virtual ~ServerTransport() = default;
  virtual std::string_view name() const = 0;
  // True: the engine takes the pre-auth slot (max_startups) at accept. False: only when `done`
  // hands over the stream (TLS: at the client's SSH banner); until then the transport bounds
  // the connection itself.
  virtual bool startup_slot_at_accept() const { return true; }
  virtual void Establish(EventLoop& loop, UniqueFd accepted, StreamInfo info,
                         std::function<void(absl::StatusOr<ConnectedStream>)> done) = 0;
};

}  // namespace alknet
