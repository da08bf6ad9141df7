// LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES parsing (sd_listen_fds semantics) and the matching of
// inherited sockets to configured listeners.
#include "server/common/listen_fds.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/common/tcp_listen.h"

namespace alknet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ListenFdsTest, UnsetMeansNothingInherited) {
  auto spec = ParseListenFds(nullptr, nullptr, nullptr, 42);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->count, 0);
}

TEST(ListenFdsTest, CountAndNamesForThisProcess) {
  auto spec = ParseListenFds("42", "2", "ssh:ssh-tls", 42);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->count, 2);
  EXPECT_THAT(spec->names, ElementsAre("ssh", "ssh-tls"));
  auto unnamed = ParseListenFds("42", "1", nullptr, 42);
  ASSERT_TRUE(unnamed.ok());
  EXPECT_THAT(unnamed->names, ElementsAre("unknown"));
}

TEST(ListenFdsTest, AnotherProcessPidIsIgnoredAsSystemdDoes) {
  auto spec = ParseListenFds("41", "2", "a:b", 42);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->count, 0);
}

TEST(ListenFdsTest, BadValuesAreClearErrors) {
  for (const char* count : {"0", "-1", "two", "", "99999"}) {
    auto spec = ParseListenFds("42", count, nullptr, 42);
    ASSERT_FALSE(spec.ok()) << count;
    EXPECT_THAT(spec.status().message(), HasSubstr("LISTEN_FDS: expected a number of descriptors"));
  }
  auto no_pid = ParseListenFds(nullptr, "1", nullptr, 42);
  ASSERT_FALSE(no_pid.ok());
  EXPECT_THAT(no_pid.status().message(), HasSubstr("LISTEN_PID is not"));
  auto bad_pid = ParseListenFds("me", "1", nullptr, 42);
  ASSERT_FALSE(bad_pid.ok());
  EXPECT_THAT(bad_pid.status().message(), HasSubstr("LISTEN_PID: not a process id"));
  auto names = ParseListenFds("42", "2", "only-one", 42);
  ASSERT_FALSE(names.ok());
  EXPECT_THAT(names.status().message(), HasSubstr("LISTEN_FDNAMES: 1 names for LISTEN_FDS=2"));
}

TEST(ListenFdsTest, TakeMatchesFamilyAddressAndPort) {
  auto bound = ListenTcp(HostPort{"127.0.0.1", 0}, "test");
  ASSERT_TRUE(bound.ok()) << bound.status();
  const uint16_t port = LocalOf(bound->get()).port;
  std::vector<InheritedSockets::Socket> sockets;
  sockets.push_back({*std::move(bound), "ssh"});
  InheritedSockets inherited(std::move(sockets));
  // Another port, another address, another family: not this socket.
  for (const HostPort& other : {HostPort{"127.0.0.1", static_cast<uint16_t>(port == 1 ? 2 : 1)},
                                HostPort{"127.0.0.2", port}, HostPort{"::1", port}}) {
    auto taken = inherited.Take(other, "listen");
    ASSERT_TRUE(taken.ok());
    EXPECT_FALSE(taken->has_value()) << other.ToString();
  }
  EXPECT_THAT(inherited.DescribeRemaining(), HasSubstr("(name ssh) bound to 127.0.0.1:"));
  auto taken = inherited.Take(HostPort{"127.0.0.1", port}, "listen");
  ASSERT_TRUE(taken.ok());
  ASSERT_TRUE(taken->has_value());
  EXPECT_EQ(LocalOf((*taken)->get()).port, port);
  EXPECT_TRUE(inherited.empty());
}

TEST(ListenFdsTest, PortZeroMatchesAnyPortOnTheAddress) {
  auto bound = ListenTcp(HostPort{"127.0.0.1", 0}, "test");
  ASSERT_TRUE(bound.ok()) << bound.status();
  std::vector<InheritedSockets::Socket> sockets;
  sockets.push_back({*std::move(bound), "ssh"});
  InheritedSockets inherited(std::move(sockets));
  auto taken = inherited.Take(HostPort{"127.0.0.1", 0}, "listen");
  ASSERT_TRUE(taken.ok());
  EXPECT_TRUE(taken->has_value());
}

}  // namespace
}  // namespace alknet
