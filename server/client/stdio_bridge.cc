// StdioBridge: non-blocking reads and writes between stdin/stdout-style fds and a stream fd.
#include "server/client/stdio_bridge.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"

namespace alknet {
namespace {

void SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

}  // namespace

StdioBridge::StdioBridge(EventLoop& loop, int input, int output, int stream,
                         std::function<void(absl::Status)> done)
    : loop_(loop), input_watch_(this, input), output_watch_(this, output),
      stream_watch_(this, stream), done_(std::move(done)) {
  up_.from = input;
  up_.to = stream;
  down_.from = stream;
  down_.to = output;
}

StdioBridge::~StdioBridge() {
  for (Watcher* watch : {&input_watch_, &output_watch_, &stream_watch_}) {
    if (watch->interest != 0) loop_.Unwatch(watch->fd());
    watch->interest = 0;
  }
}

void StdioBridge::Start() {
  for (Watcher* watch : {&input_watch_, &output_watch_, &stream_watch_}) {
    SetNonBlocking(watch->fd());
    // epoll refuses regular files (EPERM): say so now rather than hang.
    if (absl::Status watched = loop_.Watch(watch->fd(), 0, watch); !watched.ok()) {
      Finish(absl::FailedPreconditionError(absl::StrCat(
          "fd ", watch->fd(), " cannot be polled (", watched.message(),
          "); stdin and stdout must be pipes, sockets or terminals")));
      return;
    }
    loop_.Unwatch(watch->fd());
  }
  up_.buffer = std::make_unique_for_overwrite<char[]>(kStdioBridgeChunk);
  down_.buffer = std::make_unique_for_overwrite<char[]>(kStdioBridgeChunk);
  Pump();
}

bool StdioBridge::Move(Direction& d, bool to_is_stream) {
  for (;;) {
    if (d.begin < d.end) {
      ssize_t n = ::write(d.to, d.buffer.get() + d.begin, d.end - d.begin);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return true;
        error_ = ErrnoStatus(to_is_stream ? "write to the stream" : "write to stdout", errno);
        return false;
      }
      d.begin += static_cast<size_t>(n);
      d.moved += static_cast<uint64_t>(n);
      if (d.begin < d.end) return true;  // the rest when writable
      d.begin = d.end = 0;
    }
    if (d.eof) {
      if (!d.ended) {
        d.ended = true;
        // Pass the EOF on: the stream's write side shuts, stdout closes.
        if (to_is_stream) {
          ::shutdown(d.to, SHUT_WR);
        } else {
          ::close(d.to);
        }
      }
      return true;
    }
    ssize_t n = ::read(d.from, d.buffer.get(), kStdioBridgeChunk);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      error_ = ErrnoStatus(to_is_stream ? "read stdin" : "read the stream", errno);
      return false;
    }
    if (n == 0) {
      d.eof = true;
      continue;
    }
    d.end = static_cast<size_t>(n);
  }
}

void StdioBridge::Pump() {
  if (finished_) return;
  if (!Move(up_, true) || !Move(down_, false)) {
    Finish(error_);
    return;
  }
  if (up_.ended && down_.ended) {
    Finish(absl::OkStatus());
    return;
  }
  UpdateInterest();
}

void StdioBridge::UpdateInterest() {
  auto want = [](const Direction& d, int fd) -> uint32_t {
    uint32_t events = 0;
    if (d.from == fd && !d.eof && d.begin == d.end) events |= EPOLLIN;
    if (d.to == fd && d.begin < d.end) events |= EPOLLOUT;
    return events;
  };
  for (Watcher* watch : {&input_watch_, &output_watch_, &stream_watch_}) {
    uint32_t wanted = want(up_, watch->fd()) | want(down_, watch->fd());
    // stdout after its close: never touch the number again.
    if (watch == &output_watch_ && down_.ended) wanted = 0;
    loop_.SetInterest(watch->fd(), watch->interest, wanted, watch);
  }
}

void StdioBridge::Finish(absl::Status status) {
  if (finished_) return;
  finished_ = true;
  for (Watcher* watch : {&input_watch_, &output_watch_, &stream_watch_}) {
    if (watch->interest != 0) loop_.Unwatch(watch->fd());
    watch->interest = 0;
  }
  if (done_) done_(std::move(status));
}

}  // namespace alknet
