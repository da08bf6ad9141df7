// EventLoop: fd readiness, timers (order, cancel), cross-thread posts, deferred deletes.
#include "server/loop/event_loop.h"

#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace alknet {
namespace {

class Recorder final : public FdHandler {
 public:
  explicit Recorder(EventLoop& loop) : loop_(loop) {}
  void OnFdEvents(uint32_t events) override {
    ++calls;
    char buffer[16];
    [[maybe_unused]] ssize_t n = read(fd, buffer, sizeof(buffer));
    loop_.Stop();
  }
  int fd = -1;
  int calls = 0;

 private:
  EventLoop& loop_;
};

TEST(EventLoopTest, DeliversReadinessToTheWatchingHandler) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
  Recorder recorder(**loop);
  recorder.fd = pair[0];
  ASSERT_TRUE((*loop)->Watch(pair[0], EPOLLIN, &recorder).ok());
  ASSERT_EQ(write(pair[1], "x", 1), 1);
  (*loop)->Run();
  EXPECT_EQ(recorder.calls, 1);
  (*loop)->Unwatch(pair[0]);
  close(pair[0]);
  close(pair[1]);
}

TEST(EventLoopTest, TimersFireInDueOrderAndCancelledOnesNever) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  std::vector<int> fired;
  (*loop)->AddTimer(absl::Milliseconds(30), [&] { fired.push_back(3); (*loop)->Stop(); });
  (*loop)->AddTimer(absl::Milliseconds(10), [&] { fired.push_back(1); });
  EventLoop::TimerId cancelled = (*loop)->AddTimer(absl::Milliseconds(20), [&] { fired.push_back(2); });
  (*loop)->CancelTimer(cancelled);
  (*loop)->CancelTimer(9999);  // unknown: no-op
  (*loop)->Run();
  EXPECT_EQ(fired, (std::vector<int>{1, 3}));
}

TEST(EventLoopTest, PostRunsTasksFromOtherThreadsInOrder) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  std::vector<int> order;
  std::thread poster([&] {
    for (int i = 0; i < 100; ++i) (*loop)->Post([&order, i] { order.push_back(i); });
    (*loop)->Post([&] { (*loop)->Stop(); });
  });
  (*loop)->Run();
  poster.join();
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(EventLoopTest, DeleteLaterDestroysAfterTheBatch) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  struct Flag {
    explicit Flag(bool* destroyed) : destroyed(destroyed) {}
    ~Flag() { *destroyed = true; }
    bool* destroyed;
  };
  bool destroyed = false;
  bool seen_alive_in_same_batch = false;
  (*loop)->Post([&] {
    (*loop)->DeleteLater(std::make_unique<Flag>(&destroyed));
    seen_alive_in_same_batch = !destroyed;
  });
  (*loop)->Post([&] { (*loop)->Stop(); });
  (*loop)->Run();
  EXPECT_TRUE(seen_alive_in_same_batch);
  EXPECT_TRUE(destroyed);
}

}  // namespace
}  // namespace alknet
