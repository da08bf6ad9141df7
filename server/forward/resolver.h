// Resolves host names off the event loops: a small fixed pool of threads runs getaddrinfo and
// posts results back to the asking loop. Numeric addresses never leave the caller's thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/loop/event_loop.h"

namespace alknet {

struct ResolvedAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

using ResolveCallback = std::function<void(absl::StatusOr<std::vector<ResolvedAddress>>)>;

class Resolver {
 public:
  explicit Resolver(int threads = 2, size_t max_queued = 4096);
  ~Resolver();

  // Resolves host:port for TCP. `done` runs on `loop`. If `cancelled` becomes true before the
  // answer is delivered, `done` is not called. Unknown hosts are NotFound("unknown host").
  void Resolve(const std::string& host, uint16_t port, EventLoop& loop,
               std::shared_ptr<std::atomic<bool>> cancelled, ResolveCallback done);

  // Numeric literal fast path, usable without a pool. nullopt if `host` is not a literal.
  static std::optional<ResolvedAddress> ParseNumeric(const std::string& host, uint16_t port);

 private:
  struct Job {
    std::string host;
    uint16_t port;
    EventLoop* loop;
    std::shared_ptr<std::atomic<bool>> cancelled;
    ResolveCallback done;
  };
  void WorkerMain();

  size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace alknet
