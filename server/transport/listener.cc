// A bound, listening socket for one endpoint URL, accepting on the acceptor loop.
#include "server/transport/listener.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/tcp_listen.h"

namespace alknet {

absl::StatusOr<std::unique_ptr<Listener>> Listener::Bind(const EndpointUrl& url,
                                                         ServerTransport& transport,
                                                         InheritedSockets* inherited) {
  const std::string label = absl::StrCat("listen ", url.ToString());
  bool adopted = false;
  absl::StatusOr<UniqueFd> fd = UniqueFd();
  if (inherited != nullptr) {
    absl::StatusOr<std::optional<UniqueFd>> taken = inherited->Take(url.address, label);
    if (!taken.ok()) return taken.status();
    if (taken->has_value()) {
      fd = std::move(**taken);
      adopted = true;
    }
  }
  if (!adopted) fd = ListenTcp(url.address, label);
  if (!fd.ok()) return fd.status();
  SocketEndpoint local = LocalOf(fd->get());
  EndpointUrl bound = url;
  bound.address.port = local.port;
  if (url.address.host != "*") bound.address.host = local.ip;
  auto listener = std::unique_ptr<Listener>(new Listener(*std::move(fd), std::move(bound), transport));
  listener->adopted_ = adopted;
  return listener;
}

Listener::~Listener() { Close(); }

absl::Status Listener::Start(EventLoop& loop, AcceptCallback on_accept,
                             std::function<void(bool starved)> on_starved) {
  on_accept_ = std::move(on_accept);
  AcceptLoop::Options options;
  options.on_starved = std::move(on_starved);
  accept_ = std::make_unique<AcceptLoop>(
      loop, fd_.get(), std::move(options),
      [this](UniqueFd fd, const sockaddr_storage& peer, socklen_t len) {
        StreamInfo info;
        info.transport = std::string(transport_.name());
        info.peer = DescribeSockaddr(reinterpret_cast<const sockaddr*>(&peer), len);
        info.local = LocalOf(fd.get());
        on_accept_(std::move(fd), std::move(info), transport_);
      });
  return accept_->Start();
}

void Listener::Close() {
  if (accept_ != nullptr) accept_->Stop();
  fd_.reset();
}

}  // namespace alknet
