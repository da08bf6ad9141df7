// A bound, listening socket for one endpoint URL, accepting on the acceptor loop.
#pragma once

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "server/common/listen_fds.h"
#include "server/common/net_address.h"
#include "server/common/unique_fd.h"
#include "server/loop/accept_loop.h"
#include "server/loop/event_loop.h"
#include "server/transport/transport.h"

namespace alknet {

class Listener final {
 public:
  using AcceptCallback = std::function<void(UniqueFd fd, StreamInfo info, ServerTransport&)>;

  // Binds and listens (resolving the host once, at start). Port 0 picks a free port. With
  // `inherited` (socket activation, binary upgrade), a socket from it bound to the URL's
  // address is adopted instead of binding a new one.
  static absl::StatusOr<std::unique_ptr<Listener>> Bind(const EndpointUrl& url,
                                                        ServerTransport& transport,
                                                        InheritedSockets* inherited = nullptr);
  ~Listener();

  // `on_starved` (optional, on the loop's thread) follows AcceptLoop::starved(): true while
  // accepting is paused for lack of descriptors or memory, false once it accepts again.
  absl::Status Start(EventLoop& loop, AcceptCallback on_accept,
                     std::function<void(bool starved)> on_starved = {});
  void Close();

  // The bound address with the real port: "tcp://127.0.0.1:41234".
  const EndpointUrl& bound() const { return bound_; }
  // The listening socket (-1 after Close()), for handing it to a new binary.
  int fd() const { return fd_.get(); }
  bool adopted() const { return adopted_; }

 private:
  Listener(UniqueFd fd, EndpointUrl bound, ServerTransport& transport)
      : fd_(std::move(fd)), bound_(std::move(bound)), transport_(transport) {}

  UniqueFd fd_;
  EndpointUrl bound_;
  bool adopted_ = false;
  ServerTransport& transport_;
  AcceptCallback on_accept_;
  std::unique_ptr<AcceptLoop> accept_;
};

}  // namespace alknet
