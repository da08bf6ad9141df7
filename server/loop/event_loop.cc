// One epoll-driven event loop per thread: fd watches, timers, cross-thread tasks, deferred deletes.
#include "server/loop/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <ctime>

#include "server/common/errno_status.h"

namespace alknet {

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create() {
  UniqueFd epoll_fd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_fd.valid()) return ErrnoStatus("epoll_create1", errno);
  UniqueFd wake_fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd.valid()) return ErrnoStatus("eventfd", errno);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = wake_fd.get();
  if (epoll_ctl(epoll_fd.get(), EPOLL_CTL_ADD, wake_fd.get(), &event) != 0) {
    return ErrnoStatus("epoll_ctl(eventfd)", errno);
  }
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(epoll_fd), std::move(wake_fd)));
}

EventLoop::EventLoop(UniqueFd epoll_fd, UniqueFd wake_fd)
    : epoll_fd_(std::move(epoll_fd)), wake_fd_(std::move(wake_fd)),
      loop_thread_(std::this_thread::get_id()) {
  spare_timer_nodes_.reserve(kSpareTimerNodes);
}

EventLoop::~EventLoop() {
  RunDeferredDeletes();
}

absl::Status EventLoop::Watch(int fd, uint32_t events, FdHandler* handler) {
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
    return ErrnoStatus("epoll_ctl(ADD)", errno);
  }
  handlers_[fd] = handler;
  return absl::OkStatus();
}

absl::Status EventLoop::Modify(int fd, uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, fd, &event) != 0) {
    return ErrnoStatus("epoll_ctl(MOD)", errno);
  }
  return absl::OkStatus();
}

void EventLoop::Unwatch(int fd) {
  if (handlers_.erase(fd) > 0) epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::SetInterest(int fd, uint32_t& current, uint32_t wanted, FdHandler* handler) {
  if (wanted == current || fd < 0) return;
  absl::Status status;
  if (current == 0) {
    status = Watch(fd, wanted, handler);
  } else if (wanted == 0) {
    Unwatch(fd);
  } else {
    status = Modify(fd, wanted);
  }
  if (status.ok()) current = wanted;
}

EventLoop::TimerId EventLoop::AddTimer(absl::Duration after, std::function<void()> callback) {
  TimerId id = next_timer_id_++;
  Clock::time_point due = Clock::now() + absl::ToChronoNanoseconds(after);
  if (spare_timer_nodes_.empty()) {
    timer_queue_.emplace(due, id);
  } else {
    TimerQueue::node_type node = std::move(spare_timer_nodes_.back());
    spare_timer_nodes_.pop_back();
    node.key() = due;
    node.mapped() = id;
    timer_queue_.insert(std::move(node));
  }
  timers_.emplace(id, std::make_pair(due, std::move(callback)));
  return id;
}

void EventLoop::CancelTimer(TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  auto range = timer_queue_.equal_range(it->second.first);
  for (auto q = range.first; q != range.second; ++q) {
    if (q->second == id) {
      RecycleTimerNode(q);
      break;
    }
  }
  timers_.erase(it);
}

void EventLoop::RecycleTimerNode(TimerQueue::iterator it) {
  TimerQueue::node_type node = timer_queue_.extract(it);
  if (spare_timer_nodes_.size() < kSpareTimerNodes) spare_timer_nodes_.push_back(std::move(node));
}

void EventLoop::Post(std::function<void()> task) {
  {
    absl::MutexLock lock(&posted_mu_);
    posted_.push_back(std::move(task));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t ignored = write(wake_fd_.get(), &one, sizeof(one));
}

void EventLoop::Stop() {
  {
    absl::MutexLock lock(&posted_mu_);
    stop_requested_ = true;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t ignored = write(wake_fd_.get(), &one, sizeof(one));
}

int64_t EventLoop::NextTimeoutNs() const {
  if (timer_queue_.empty()) return -1;
  auto wait = timer_queue_.begin()->first - Clock::now();
  if (wait <= Clock::duration::zero()) return 0;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
}

namespace {
// Cleared when the kernel has no epoll_pwait2 (before 5.11): millisecond waits from then on.
std::atomic<bool> precise_wait{true};
}  // namespace

int EventLoop::Wait(epoll_event* events, int max_events, int64_t timeout_ns) {
  // epoll_pwait2 waits to the nanosecond: a timer due in 300 us (QUIC pacing) fires then, not a
  // millisecond later. epoll_wait's timeout is rounded up instead, so nothing fires early and
  // nothing spins on a sub-millisecond remainder either way.
  if (timeout_ns >= 0 && precise_wait.load(std::memory_order_relaxed)) {
    timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000), static_cast<long>(timeout_ns % 1'000'000'000)};
    int count = epoll_pwait2(epoll_fd_.get(), events, max_events, &ts, nullptr);
    if (count >= 0 || errno != ENOSYS) return count;
    precise_wait.store(false, std::memory_order_relaxed);
  }
  int timeout_ms = timeout_ns < 0 ? -1 : static_cast<int>((timeout_ns + 999'999) / 1'000'000);
  return epoll_wait(epoll_fd_.get(), events, max_events, timeout_ms);
}

void EventLoop::RunDueTimers() {
  Clock::time_point now = Clock::now();
  while (!timer_queue_.empty() && timer_queue_.begin()->first <= now) {
    TimerId id = timer_queue_.begin()->second;
    RecycleTimerNode(timer_queue_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    std::function<void()> callback = std::move(it->second.second);
    timers_.erase(it);
    callback();
  }
}

void EventLoop::RunPostedTasks() {
  std::vector<std::function<void()>> tasks;
  {
    absl::MutexLock lock(&posted_mu_);
    tasks.swap(posted_);
    if (stop_requested_) stopping_ = true;
  }
  for (auto& task : tasks) task();
}

void EventLoop::RunDeferredDeletes() {
  while (!deferred_deletes_.empty()) {
    std::vector<std::function<void()>> deletes;
    deletes.swap(deferred_deletes_);
    for (auto& run : deletes) run();
  }
}

bool EventLoop::Turn(int64_t timeout_ns) {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  int count = Wait(events, kMaxEvents, timeout_ns);
  if (count < 0 && errno != EINTR) return false;
  for (int i = 0; i < count; ++i) {
    int fd = events[i].data.fd;
    if (fd == wake_fd_.get()) {
      uint64_t value;
      [[maybe_unused]] ssize_t ignored = read(wake_fd_.get(), &value, sizeof(value));
      continue;
    }
    auto it = handlers_.find(fd);
    if (it == handlers_.end()) continue;  // unwatched earlier in this batch
    it->second->OnFdEvents(events[i].events);
  }
  RunDueTimers();
  RunPostedTasks();
  RunDeferredDeletes();
  return true;
}

void EventLoop::Run() {
  loop_thread_ = std::this_thread::get_id();
  while (!stopping_) {
    if (!Turn(NextTimeoutNs())) break;
  }
}

void EventLoop::RunOnce(absl::Duration max_wait) {
  loop_thread_ = std::this_thread::get_id();
  int64_t timeout = NextTimeoutNs();
  int64_t cap = absl::ToInt64Nanoseconds(max_wait);
  if (timeout < 0 || timeout > cap) timeout = cap;
  Turn(timeout);
}

std::span<char> EventLoop::Scratch() {
  if (!scratch_) scratch_ = std::make_unique_for_overwrite<char[]>(kScratchSize);
  return {scratch_.get(), kScratchSize};
}

}  // namespace alknet
