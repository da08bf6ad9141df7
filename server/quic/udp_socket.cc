// UDP socket set-up, recvmmsg batches (GRO), GSO sends and the reuseport steering program.
#include "server/quic/udp_socket.h"

#include <linux/filter.h>
#include <netdb.h>
#include <netinet/ip.h>
#include <netinet/udp.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace alknet::quic {
namespace {

// Socket buffers big enough for a fast link's burst (the kernel caps them at rmem_max/wmem_max).
constexpr int kSocketBuffer = 4 * 1024 * 1024;
// One receive slot: with UDP_GRO the kernel hands over a run of one flow's same-size packets
// as one buffer of up to 64 KiB (a sender's GSO batch arrives whole over loopback, and NAPI
// coalesces a NIC's), so a slot holds the largest such run; a bigger one arrives truncated and
// is dropped (QUIC recovers).
constexpr size_t kSlot = 64 * 1024;
constexpr size_t kBatch = 32;

// Cleared the first time the kernel rejects UDP_SEGMENT; from then on one sendmsg per packet.
std::atomic<bool> gso_usable{true};

void TuneSocket(int fd, int family) {
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof(kSocketBuffer));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBuffer, sizeof(kSocketBuffer));
  int one = 1;
  // Coalesced receives (kernel 5.0+); without it each packet is its own datagram, also fine.
  setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
  if (family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &one, sizeof(one));
  } else {
    setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &one, sizeof(one));
  }
}

absl::StatusOr<std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>> Resolve(const HostPort& address,
                                                                           bool passive,
                                                                           std::string_view label) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_family = AF_UNSPEC;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* results = nullptr;
  std::string port = absl::StrCat(address.port);
  const char* host = address.host == "*" ? nullptr : address.host.c_str();
  if (passive && host == nullptr) hints.ai_family = AF_INET;
  if (int rc = getaddrinfo(host, port.c_str(), &hints, &results); rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(label), ": cannot resolve host: ", gai_strerror(rc)));
  }
  return std::unique_ptr<addrinfo, decltype(&freeaddrinfo)>(results, freeaddrinfo);
}

// What a received message's control data says: the ECN bits and, for a GRO run, the size of
// each packet in it (0: one packet).
struct ReceivedControl {
  uint8_t ecn = 0;
  size_t segment = 0;
};

ReceivedControl ControlOf(msghdr& msg) {
  ReceivedControl out;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) ||
        (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS)) {
      unsigned char tos = 0;
      if (c->cmsg_len >= CMSG_LEN(sizeof(unsigned char))) std::memcpy(&tos, CMSG_DATA(c), 1);
      out.ecn = tos & IPTOS_ECN_MASK;
    } else if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
               c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int size = 0;
      std::memcpy(&size, CMSG_DATA(c), sizeof(size));
      if (size > 0) out.segment = static_cast<size_t>(size);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<UniqueFd> BindUdp(const HostPort& address, std::string_view label) {
  auto results = Resolve(address, /*passive=*/true, label);
  if (!results.ok()) return results.status();
  absl::Status last = absl::UnavailableError(absl::StrCat(Sv(label), ": no address"));
  for (addrinfo* ai = results->get(); ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      last = ErrnoStatus(absl::StrCat(Sv(label), ": socket"), errno);
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    TuneSocket(fd.get(), ai->ai_family);
    if (bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last = ErrnoStatus(absl::StrCat(Sv(label), ": bind"), errno);
      continue;
    }
    return fd;
  }
  return last;
}

SockAddr LocalAddress(int fd) {
  SockAddr addr;
  addr.len = sizeof(addr.storage);
  if (getsockname(fd, addr.get(), &addr.len) != 0) addr.len = 0;
  return addr;
}

bool SteerByConnectionId(int fd, int group_size) {
  if (group_size <= 1) return true;
  // A = first byte; long header (bit 0x80): A = byte 6 (first DCID byte), short: byte 1;
  // return A % group_size. A packet too short to load from ends the program with 0 (socket 0).
  std::array<sock_filter, 6> code{{
      {BPF_LD | BPF_B | BPF_ABS, 0, 0, 0},
      {BPF_JMP | BPF_JSET | BPF_K, 0, 2, 0x80},
      {BPF_LD | BPF_B | BPF_ABS, 0, 0, 6},
      {BPF_JMP | BPF_JA, 0, 0, 1},
      {BPF_LD | BPF_B | BPF_ABS, 0, 0, 1},
      {BPF_ALU | BPF_MOD | BPF_K, 0, 0, static_cast<uint32_t>(group_size)},
  }};
  std::array<sock_filter, 7> program{};
  std::copy(code.begin(), code.end(), program.begin());
  program[6] = {BPF_RET | BPF_A, 0, 0, 0};
  sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof(fprog)) == 0;
}

absl::StatusOr<UniqueFd> ConnectUdp(const HostPort& remote, SockAddr* connected_to) {
  auto results = Resolve(remote, /*passive=*/false, "quic");
  if (!results.ok()) return results.status();
  absl::Status last = absl::UnavailableError("quic: no address");
  for (addrinfo* ai = results->get(); ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      last = ErrnoStatus("quic: socket", errno);
      continue;
    }
    TuneSocket(fd.get(), ai->ai_family);
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last = ErrnoStatus("quic: connect", errno);
      continue;
    }
    std::memcpy(&connected_to->storage, ai->ai_addr, ai->ai_addrlen);
    connected_to->len = ai->ai_addrlen;
    return fd;
  }
  return last;
}

size_t ReceiveDatagrams(int fd, std::span<char> scratch, size_t max_datagrams,
                        const std::function<void(const Datagram&)>& handle) {
  size_t slots = std::min(kBatch, scratch.size() / kSlot);
  if (slots == 0) return 0;
  std::array<mmsghdr, kBatch> messages{};
  std::array<iovec, kBatch> iov{};
  std::array<SockAddr, kBatch> from{};
  alignas(cmsghdr) std::array<std::array<char, CMSG_SPACE(sizeof(int)) * 2>, kBatch> control{};
  size_t total = 0;
  while (total < max_datagrams) {
    for (size_t i = 0; i < slots; ++i) {
      iov[i] = {scratch.data() + i * kSlot, kSlot};
      msghdr& msg = messages[i].msg_hdr;
      msg = {};
      msg.msg_name = &from[i].storage;
      msg.msg_namelen = sizeof(from[i].storage);
      msg.msg_iov = &iov[i];
      msg.msg_iovlen = 1;
      msg.msg_control = control[i].data();
      msg.msg_controllen = control[i].size();
    }
    int n = recvmmsg(fd, messages.data(), static_cast<unsigned>(slots), MSG_DONTWAIT, nullptr);
    if (n <= 0) break;
    for (int i = 0; i < n; ++i) {
      msghdr& msg = messages[i].msg_hdr;
      if ((msg.msg_flags & MSG_TRUNC) != 0) continue;  // larger than a slot: dropped
      from[i].len = msg.msg_namelen;
      ReceivedControl control_data = ControlOf(msg);
      std::span<const uint8_t> run(reinterpret_cast<const uint8_t*>(iov[i].iov_base),
                                   messages[i].msg_len);
      size_t segment = control_data.segment != 0 ? control_data.segment : run.size();
      // A GRO run is back-to-back packets of `segment` bytes, the last possibly shorter.
      do {
        size_t length = std::min(segment, run.size());
        handle(Datagram{&from[i], control_data.ecn, run.first(length)});
        run = run.subspan(length);
        ++total;
      } while (!run.empty());
    }
    if (static_cast<size_t>(n) < slots) break;
  }
  return total;
}

SendResult SendPackets(int fd, const SockAddr* remote, std::span<const uint8_t> data,
                       size_t segment, uint8_t ecn, size_t* sent) {
  *sent = 0;
  int tos = ecn;
  while (*sent < data.size()) {
    size_t left = data.size() - *sent;
    bool gso = gso_usable.load(std::memory_order_relaxed) && left > segment;
    size_t length = gso ? left : std::min(left, segment);
    iovec iov{const_cast<uint8_t*>(data.data() + *sent), length};
    msghdr msg{};
    if (remote != nullptr) {
      msg.msg_name = const_cast<sockaddr*>(remote->get());
      msg.msg_namelen = remote->len;
    }
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(int))] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    size_t used = 0;
    int family = remote != nullptr ? remote->storage.ss_family : AF_INET;
    if (gso) {
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t size = static_cast<uint16_t>(segment);
      std::memcpy(CMSG_DATA(c), &size, sizeof(size));
      used += CMSG_SPACE(sizeof(uint16_t));
      c = CMSG_NXTHDR(&msg, c);
    }
    if (ecn != 0 && c != nullptr) {
      c->cmsg_level = family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
      c->cmsg_type = family == AF_INET6 ? IPV6_TCLASS : IP_TOS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &tos, sizeof(tos));
      used += CMSG_SPACE(sizeof(int));
    }
    msg.msg_controllen = used;
    if (used == 0) msg.msg_control = nullptr;
    ssize_t n = sendmsg(fd, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return SendResult::kBlocked;
      if (gso && (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT)) {
        gso_usable.store(false, std::memory_order_relaxed);  // no GSO here: one packet at a time
        continue;
      }
      // ECONNREFUSED (an ICMP for a connected socket) and the like: the packet is lost, QUIC
      // recovers or times out.
      *sent += length;
      return SendResult::kFailed;
    }
    *sent += length;
  }
  return SendResult::kSent;
}

}  // namespace alknet::quic
