// The transport seam: whatever carries the bytes, the SSH layer gets one connected stream fd.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/net_address.h"
#include "server/common/unique_fd.h"
#include "server/loop/event_loop.h"

namespace alknet {

class InheritedSockets;  // server/common/listen_fds.h

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

// What a datagram listener asks of the engine.
struct DatagramHooks {
  // A new connection from `info`, before any per-connection state: the engine's checks
  // (penalties, rates, max_sessions) and a max_startups slot, held until SSH authentication.
  // Null refuses it (the engine counted and logged why). Thread-safe.
  std::function<std::shared_ptr<void>(const StreamInfo& info)> admit;
  // On worker `worker`'s loop: the SSH stream of a connection admitted there.
  std::function<void(int worker, ConnectedStream stream, std::shared_ptr<void> admission)> deliver;
};

// A datagram transport's listener (QUIC): no accepted fds, but one endpoint per worker loop,
// each owning the connections it accepted and handing their streams to its own worker.
class DatagramListener {
 public:
  virtual ~DatagramListener() = default;
  // The bound address with the real port: "quic://127.0.0.1:41234".
  virtual const EndpointUrl& bound() const = 0;
  // Starts endpoint k on loops[k] (one loop per socket bound). From the controlling thread.
  virtual absl::Status Start(const std::vector<EventLoop*>& loops, DatagramHooks hooks) = 0;
  // New connections are turned away, running ones go on. Blocks until every loop took it.
  virtual void StopAccepting() = 0;
  // What a binary upgrade's new process inherits for worker k (valid while this lives): the
  // socket, and the upgrade link (-1: none) over which it passes back the packets of this
  // process's connections, whose IDs carry `epoch`; worker 0 first.
  struct Handover {
    int socket;
    int link;
    uint32_t epoch;
  };
  virtual std::vector<Handover> fds() const = 0;
  // A binary upgrade's new process reads the sockets now: stop reading them. This process's
  // connections go on, their packets passed back over the upgrade links, until they end.
  // Blocks until every loop took it.
  virtual void HandOver() = 0;
  // Closes every connection (QUIC: CONNECTION_CLOSE, so clients know at once) and the sockets.
  // Blocks until every loop did it; the loops must still run.
  virtual void Close() = 0;
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
  // Datagram transports (QUIC) take no accepted fds: the engine binds `url` here, one socket
  // per worker, instead of a stream Listener, or adopts the sockets `inherited` (may be null)
  // has for it (a binary upgrade's). Errors name the address.
  virtual bool datagram() const { return false; }
  virtual absl::StatusOr<std::unique_ptr<DatagramListener>> BindDatagram(const EndpointUrl&, int,
                                                                         InheritedSockets*) {
    return absl::UnimplementedError(std::string(name()) + " is not a datagram transport");
  }
};

}  // namespace alknet
