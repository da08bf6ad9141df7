// The link between an agent and the process that replaced it in a binary upgrade, one unix
// SOCK_SEQPACKET pair per worker: QUIC datagrams of connections the other process owns, with
// their peer address, and a hello that names the sender's connection-ID epoch.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "absl/status/statusor.h"
#include "server/common/unique_fd.h"
#include "server/quic/udp_socket.h"

namespace alknet::quic {

// What one message on the link says.
struct RelayMessage {
  enum class Kind { kHello, kPacket };
  Kind kind = Kind::kHello;
  uint32_t epoch = 0;                    // kHello: the sender's connection-ID epoch
  SockAddr remote;                       // kPacket: the datagram's source
  uint8_t ecn = 0;                       // kPacket: its ECN bits
  std::span<const uint8_t> packet;       // kPacket: the datagram, inside the decoded buffer
};

// A connected pair (close-on-exec, non-blocking) with send buffers for a burst of datagrams.
absl::StatusOr<std::array<UniqueFd, 2>> MakeRelayPair();

enum class RelaySend {
  kSent,
  kDropped,  // the other process is behind (its buffer is full): lost, as on the wire
  kGone,     // the other process closed its end
};
RelaySend SendRelayHello(int fd, uint32_t epoch);
RelaySend SendRelayPacket(int fd, const SockAddr& remote, uint8_t ecn, std::span<const uint8_t> packet);

// nullopt for anything malformed: unknown kind, truncated, an address of the wrong size or
// family, an empty packet.
std::optional<RelayMessage> DecodeRelayMessage(std::span<const uint8_t> message);

// Reads up to `max_messages` queued messages into `scratch` (one at a time, each at most
// scratch.size() bytes: longer ones are cut and then dropped as malformed) and calls `handle`
// for each well-formed one. False once the other end is closed.
bool ReceiveRelayed(int fd, std::span<uint8_t> scratch, size_t max_messages,
                    const std::function<void(const RelayMessage&)>& handle);

}  // namespace alknet::quic
