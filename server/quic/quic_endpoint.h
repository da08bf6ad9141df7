// The server's QUIC endpoint on one worker loop: one UDP socket of the listener's SO_REUSEPORT
// group, the connections this worker owns (found by connection ID), Retry address validation,
// stateless resets, and the hand-over of each SSH stream to the worker's SSH layer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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
  // Counters: "handshake", "handshake_failed", "retry", "stateless_reset", "migration".
  std::function<void(std::string_view event)> count;
  // A connection that completed its handshake ended, with its last statistics.
  std::function<void(const QuicStats& stats)> ended;
};

class QuicEndpoint final : public FdHandler, public PacketSink {
 public:
  QuicEndpoint(EventLoop& loop, UniqueFd socket, EndpointOptions options, EndpointHooks hooks,
               Logger& logger);
  ~QuicEndpoint() override;

  // On the loop: starts reading the socket.
  void Start();
  // On the loop: new connections are turned away; running ones go on (binary upgrade, drain).
  void StopAccepting() { accepting_ = false; }
  // Another process reads the socket now (binary upgrade): no more reads here; the socket
  // still sends what this endpoint's connections write.
  void StopReading();
  // On the loop: closes every connection (CONNECTION_CLOSE) and the socket.
  void Close();

  // A datagram from `remote` (the socket's own, or forwarded by another worker's endpoint).
  // Public for the fuzzer, which feeds it garbage.
  void OnDatagram(const SockAddr& remote, uint8_t ecn, std::span<const uint8_t> data);

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

  void Accept(const SockAddr& remote, uint8_t ecn, std::span<const uint8_t> data);
  void SendRetry(const ngtcp2_pkt_hd& hd, const SockAddr& remote);
  void SendStatelessReset(std::span<const uint8_t> dcid, const SockAddr& remote, size_t received);
  void SendVersionNegotiation(const ngtcp2_version_cid& vc, const SockAddr& remote);
  void SendRaw(std::span<const uint8_t> packet, const SockAddr& remote);
  void Remove(QuicConnection* conn);
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
  // Stateless resets sent this second (at most kResetsPerSecond: never an amplifier).
  int64_t reset_second_ = 0;
  int resets_this_second_ = 0;
};

}  // namespace alknet::quic
