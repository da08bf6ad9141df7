// One epoll-driven event loop per thread: fd watches, timers, cross-thread tasks, deferred deletes.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/unique_fd.h"

namespace alknet {

// Receives readiness for one watched fd. Handlers may be unwatched (and deleted with
// EventLoop::DeleteLater) from inside any callback; no event reaches them afterwards.
class FdHandler {
 public:
  virtual ~FdHandler() = default;
  virtual void OnFdEvents(uint32_t epoll_events) = 0;
};

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using TimerId = uint64_t;

  static absl::StatusOr<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();

  // fd registration (loop thread only). `events` is a mask of EPOLLIN / EPOLLOUT.
  absl::Status Watch(int fd, uint32_t events, FdHandler* handler);
  absl::Status Modify(int fd, uint32_t events);
  void Unwatch(int fd);
  // Moves `fd` from the mask `current` to `wanted`: watch, modify, or unwatch at 0 (an fd with
  // nothing to wait for is not in epoll at all: no HUP spin). `current` follows on success.
  void SetInterest(int fd, uint32_t& current, uint32_t wanted, FdHandler* handler);

  // One-shot timers (loop thread only). Cancelling an unknown or fired timer is a no-op.
  TimerId AddTimer(absl::Duration after, std::function<void()> callback);
  void CancelTimer(TimerId id);

  // Thread-safe: runs `task` on the loop thread soon, in posting order.
  void Post(std::function<void()> task);

  // Destroys `object` after the current batch of events, when no callback can still use it.
  template <typename T>
  void DeleteLater(std::unique_ptr<T> object) {
    std::shared_ptr<T> holder(std::move(object));
    deferred_deletes_.push_back([holder]() mutable { holder.reset(); });
  }

  // Runs until Stop(); Stop is thread-safe.
  void Run();
  // One pass of Run() on the calling thread: waits at most `max_wait` for fd events (less when
  // a timer is due sooner), dispatches them, then due timers, posted tasks, deferred deletes.
  // For tests and fuzzers that step a loop.
  void RunOnce(absl::Duration max_wait);
  void Stop();
  bool IsLoopThread() const { return std::this_thread::get_id() == loop_thread_; }

  // The loop thread's I/O scratch buffer (kScratchSize bytes, allocated on first use): code on
  // this loop reads into it and writes out of it within one callback; it holds nothing between
  // callbacks. Loop thread only.
  static constexpr size_t kScratchSize = 256 * 1024;
  std::span<char> Scratch();

 private:
  EventLoop(UniqueFd epoll_fd, UniqueFd wake_fd);
  // Nanoseconds until the next timer is due (0: due now), -1 without timers.
  int64_t NextTimeoutNs() const;
  // epoll_pwait2 with `timeout_ns` (-1: forever), or epoll_wait rounded up where it is missing.
  int Wait(epoll_event* events, int max_events, int64_t timeout_ns);
  // One batch: Wait(timeout_ns), events, timers, posted tasks, deferred deletes. False
  // when epoll_wait failed.
  bool Turn(int64_t timeout_ns);
  void RunDueTimers();
  void RunPostedTasks();
  void RunDeferredDeletes();

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  std::thread::id loop_thread_;
  bool stopping_ = false;

  // fd -> handler; the epoll data carries the fd, so an unwatched fd's stale events are dropped.
  absl::flat_hash_map<int, FdHandler*> handlers_;

  using TimerQueue = std::multimap<Clock::time_point, TimerId>;
  // Takes `it` out of the queue, keeping its node for the next AddTimer.
  void RecycleTimerNode(TimerQueue::iterator it);

  TimerQueue timer_queue_;
  // Queue nodes of fired and cancelled timers, reused by AddTimer: a timer re-armed again and
  // again (a throttled relay, a heartbeat) allocates no queue node in steady state. Bounded.
  static constexpr size_t kSpareTimerNodes = 256;
  std::vector<TimerQueue::node_type> spare_timer_nodes_;
  absl::flat_hash_map<TimerId, std::pair<Clock::time_point, std::function<void()>>> timers_;
  TimerId next_timer_id_ = 1;

  absl::Mutex posted_mu_;
  std::vector<std::function<void()>> posted_ ABSL_GUARDED_BY(posted_mu_);
  bool stop_requested_ ABSL_GUARDED_BY(posted_mu_) = false;

  std::vector<std::function<void()>> deferred_deletes_;
  std::unique_ptr<char[]> scratch_;
};

}  // namespace alknet
