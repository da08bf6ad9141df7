// Relays one duplex stream fd to a pair of one-way fds (stdin -> stream, stream -> stdout): what
// `alknet-agent proxy` runs between ssh's ProxyCommand pipes and a transport's stream. Bounded:
// one chunk in flight per direction; half-closes pass through (input EOF shuts the stream's write
// side, stream EOF closes the output).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "server/loop/event_loop.h"

namespace alknet {

inline constexpr size_t kStdioBridgeChunk = 64 * 1024;

class StdioBridge {
 public:
  // `done` runs once on the loop: OK when both directions ended, or the first I/O error. The
  // bridge owns none of the fds; `output` is closed (by number) when the stream's data has ended.
  StdioBridge(EventLoop& loop, int input, int output, int stream,
              std::function<void(absl::Status)> done);
  ~StdioBridge();  // unwatches; never calls `done`

  // Watches the fds. An fd epoll cannot watch (a regular file) is an error through `done`.
  void Start();

  uint64_t bytes_to_stream() const { return up_.moved; }
  uint64_t bytes_from_stream() const { return down_.moved; }

 private:
  // One direction: from -> buffer -> to.
  struct Direction {
    int from = -1;
    int to = -1;
    std::unique_ptr<char[]> buffer;
    size_t begin = 0;
    size_t end = 0;
    bool eof = false;   // `from` ended
    bool ended = false; // EOF passed on to `to`
    uint64_t moved = 0;
  };
  class Watcher final : public FdHandler {
   public:
    Watcher(StdioBridge* owner, int fd) : owner_(owner), fd_(fd) {}
    void OnFdEvents(uint32_t) override { owner_->Pump(); }
    int fd() const { return fd_; }
    uint32_t interest = 0;

   private:
    StdioBridge* owner_;
    int fd_;
  };

  void Pump();
  // Moves what it can; false on an I/O error (set in error_).
  bool Move(Direction& direction, bool to_is_stream);
  void UpdateInterest();
  void Finish(absl::Status status);

  EventLoop& loop_;
  Direction up_;    // input -> stream
  Direction down_;  // stream -> output
  Watcher input_watch_;
  Watcher output_watch_;
  Watcher stream_watch_;
  std::function<void(absl::Status)> done_;
  absl::Status error_;
  bool finished_ = false;
};

}  // namespace alknet
