// The server's QUIC endpoint on one worker loop: one UDP socket of the listener's SO_REUSEPORT
// group, the connections this worker owns (found by connection ID), Retry address validation,
// stateless resets, the hand-over of each SSH stream to the worker's SSH layer, and the links
// to the processes before and after it in a binary upgrade.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "server/common/log.h"
#include "server/common/unique_fd.h"
#include "server/loop/event_loop.h"
#include "server/quic/quic_connection.h"
#include "server/transport/transport.h"

namespace alknet::quic {

enum class RetryMode { kAuto, kAlways, kNever };

struct EndpointOptions {
  gnutls_certificate_credentials_t credentials = nullptr;  // shared; outlives the endpoint
  // 32 bytes shared by every worker's endpoint: Retry tokens and stateless reset tokens.
  std::span<const uint8_t> secret;
  int worker_index = 0;
  int worker_count = 1;
  // Bytes 1-4 of every connection ID this endpoint issues: random per listener, so the
  // processes of a binary upgrade tell each other's connections apart.
  uint32_t epoch = 0;
  QuicSettings settings;
  RetryMode retry = RetryMode::kAuto;
  // kAuto: Retry once this worker has this many handshakes in progress.
  int retry_threshold = 16;
  std::string listen_url;  // "quic://127.0.0.1:4433", for log lines
};

// What the endpoint asks of the engine; every hook runs on the endpoint's loop.
struct EndpointHooks {
  // A new connection from a validated (or unvalidated, below the Retry threshold) source:
  // penalties, rate limits, max_sessions and a max_startups slot, held until SSH
  // authentication. Null refuses it (the engine counted and logged why).
  std::function<std::shared_ptr<void>(const StreamInfo& info)> admit;
  // The SSH stream of an admitted connection, with its admission.
  std::function<void(ConnectedStream stream, std::shared_ptr<void> admission)> deliver;
  // A packet whose connection belongs to worker `owner` (no reuseport steering here).
  std::function<void(int owner, std::string packet, SockAddr remote, uint8_t ecn)> forward;
  // Counters: "handshake", "handshake_failed", "retry", "stateless_reset", "migration",
  // "upgrade_relayed" (and the connection's loss signals).
  std::function<void(std::string_view event)> count;
  // A connection that completed its handshake ended, with its last statistics.
  std::function<void(const QuicStats& stats)> ended;
};

// The upgrade relay (upgrade_relay.h) of this endpoint's worker: packets of connections of the
// process that replaced this one (`successor`, this end of the pair whose other end the
// listener passes on at an upgrade), or of the process this one replaced (`predecessor`,
// inherited, with the epoch of its connection IDs). Either may be empty.
struct UpgradeLinks {
  UniqueFd successor;
  UniqueFd predecessor;
  std::optional<uint32_t> predecessor_epoch;
};

class QuicEndpoint final : public FdHandler, public PacketSink {
 public:
  QuicEndpoint(EventLoop& loop, UniqueFd socket, EndpointOptions options, EndpointHooks hooks,
               Logger& logger, UpgradeLinks links = {});
  ~QuicEndpoint() override;

  // On the loop: starts reading the socket and the upgrade links (and says hello to the
  // predecessor, so that it passes on the packets of this process's connections it reads).
  void Start();
  // On the loop: new connections are turned away; running ones go on (binary upgrade, drain).
  void StopAccepting() { accepting_ = false; }
  // Another process reads the socket now (binary upgrade): no more reads here; the socket
  // still sends what this endpoint's connections write, and their packets come over the
  // successor link.
  void StopReading();
  // On the loop: closes every connection (CONNECTION_CLOSE) and the socket.
  void Close();

  // Where a datagram came from: a packet passed on by an upgrade link never goes back to it.
  enum class Source { kSocket, kSuccessor, kPredecessor };
  // A datagram from `remote` (the socket's own, forwarded by another worker's endpoint, or
  // passed on by an upgrade link). Public for the fuzzer, which feeds it garbage.
  void OnDatagram(const SockAddr& remote, uint8_t ecn, std::span<const uint8_t> data,
                  Source source = Source::kSocket);

  int fd() const { return socket_.get(); }
  size_t connection_count() const { return connections_.size(); }
  size_t handshakes_in_progress() const { return handshaking_; }

  void OnFdEvents(uint32_t events) override;
  SendResult Send(const ngtcp2_addr& remote, std::span<const uint8_t> data, size_t segment, uint8_t ecn,
                  size_t* sent) override;
  void NotifyWritable(QuicConnection* conn) override;

 private:
  struct Entry {
    std::unique_ptr<QuicConnection> conn;
    std::shared_ptr<void> admission;  // until the stream is delivered
    std::vector<std::string> cids;    // routing keys owned by this connection
    StreamInfo info;
    bool handshaking = true;
  };

  // One upgrade link: its socket (read when readable), and the epoch of the process at its
  // other end (the predecessor's from the link's name, the successor's from its hello).
  struct Link final : public FdHandler {
    Link(QuicEndpoint& owner, Source side) : endpoint(owner), source(side) {}
    void OnFdEvents(uint32_t) override { endpoint.ReadLink(source); }
    QuicEndpoint& endpoint;
    const Source source;
    UniqueFd fd;
    uint32_t events = 0;
    std::optional<uint32_t> epoch;
  };
  Link& LinkFor(Source source) { return source == Source::kSuccessor ? successor_ : predecessor_; }

  // Reads a bounded batch with `read` (which calls OnDatagram per packet), then flushes every
  // connection the batch reached once.
  void ReadBatch(const std::function<void()>& read);
  void ReadLink(Source source);
  // Reads what waits on a link (hellos, and datagrams to OnDatagram); false once it closed.
  bool DrainLink(Source source);
  // A successor that started a moment ago: its hello may still wait on the link, behind the
  // packet being decided on.
  void LearnSuccessorEpoch();
  // The connection ID names the process before or after this one in an upgrade.
  bool IssuedByTheOtherProcess(std::span<const uint8_t> dcid);
  void CloseLink(Source source);
  // A packet of a connection this process does not have: passed to the upgrade link whose
  // process issued its connection ID, if any (true: taken, or dropped on a full link).
  bool PassOn(std::span<const uint8_t> dcid, const SockAddr& remote, uint8_t ecn,
              std::span<const uint8_t> data, Source source);
  void Accept(const SockAddr& remote, uint8_t ecn, std::span<const uint8_t> data);
  void SendRetry(const ngtcp2_pkt_hd& hd, const SockAddr& remote);
  void SendStatelessReset(std::span<const uint8_t> dcid, const SockAddr& remote, size_t received);
  void SendVersionNegotiation(const ngtcp2_version_cid& vc, const SockAddr& remote);
  void SendRaw(std::span<const uint8_t> packet, const SockAddr& remote);
  void Remove(QuicConnection* conn);
  CidRoute Route() const {
    return {static_cast<uint8_t>(options_.worker_index), static_cast<uint8_t>(options_.worker_count),
            options_.epoch};
  }
  void Count(std::string_view event) {
    if (hooks_.count) hooks_.count(event);
  }

  EventLoop& loop_;
  UniqueFd socket_;
  EndpointOptions options_;
  EndpointHooks hooks_;
  Logger& logger_;
  SockAddr local_;
  uint32_t socket_events_ = 0;
  bool accepting_ = true;
  uint32_t read_interest_ = EPOLLIN;  // 0 after StopReading
  size_t handshaking_ = 0;
  absl::flat_hash_map<QuicConnection*, Entry> connections_;
  absl::flat_hash_map<std::string, QuicConnection*> by_cid_;
  absl::flat_hash_set<QuicConnection*> waiting_writable_;
  std::vector<std::string> new_cids_;  // announced while a connection is being made
  // While a batch of datagrams is read: the connections they reached, flushed once at its end.
  bool batching_ = false;
  std::vector<QuicConnection*> touched_;
  Link successor_{*this, Source::kSuccessor};
  Link predecessor_{*this, Source::kPredecessor};
  std::unique_ptr<uint8_t[]> link_buffer_;  // one link message, made on first use
  // Stateless resets sent this second (at most kResetsPerSecond: never an amplifier).
  int64_t reset_second_ = 0;
  int resets_this_second_ = 0;
};

}  // namespace alknet::quic
