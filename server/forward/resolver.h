// Resolves host names off the event loops: a small fixed pool of threads runs getaddrinfo and
// posts results back to the asking loop. Numeric addresses never leave the caller's thread.
// Fair and bounded: each session has its own queue, served round-robin; a session and a key may
// have only so many resolutions pending, a key may hold at most half the threads, and every
// request is answered by its deadline (a stuck getaddrinfo cannot be cancelled: its late result
// is dropped).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/loop/event_loop.h"

namespace alknet {

struct ResolvedAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

using ResolveCallback = std::function<void(absl::StatusOr<std::vector<ResolvedAddress>>)>;
// The blocking lookup a pool thread runs (getaddrinfo by default; tests inject a slow one).
using ResolveFunction =
    std::function<absl::StatusOr<std::vector<ResolvedAddress>>(const std::string& host, uint16_t port)>;

// Who asks: the fairness and quota unit. session 0 has no per-session cap; an empty key has no
// per-key caps (the client role, whose lookups are its own).
struct ResolveOwner {
  uint64_t session = 0;
  std::string key;  // the session's key fingerprint
};

struct ResolverOptions {
  int threads = 2;
  size_t max_queued = 4096;               // all queued requests
  size_t max_pending_per_session = 16;    // queued + running, per session
  size_t max_pending_per_key = 64;        // queued + running, across a key's sessions
  int max_running_per_key = 0;            // threads one key may hold; 0: half the pool (>= 1)
  absl::Duration timeout = absl::Seconds(5);  // a request's deadline (the caller may ask less)
  ResolveFunction resolve;                // empty: getaddrinfo
};

class Resolver {
 public:
  explicit Resolver(ResolverOptions options);
  explicit Resolver(int threads = 2, size_t max_queued = 4096)
      : Resolver(ResolverOptions{.threads = threads, .max_queued = max_queued}) {}
  ~Resolver();

  // Resolves host:port for TCP; call on `loop`'s thread. `done` runs on `loop`, exactly once,
  // unless `cancelled` becomes true first. Unknown hosts are NotFound("unknown host"); a full
  // queue or quota is ResourceExhausted (the message names which, never the host); no answer
  // by min(options.timeout, timeout) is DeadlineExceeded("name resolution timed out").
  void Resolve(const std::string& host, uint16_t port, EventLoop& loop,
               std::shared_ptr<std::atomic<bool>> cancelled, ResolveCallback done,
               const ResolveOwner& owner = {}, absl::Duration timeout = absl::InfiniteDuration());

  // Numeric literal fast path, usable without a pool. nullopt if `host` is not a literal.
  static std::optional<ResolvedAddress> ParseNumeric(const std::string& host, uint16_t port);

 private:
  // Shared by the request's deadline timer and its delivery, both on the asking loop.
  struct Request {
    std::shared_ptr<std::atomic<bool>> cancelled;
    std::atomic<bool> answered{false};
    ResolveCallback done;
    EventLoop::TimerId timer = 0;
  };
  struct Job {
    std::string host;
    uint16_t port = 0;
    EventLoop* loop = nullptr;
    std::shared_ptr<Request> request;
    uint64_t session = 0;
    std::string key;
  };
  struct SessionQueue {
    std::deque<Job> jobs;
    size_t pending = 0;  // queued + running
    bool in_ring = false;
  };
  struct KeyCount {
    size_t pending = 0;
    int running = 0;
  };

  void WorkerMain();
  std::optional<Job> TakeNextLocked();
  void DropDeadLocked(SessionQueue& queue);
  void ReleaseLocked(uint64_t session, const std::string& key, bool was_running);
  static bool Dead(const Job& job);
  static void Answer(EventLoop& loop, const std::shared_ptr<Request>& request,
                     absl::StatusOr<std::vector<ResolvedAddress>> outcome);

  ResolverOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  absl::flat_hash_map<uint64_t, SessionQueue> sessions_;
  absl::flat_hash_map<std::string, KeyCount> keys_;
  std::deque<uint64_t> ring_;  // sessions with queued jobs, served in turn
  size_t queued_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace alknet
