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
                                                         ServerTransport& transport) {
  absl::StatusOr<UniqueFd> fd = ListenTcp(url.address, absl::StrCat("listen ", url.ToString()));
  if (!fd.ok()) return fd.status();
  SocketEndpoint local = LocalOf(fd->get());
  EndpointUrl bound = url;
  bound.address.port = local.port;
  if (url.address.host != "*") bound.address.host = local.ip;
  return std::unique_ptr<Listener>(new Listener(*std::move(fd), std::move(bound), transport));
}

Listener::~Listener() { Close(); }

absl::Status Listener::Start(EventLoop& loop, AcceptCallback on_accept) {
  loop_ = &loop;
  on_accept_ = std::move(on_accept);
  return loop.Watch(fd_.get(), EPOLLIN, this);
}

void Listener::Close() {
  if (loop_ != nullptr && fd_.valid()) loop_->Unwatch(fd_.get());
  fd_.reset();
}

void Listener::OnFdEvents(uint32_t events) {
  // Accept a bounded batch per wake-up so one busy listener cannot starve the others.
  for (int i = 0; i < 64 && fd_.valid(); ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    UniqueFd fd(accept4(fd_.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                        SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop watching briefly instead of spinning on a readable listener.
        loop_->Unwatch(fd_.get());
        loop_->AddTimer(absl::Milliseconds(100), [this] {
          if (fd_.valid()) (void)loop_->Watch(fd_.get(), EPOLLIN, this);
        });
      }
      return;  // EAGAIN or a transient error (ECONNABORTED): wait for the next readiness
    }
    StreamInfo info;
    info.transport = std::string(transport_.name());
    info.peer = DescribeSockaddr(reinterpret_cast<sockaddr*>(&peer), len);
    info.local = LocalOf(fd.get());
    on_accept_(std::move(fd), std::move(info), transport_);
  }
}

}  // namespace alknet
