// Accepts connections on a listening socket: bounded batches, a pause on EMFILE and friends.
#include "server/loop/accept_loop.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cerrno>

namespace alknet {

AcceptLoop::AcceptLoop(EventLoop& loop, int listen_fd, Options options, OnAccept on_accept)
    : loop_(loop), fd_(listen_fd), options_(std::move(options)), on_accept_(std::move(on_accept)) {}

AcceptLoop::~AcceptLoop() { Stop(); }

absl::Status AcceptLoop::Start() {
  if (stopped_ || watching_) return absl::FailedPreconditionError("accept loop already started or stopped");
  absl::Status status = loop_.Watch(fd_, EPOLLIN, this);
  watching_ = status.ok();
  return status;
}

void AcceptLoop::Stop() {
  stopped_ = true;
  if (resume_timer_ != 0) {
    loop_.CancelTimer(resume_timer_);
    resume_timer_ = 0;
  }
  if (watching_) {
    loop_.Unwatch(fd_);
    watching_ = false;
  }
}

void AcceptLoop::SetStarved(bool starved) {
  if (starved_ == starved) return;
  starved_ = starved;
  if (options_.on_starved) options_.on_starved(starved);
}

void AcceptLoop::Pause() {
  ++pauses_;
  SetStarved(true);
  if (watching_) {
    loop_.Unwatch(fd_);
    watching_ = false;
  }
  resume_timer_ = loop_.AddTimer(options_.resource_pause, [this] {
    resume_timer_ = 0;
    if (stopped_) return;
    watching_ = loop_.Watch(fd_, EPOLLIN, this).ok();
    // Try at once: a connection or an empty backlog ends the starved state, EMFILE pauses again.
    if (watching_) OnFdEvents(EPOLLIN);
  });
}

void AcceptLoop::OnFdEvents(uint32_t) {
  bool accepted_any = false;
  bool released_reserve = false;
  for (int i = 0; i < options_.batch && !stopped_ && watching_; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    int raw = options_.accept
                  ? options_.accept(fd_, reinterpret_cast<sockaddr*>(&peer), &len)
                  : accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (raw < 0) {
      int error = errno;
      if (error == EINTR) continue;
      if ((error == EMFILE || error == ENFILE) && !released_reserve && options_.release_reserve &&
          options_.release_reserve()) {
        released_reserve = true;
        --i;
        continue;
      }
      if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
        Pause();
      } else if (error == EAGAIN || error == EWOULDBLOCK) {
        SetStarved(false);  // the backlog is empty: nothing waits for a descriptor
      }
      break;  // EAGAIN, or a connection that died in the backlog (ECONNABORTED, EPERM, ...)
    }
    SetStarved(false);
    UniqueFd fd(raw);
    if (options_.tcp_nodelay) {
      int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    accepted_any = true;
    on_accept_(std::move(fd), peer, len);
  }
  if (accepted_any && options_.after_batch) options_.after_batch();
}

}  // namespace alknet
