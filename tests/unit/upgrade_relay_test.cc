// The binary upgrade's QUIC relay: messages on the link round-trip, malformed ones are refused,
// a full link drops and a closed one says so; connection IDs carry the process's epoch.
#include "server/quic/upgrade_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "server/quic/quic_connection.h"

namespace alknet::quic {
namespace {

SockAddr V4(uint16_t port) {
  SockAddr address;
  auto* in = reinterpret_cast<sockaddr_in*>(&address.storage);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.len = sizeof(sockaddr_in);
  return address;
}

SockAddr V6(uint16_t port) {
  SockAddr address;
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  in6->sin6_addr = in6addr_loopback;
  address.len = sizeof(sockaddr_in6);
  return address;
}

TEST(UpgradeRelayTest, HellosAndPacketsCrossTheLinkIntact) {
  auto pair = MakeRelayPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  std::vector<uint8_t> packet(1452);
  for (size_t i = 0; i < packet.size(); ++i) packet[i] = static_cast<uint8_t>(i * 7);
  EXPECT_EQ(SendRelayHello((*pair)[0].get(), 0xdeadbeef), RelaySend::kSent);
  EXPECT_EQ(SendRelayPacket((*pair)[0].get(), V4(4433), 2, packet), RelaySend::kSent);
  EXPECT_EQ(SendRelayPacket((*pair)[0].get(), V6(5544), 3, {packet.data(), 1}), RelaySend::kSent);

  // Each message is checked inside the handler: its packet points into the reused scratch.
  std::vector<uint8_t> scratch(65536);
  std::vector<std::string> seen;
  EXPECT_TRUE(ReceiveRelayed((*pair)[1].get(), scratch, 100, [&](const RelayMessage& m) {
    if (m.kind == RelayMessage::Kind::kHello) {
      seen.push_back("hello " + std::to_string(m.epoch));
      return;
    }
    const auto* in = reinterpret_cast<const sockaddr_in*>(&m.remote.storage);
    bool same = std::memcmp(m.packet.data(), packet.data(), m.packet.size()) == 0;
    seen.push_back("packet family " + std::to_string(m.remote.storage.ss_family) + " port " +
                   std::to_string(ntohs(in->sin_port)) + " ecn " + std::to_string(m.ecn) + " bytes " +
                   std::to_string(m.packet.size()) + (same ? " same" : " differ"));
  }));
  EXPECT_EQ(seen, (std::vector<std::string>{
                      "hello " + std::to_string(0xdeadbeefu),
                      "packet family " + std::to_string(AF_INET) + " port 4433 ecn 2 bytes 1452 same",
                      "packet family " + std::to_string(AF_INET6) + " port 5544 ecn 3 bytes 1 same"}));
}

TEST(UpgradeRelayTest, MalformedMessagesAreRefused) {
  std::vector<uint8_t> good = {'P', 0, sizeof(sockaddr_in)};
  SockAddr v4 = V4(1);
  good.insert(good.end(), reinterpret_cast<uint8_t*>(&v4.storage),
              reinterpret_cast<uint8_t*>(&v4.storage) + sizeof(sockaddr_in));
  good.push_back(0x40);
  ASSERT_TRUE(DecodeRelayMessage(good).has_value());

  auto refused = [](std::vector<uint8_t> bytes) { return !DecodeRelayMessage(bytes).has_value(); };
  EXPECT_TRUE(refused({}));
  EXPECT_TRUE(refused({'H', 1, 2, 3}));        // a short hello
  EXPECT_TRUE(refused({'H', 1, 2, 3, 4, 5}));  // a long one
  EXPECT_TRUE(refused({'X', 1, 2, 3, 4}));     // unknown kind
  EXPECT_TRUE(refused({'P', 0}));              // truncated header
  std::vector<uint8_t> no_packet(good.begin(), good.end() - 1);
  EXPECT_TRUE(refused(no_packet));
  std::vector<uint8_t> long_address = good;
  long_address[2] = 200;  // more than any sockaddr: never copied past the storage
  EXPECT_TRUE(refused(long_address));
  std::vector<uint8_t> wrong_family = good;
  const sa_family_t v6 = AF_INET6;  // the bytes are unaligned: copied, not assigned
  std::memcpy(wrong_family.data() + 3 + offsetof(sockaddr_in, sin_family), &v6, sizeof(v6));
  EXPECT_TRUE(refused(wrong_family));
  std::vector<uint8_t> truncated_v6 = good;
  truncated_v6[2] = sizeof(sockaddr_in6);  // says v6, carries a v4 address and one byte
  EXPECT_TRUE(refused(truncated_v6));
}

TEST(UpgradeRelayTest, AFullLinkDropsAndAClosedOneIsGone) {
  auto pair = MakeRelayPair();
  ASSERT_TRUE(pair.ok());
  std::vector<uint8_t> packet(1452, 1);
  RelaySend last = RelaySend::kSent;
  int sent = 0;
  while (last == RelaySend::kSent && sent < 100000) {
    last = SendRelayPacket((*pair)[0].get(), V4(1), 0, packet);
    if (last == RelaySend::kSent) ++sent;
  }
  EXPECT_EQ(last, RelaySend::kDropped);  // bounded: nobody read
  EXPECT_GT(sent, 100);
  (*pair)[1].reset();
  EXPECT_EQ(SendRelayPacket((*pair)[0].get(), V4(1), 0, packet), RelaySend::kGone);

  auto pair2 = MakeRelayPair();
  ASSERT_TRUE(pair2.ok());
  (*pair2)[0].reset();
  std::vector<uint8_t> scratch(65536);
  int messages = 0;
  EXPECT_FALSE(ReceiveRelayed((*pair2)[1].get(), scratch, 100, [&](const RelayMessage&) { ++messages; }));
  EXPECT_EQ(messages, 0);
}

TEST(UpgradeRelayTest, ConnectionIdsCarryWorkerAndEpoch) {
  for (uint8_t workers = 1; workers <= 4; ++workers) {
    for (uint8_t k = 0; k < workers; ++k) {
      for (int i = 0; i < 50; ++i) {
        ngtcp2_cid cid;
        MakeRoutedCid({k, workers, 0xa1b2c3d4}, &cid);
        ASSERT_EQ(cid.datalen, QuicConnection::kCidLength);
        EXPECT_EQ(cid.data[0] % workers, k);
        EXPECT_EQ(CidEpoch({cid.data, cid.datalen}), 0xa1b2c3d4u);
      }
    }
  }
  uint8_t short_cid[8] = {};
  EXPECT_FALSE(CidEpoch(short_cid).has_value());  // not one of ours
}

}  // namespace
}  // namespace alknet::quic
