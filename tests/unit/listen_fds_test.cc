// LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES parsing (sd_listen_fds semantics) and the matching of
// inherited sockets to configured listeners.
#include "server/common/listen_fds.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

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

// A quic:// listener's per-worker UDP sockets (binary upgrade) come back all together, in
// order; a TCP listener on the same address and port is neither taken by them nor takes them.
TEST(ListenFdsTest, DatagramSocketsAreTakenTogetherAndApartFromStreamOnes) {
  auto tcp = ListenTcp(HostPort{"127.0.0.1", 0}, "test");
  ASSERT_TRUE(tcp.ok()) << tcp.status();
  const uint16_t port = LocalOf(tcp->get()).port;
  std::vector<InheritedSockets::Socket> sockets;
  sockets.push_back({*std::move(tcp), "ssh", SOCK_STREAM});
  std::vector<int> udp_fds;
  for (int k = 0; k < 2; ++k) {
    UniqueFd udp(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(udp.valid());
    int one = 1;
    setsockopt(udp.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(udp.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
    udp_fds.push_back(udp.get());
    sockets.push_back({std::move(udp), "quic", SOCK_DGRAM});
  }
  InheritedSockets inherited(std::move(sockets));
  auto datagram = inherited.TakeAllDatagram(HostPort{"127.0.0.1", port}, "listen");
  ASSERT_TRUE(datagram.ok());
  ASSERT_EQ(datagram->size(), 2u);
  EXPECT_EQ((*datagram)[0].get(), udp_fds[0]);
  EXPECT_EQ((*datagram)[1].get(), udp_fds[1]);
  auto stream = inherited.Take(HostPort{"127.0.0.1", port}, "listen");
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE(stream->has_value());
  int type = 0;
  socklen_t len = sizeof(type);
  getsockopt((*stream)->get(), SOL_SOCKET, SO_TYPE, &type, &len);
  EXPECT_EQ(type, SOCK_STREAM);
  EXPECT_TRUE(inherited.empty());
  auto none = inherited.TakeAllDatagram(HostPort{"127.0.0.1", port}, "listen");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// A quic:// worker's upgrade link goes to whoever takes the UDP socket it was named after,
// with the epoch its name carries, and to nobody else; a mangled name is nobody's.
TEST(ListenFdsTest, AnUpgradeLinkIsTakenByTheSocketItIsNamedAfter) {
  std::vector<InheritedSockets::Socket> sockets;
  std::vector<int> fds;
  for (const std::string& name : {UpgradeLinkFdName(7, 0x0a0b0c0d), std::string("alknet-link-9-xyz"),
                                  std::string("alknet-link-11-0a0b0c0d0e")}) {
    int pair[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    close(pair[1]);
    fds.push_back(pair[0]);
    sockets.push_back({UniqueFd(pair[0]), name, SOCK_SEQPACKET});
  }
  InheritedSockets inherited(std::move(sockets));
  EXPECT_EQ(UpgradeLinkFdName(7, 0x0a0b0c0d), "alknet-link-7-0a0b0c0d");
  EXPECT_FALSE(inherited.TakeUpgradeLink(8).has_value());
  EXPECT_FALSE(inherited.TakeUpgradeLink(9).has_value());
  EXPECT_FALSE(inherited.TakeUpgradeLink(11).has_value());
  std::optional<InheritedSockets::UpgradeLink> link = inherited.TakeUpgradeLink(7);
  ASSERT_TRUE(link.has_value());
  EXPECT_EQ(link->fd.get(), fds[0]);
  EXPECT_EQ(link->epoch, 0x0a0b0c0du);
  EXPECT_FALSE(inherited.TakeUpgradeLink(7).has_value());
  EXPECT_EQ(inherited.size(), 2u);
}

}  // namespace
}  // namespace alknet
