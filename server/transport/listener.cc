// A bound, listening socket for one endpoint URL, accepting on the acceptor loop.
#include "server/transport/listener.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"

namespace alknet {

absl::StatusOr<std::unique_ptr<Listener>> Listener::Bind(const EndpointUrl& url,
                                                         ServerTransport& transport) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* results = nullptr;
  std::string port = absl::StrCat(url.address.port);
  const char* host = url.address.host == "*" ? nullptr : url.address.host.c_str();
  int rc = getaddrinfo(host, port.c_str(), &hints, &results);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen ", url.ToString(), ": cannot resolve host: ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(results, freeaddrinfo);
  absl::Status last = absl::UnavailableError(absl::StrCat("listen ", url.ToString(), ": no address"));
  for (addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      last = ErrnoStatus(absl::StrCat("listen ", url.ToString(), ": socket"), errno);
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last = ErrnoStatus(absl::StrCat("listen ", url.ToString(), ": bind"), errno);
      continue;
    }
    if (listen(fd.get(), 1024) != 0) {
      last = ErrnoStatus(absl::StrCat("listen ", url.ToString(), ": listen"), errno);
      continue;
    }
    SocketEndpoint local = LocalOf(fd.get());
    EndpointUrl bound = url;
    bound.address.port = local.port;
    if (host != nullptr) bound.address.host = local.ip;
    return std::unique_ptr<Listener>(new Listener(std::move(fd), std::move(bound), transport));
  }
  return last;
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
