// Upgrade relay messages: 'H' + epoch (4 bytes, big-endian), or 'P' + ecn + address length +
// the address + the datagram; sent with one sendmsg each, read one recv each.
#include "server/quic/upgrade_relay.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "server/common/big_endian.h"
#include "server/common/errno_status.h"

namespace alknet::quic {
namespace {

constexpr uint8_t kHello = 'H';
constexpr uint8_t kPacket = 'P';
constexpr size_t kPacketHeader = 3;  // kind, ecn, address length
// Queued datagrams the old process has not read yet; beyond it they are dropped (kDropped).
constexpr int kRelayBuffer = 2 * 1024 * 1024;

RelaySend SendParts(int fd, std::span<const uint8_t> header, std::span<const uint8_t> body) {
  iovec parts[2] = {{const_cast<uint8_t*>(header.data()), header.size()},
                    {const_cast<uint8_t*>(body.data()), body.size()}};
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = body.empty() ? 1 : 2;
  while (true) {
    if (sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return RelaySend::kSent;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EMSGSIZE) {
      return RelaySend::kDropped;
    }
    return RelaySend::kGone;  // EPIPE, ECONNREFUSED, ECONNRESET: the other process left
  }
}

}  // namespace

absl::StatusOr<std::array<UniqueFd, 2>> MakeRelayPair() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) != 0) {
    return ErrnoStatus("quic: upgrade relay socketpair", errno);
  }
  std::array<UniqueFd, 2> pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
  for (const UniqueFd& end : pair) {
    setsockopt(end.get(), SOL_SOCKET, SO_SNDBUF, &kRelayBuffer, sizeof(kRelayBuffer));
  }
  return pair;
}

RelaySend SendRelayHello(int fd, uint32_t epoch) {
  uint8_t message[5] = {kHello};
  StoreBigEndian32(epoch, message + 1);
  return SendParts(fd, message, {});
}

RelaySend SendRelayPacket(int fd, const SockAddr& remote, uint8_t ecn, std::span<const uint8_t> packet) {
  uint8_t header[kPacketHeader + sizeof(sockaddr_in6)];
  size_t address_length = std::min<size_t>(remote.len, sizeof(sockaddr_in6));
  header[0] = kPacket;
  header[1] = ecn;
  header[2] = static_cast<uint8_t>(address_length);
  std::memcpy(header + kPacketHeader, &remote.storage, address_length);
  return SendParts(fd, {header, kPacketHeader + address_length}, packet);
}

std::optional<RelayMessage> DecodeRelayMessage(std::span<const uint8_t> message) {
  RelayMessage decoded;
  if (message.size() == 5 && message[0] == kHello) {
    decoded.kind = RelayMessage::Kind::kHello;
    decoded.epoch = LoadBigEndian32(message.data() + 1);
    return decoded;
  }
  if (message.size() < kPacketHeader || message[0] != kPacket) return std::nullopt;
  size_t address_length = message[2];
  if (address_length != sizeof(sockaddr_in) && address_length != sizeof(sockaddr_in6)) return std::nullopt;
  if (message.size() <= kPacketHeader + address_length) return std::nullopt;  // no packet
  std::memcpy(&decoded.remote.storage, message.data() + kPacketHeader, address_length);
  decoded.remote.len = static_cast<socklen_t>(address_length);
  sa_family_t family = decoded.remote.storage.ss_family;
  if (family != (address_length == sizeof(sockaddr_in) ? AF_INET : AF_INET6)) return std::nullopt;
  decoded.kind = RelayMessage::Kind::kPacket;
  decoded.ecn = message[1] & 0x03;
  decoded.packet = message.subspan(kPacketHeader + address_length);
  return decoded;
}

bool ReceiveRelayed(int fd, std::span<uint8_t> scratch, size_t max_messages,
                    const std::function<void(const RelayMessage&)>& handle) {
  for (size_t i = 0; i < max_messages; ++i) {
    ssize_t n = recv(fd, scratch.data(), scratch.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    if (n == 0) return false;  // SOCK_SEQPACKET: the other end closed
    if (static_cast<size_t>(n) > scratch.size()) continue;  // cut: dropped
    if (std::optional<RelayMessage> message = DecodeRelayMessage(scratch.first(static_cast<size_t>(n)))) {
      handle(*message);
    }
  }
  return true;
}

}  // namespace alknet::quic
