// Issue 20, systemd Type=notify: the real agent, started with NOTIFY_SOCKET naming a datagram
// socket this test owns (as systemd does), says READY=1 with its pid once it serves,
// RELOADING=1 then READY=1 on SIGHUP, and STOPPING=1 on SIGTERM; an abstract @name works too.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/service_notify.h"
#include "server/common/unique_fd.h"
#include "tests/support/agent_process.h"

namespace alknet::testing {
namespace {

using ::testing::HasSubstr;

// A bound SOCK_DGRAM unix socket standing in for systemd's notify socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& name) : name_(name) {
    fd_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, name.data(), name.size());
    if (address.sun_path[0] == '@') address.sun_path[0] = '\0';
    const socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), length), 0) << strerror(errno);
  }
  // The next datagram, or "" after 30 s.
  std::string Next() {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 30000) != 1) return "";
    char buffer[4096];
    ssize_t n = ::recv(fd_.get(), buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  UniqueFd fd_;
};

// NOTIFY_SOCKET for the agents started in one test (the test binary's own environment, which
// the agent inherits).
class ScopedNotifyEnv {
 public:
  explicit ScopedNotifyEnv(const std::string& value) { setenv("NOTIFY_SOCKET", value.c_str(), 1); }
  ~ScopedNotifyEnv() { unsetenv("NOTIFY_SOCKET"); }
};

TEST(ServiceNotifyTest, TheAgentSaysReadyReloadingAndStoppingAsSystemdExpects) {
  TempDir dir;
  NotifySocket notify(dir.File("notify"));
  ScopedNotifyEnv env(notify.name());
  AgentProcess agent(dir);
  const std::string ready = notify.Next();
  EXPECT_THAT(ready, HasSubstr("READY=1"));
  EXPECT_THAT(ready, HasSubstr("MAINPID=" + std::to_string(agent.process().pid())));

  agent.process().Signal(SIGHUP);
  const std::string reloading = notify.Next();
  EXPECT_THAT(reloading, HasSubstr("RELOADING=1"));
  EXPECT_THAT(reloading, HasSubstr("MONOTONIC_USEC="));
  EXPECT_THAT(notify.Next(), HasSubstr("READY=1"));

  agent.process().Signal(SIGTERM);
  EXPECT_THAT(notify.Next(), HasSubstr("STOPPING=1"));
  EXPECT_EQ(agent.process().Wait(std::chrono::seconds(30)), 0) << agent.Log();
}

TEST(ServiceNotifyTest, AnAbstractNotifySocketWorks) {
  TempDir dir;
  NotifySocket notify("@alknet-notify-test-" + std::to_string(::getpid()));
  ScopedNotifyEnv env(notify.name());
  AgentProcess agent(dir);
  EXPECT_THAT(notify.Next(), HasSubstr("READY=1"));
}

TEST(ServiceNotifyTest, WithoutNotifySocketNothingIsSentAndABadOneIsAClearError) {
  EXPECT_TRUE(agent::ServiceNotifier("").Notify("READY=1").ok());
  absl::Status bad = agent::ServiceNotifier("relative/path").Notify("READY=1");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.message()), HasSubstr("NOTIFY_SOCKET"));
}

}  // namespace
}  // namespace alknet::testing
