// Non-blocking UDP sockets for QUIC: bind (a SO_REUSEPORT group steered by connection ID),
// connect (client), batched receive with the ECN bits, and GSO sends.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/common/net_address.h"
#include "server/common/unique_fd.h"

namespace alknet::quic {

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
};

// Binds a UDP socket to `address` ("*": every IPv4 address) with SO_REUSEPORT, so a group of
// sockets (one per worker) can share the port; a port of 0 picks one. Asks for GRO and for the
// ECN bits of received packets. Errors read "<label>: bind: ...".
absl::StatusOr<UniqueFd> BindUdp(const HostPort& address, std::string_view label);
// The local address of `fd`.
SockAddr LocalAddress(int fd);

// Steers the packets of `fd`'s SO_REUSEPORT group by the first byte of their destination
// connection ID modulo `group_size` (socket k of the group is the k-th bound): every packet of
// a connection reaches the worker that owns it, whatever the client's address. False where
// the kernel refuses the program (the caller then forwards misdelivered packets itself).
bool SteerByConnectionId(int fd, int group_size);

// A UDP socket connected to `remote` (client role), resolved and tried address by address.
absl::StatusOr<UniqueFd> ConnectUdp(const HostPort& remote, SockAddr* connected_to);

// One received datagram; `data` points into the caller's scratch buffer.
struct Datagram {
  const SockAddr* remote;
  uint8_t ecn;
  std::span<const uint8_t> data;
};

// Reads every queued datagram (recvmmsg, in batches of 64 KiB slots of `scratch`) and calls
// `handle` for each packet, a GRO run split into its packets; stops at EAGAIN or once
// `max_datagrams` packets were read. Returns how many were.
size_t ReceiveDatagrams(int fd, std::span<char> scratch, size_t max_datagrams,
                        const std::function<void(const Datagram&)>& handle);

enum class SendResult { kSent, kBlocked, kFailed };

// Sends `data` as packets of `segment` bytes (the last may be shorter) to `remote` (nullptr:
// the connected peer) with one sendmsg and UDP GSO where the kernel has it, else one sendmsg
// per packet. kBlocked: the socket buffer is full (nothing or only a prefix went out: `sent`
// says how many bytes did).
SendResult SendPackets(int fd, const SockAddr* remote, std::span<const uint8_t> data,
                       size_t segment, uint8_t ecn, size_t* sent);

}  // namespace alknet::quic
