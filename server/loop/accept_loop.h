// Accepts connections on a listening socket for its owner: bounded batches per wake-up, and a
// pause instead of a spin while the process is out of descriptors or memory.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/common/unique_fd.h"
#include "server/loop/event_loop.h"

namespace alknet {

// Every listener of the agent (SSH listeners, the client's SOCKS5 and -L listeners, -R listeners
// of server sessions, the metrics port) accepts through this class.
//
// The listening socket is level-triggered in epoll. accept4() failing with EMFILE, ENFILE,
// ENOBUFS or ENOMEM leaves the connection in the backlog, so the socket stays readable and a
// plain "return and wait for the next event" would spin at 100 % CPU. Instead the socket leaves
// epoll for `resource_pause` and is watched again afterwards (the kernel keeps queueing
// connections in the backlog meanwhile). Other errors (EAGAIN, ECONNABORTED, EPERM, ...) end the
// batch; readiness brings us back if anything is left.
//
// "Starved" is the listener's health as /readyz sees it: set by such a failure, cleared only by
// an accept4() that gets a connection or finds the backlog empty (EAGAIN). The resume timer
// itself does not clear it: on resume the loop tries once at once, so a listener still short
// of descriptors stays starved without flapping between pauses.
class AcceptLoop final : public FdHandler {
 public:
  // The accepted socket (non-blocking, close-on-exec) and the peer address accept4 reported.
  using OnAccept = std::function<void(UniqueFd fd, const sockaddr_storage& peer, socklen_t peer_len)>;
  // accept4(listen_fd, peer, len, SOCK_NONBLOCK | SOCK_CLOEXEC) unless a test injects another.
  using AcceptFn = std::function<int(int listen_fd, sockaddr* peer, socklen_t* len)>;

  struct Options {
    int batch = 64;  // connections accepted per wake-up, so one listener cannot starve the loop
    absl::Duration resource_pause = absl::Milliseconds(100);
    bool tcp_nodelay = false;            // set TCP_NODELAY on each accepted socket
    std::function<void()> after_batch;   // runs once after each wake-up that accepted something
    AcceptFn accept;                     // empty: accept4
    // Runs on each change of starved() (true: out of descriptors or memory; false: accepting
    // again). Not run by Stop().
    std::function<void(bool starved)> on_starved;
    // On EMFILE/ENFILE, before pausing: frees a descriptor the owner keeps in reserve and
    // returns true, and accept4 is tried once more (the metrics port answers /readyz this way
    // while the process is out of descriptors). Empty or false: pause.
    std::function<bool()> release_reserve;
  };

  // `listen_fd` stays owned by the caller and must outlive Stop().
  AcceptLoop(EventLoop& loop, int listen_fd, Options options, OnAccept on_accept);
  ~AcceptLoop() override;
  AcceptLoop(const AcceptLoop&) = delete;
  AcceptLoop& operator=(const AcceptLoop&) = delete;

  absl::Status Start();
  // Unwatches the socket and cancels a pending resume. Safe from inside `on_accept` or
  // `after_batch` (the object itself must then be deleted later, not from the callback).
  void Stop();

  bool paused() const { return resume_timer_ != 0; }
  // Out of descriptors or memory since the last accept attempt (see above).
  bool starved() const { return starved_; }
  // How often accepting was paused for lack of descriptors or memory.
  uint64_t pauses() const { return pauses_; }

  void OnFdEvents(uint32_t events) override;

 private:
  void Pause();
  void SetStarved(bool starved);

  EventLoop& loop_;
  int fd_;
  Options options_;
  OnAccept on_accept_;
  bool watching_ = false;
  bool stopped_ = false;
  EventLoop::TimerId resume_timer_ = 0;
  uint64_t pauses_ = 0;
  bool starved_ = false;
};

}  // namespace alknet
