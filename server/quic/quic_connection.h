// One QUIC connection of either role carrying one SSH session (ngtcp2 + GnuTLS): packets in,
// paced packets out, and the first bidirectional stream bridged to a socketpair whose other
// end the SSH layer gets, exactly as the TLS transport does (ADR 0006, ADR 0018).
#pragma once

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/unique_fd.h"
#include "server/loop/event_loop.h"
#include "server/quic/quic_tls.h"
#include "server/quic/stream_buffer.h"
#include "server/quic/udp_socket.h"

namespace alknet::quic {

// Flow control and timeouts of one connection (quic.* in the configuration).
struct QuicSettings {
  // The stream's receive window grows up to this, and at most this much sent data waits for
  // its acknowledgement: a connection holds about twice this in buffers at worst.
  uint64_t stream_window = 16 * 1024 * 1024;
  absl::Duration idle_timeout = absl::Seconds(60);
  absl::Duration handshake_timeout = absl::Seconds(10);
  // 0: datagrams of 1200 bytes, raised by path MTU discovery up to 1452. Otherwise the path is
  // known to carry UDP payloads of this size (loopback, a jumbo-frame LAN): packets are sent up
  // to it (or the peer's max_udp_payload_size, if smaller) without discovery.
  size_t max_udp_payload = 0;
  // Congestion control: BBR (default) paces to the measured bottleneck and does not read random
  // loss as congestion; CUBIC shrinks its window by 30% on every loss episode.
  enum class Congestion { kBbr, kCubic };
  Congestion congestion = Congestion::kBbr;
};

// Counters a connection reports when it ends (metrics, logs).
struct QuicStats {
  uint64_t rtt_us = 0;             // smoothed RTT
  uint64_t cwnd = 0;               // congestion window, bytes
  uint64_t congestion_events = 0;  // recovery episodes: packets declared lost, or ECN-CE
  uint64_t probe_timeouts = 0;     // PTOs: nothing acknowledged in time, probes sent
  uint64_t migrations = 0;         // validated new peer addresses (NAT rebinding, migration)
};

class QuicConnection;

// ngtcp2's clock: nanoseconds of CLOCK_MONOTONIC (the event loop's steady_clock).
ngtcp2_tstamp QuicNow();

// Where a server's connection IDs lead: the worker that owns the connection (the first byte,
// modulo `worker_count`, is `worker_index`: the reuseport program steers by it) and the
// process (bytes 1-4 are its epoch, random per listener: during a binary upgrade the old and
// the new process pass each other the packets of connections they do not own).
struct CidRoute {
  uint8_t worker_index = 0;
  uint8_t worker_count = 1;
  uint32_t epoch = 0;
};
// A random connection ID of kCidLength bytes routed as `route` says.
void MakeRoutedCid(const CidRoute& route, ngtcp2_cid* cid);
// The epoch of a connection ID made by MakeRoutedCid; nullopt for another length.
std::optional<uint32_t> CidEpoch(std::span<const uint8_t> cid);

// Where a connection's packets go: the server endpoint's shared socket or the client's own.
class PacketSink {
 public:
  virtual ~PacketSink() = default;
  virtual SendResult Send(const ngtcp2_addr& remote, std::span<const uint8_t> data, size_t segment,
                          uint8_t ecn, size_t* sent) = 0;
  // After Send said kBlocked: call conn->OnWritable() once the socket takes packets again.
  virtual void NotifyWritable(QuicConnection* conn) = 0;
};

// The server's part of a new connection, from the endpoint.
struct ServerAccept {
  gnutls_certificate_credentials_t credentials;
  std::span<const uint8_t> reset_secret;  // stateless reset tokens
  CidRoute route;                          // of every connection ID it issues
  const ngtcp2_pkt_hd* initial;           // the client's first Initial
  const ngtcp2_cid* original_dcid;        // after a validated Retry: the DCID before it
};

class QuicConnection final : public FdHandler {
 public:
  static constexpr size_t kCidLength = 18;

  struct Events {
    // The SSH stream is open: the server saw the client open it, the client opened it after
    // the handshake. `plain` is the socketpair end the SSH layer reads and writes.
    std::function<void(QuicConnection& self, UniqueFd plain)> on_stream;
    // The connection is over; `why` is OK for a clean close. The owner deletes the connection
    // (DeleteLater); nothing is called afterwards.
    std::function<void(QuicConnection& self, const absl::Status& why)> on_closed;
    // Server: a connection ID now routes to this connection, or no longer does.
    std::function<void(QuicConnection& self, const ngtcp2_cid& cid)> on_cid_added;
    std::function<void(QuicConnection& self, const ngtcp2_cid& cid)> on_cid_removed;
    // Something worth counting happened (alknet_quic_events_total's names): "migration" (the
    // peer moved to a new address and the path was validated: NAT rebinding, migration), and
    // the loss signals ngtcp2 exposes (it counts no lost packets): "congestion" (a new recovery
    // episode: loss or ECN-CE) and "probe_timeout".
    std::function<void(QuicConnection& self, std::string_view event)> on_event;
  };

  static absl::StatusOr<std::unique_ptr<QuicConnection>> Accept(EventLoop& loop, PacketSink& sink,
                                                                const ServerAccept& accept,
                                                                const SockAddr& local,
                                                                const SockAddr& remote,
                                                                const QuicSettings& settings,
                                                                Events events);
  // `verify` outlives the connection.
  static absl::StatusOr<std::unique_ptr<QuicConnection>> Connect(EventLoop& loop, PacketSink& sink,
                                                                 const ClientVerify& verify,
                                                                 const SockAddr& local,
                                                                 const SockAddr& remote,
                                                                 const QuicSettings& settings,
                                                                 Events events);
  ~QuicConnection() override;

  // A datagram for this connection from `remote` (to `local`). With `flush` false the caller
  // calls Flush() once after a batch of datagrams (one answer for many packets).
  void OnPacket(const SockAddr& local, const SockAddr& remote, uint8_t ecn,
                std::span<const uint8_t> packet, bool flush = true);
  // Writes what is due (client: call once after Connect to send the first Initial).
  void Flush();
  // The sink takes packets again.
  void OnWritable();
  // Ends the connection now with CONNECTION_CLOSE (NO_ERROR); on_closed runs.
  void Close();

  bool handshake_completed() const { return handshake_completed_; }
  // Datagrams handed to the sink so far (a server that answered nothing to a first Initial
  // got garbage that merely looked like one).
  uint64_t datagrams_sent() const { return datagrams_sent_; }
  bool closed() const { return closed_; }
  QuicStats stats() const;
  // The peer's certificate fingerprint (client), the negotiated cipher.
  std::string peer_fingerprint() const;

  void OnFdEvents(uint32_t events) override;  // the plain (SSH) side

 private:
  QuicConnection(EventLoop& loop, PacketSink& sink, const QuicSettings& settings, Events events);
  static ngtcp2_callbacks Callbacks(bool server);
  static ngtcp2_conn* GetConn(ngtcp2_crypto_conn_ref* ref);

  // ngtcp2 callbacks (user_data is the connection).
  static int OnRecvStreamData(ngtcp2_conn*, uint32_t flags, int64_t stream_id, uint64_t offset,
                              const uint8_t* data, size_t datalen, void* user_data, void*);
  static int OnAckedStreamData(ngtcp2_conn*, int64_t stream_id, uint64_t offset, uint64_t datalen,
                               void* user_data, void*);
  static int OnStreamOpen(ngtcp2_conn*, int64_t stream_id, void* user_data);
  static int OnStreamClose(ngtcp2_conn*, uint32_t flags, int64_t stream_id, uint64_t app_error_code,
                           void* user_data, void*);
  static int OnStreamReset(ngtcp2_conn*, int64_t stream_id, uint64_t final_size,
                           uint64_t app_error_code, void* user_data, void*);
  static int OnExtendMaxStreamData(ngtcp2_conn*, int64_t stream_id, uint64_t max_data,
                                   void* user_data, void*);
  static int OnHandshakeCompleted(ngtcp2_conn*, void* user_data);
  static void Rand(uint8_t* dest, size_t destlen, const ngtcp2_rand_ctx*);
  static int GetNewConnectionId(ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen,
                                void* user_data);
  static int RemoveConnectionId(ngtcp2_conn*, const ngtcp2_cid* cid, void* user_data);
  static int OnPathValidation(ngtcp2_conn*, uint32_t flags, const ngtcp2_path* path,
                              ngtcp2_path_validation_result res, void* user_data);

  void MakeCid(ngtcp2_cid* cid) const { MakeRoutedCid(route_, cid); }
  absl::Status OpenPlainSide(int64_t stream_id);
  void AfterRead(bool flush);
  void ReadPlain();
  void DrainToPlain();
  // Counts new congestion episodes and probe timeouts from ngtcp2's statistics.
  void NoteLossSignals();
  void UpdatePlainInterest();
  bool SendBatch(const ngtcp2_addr& remote, size_t length, size_t segment, uint8_t ecn);
  void ArmTimer();
  void OnTimer();
  // Ends with `rv` (an ngtcp2 code): CONNECTION_CLOSE where one is due, then Finish.
  void FailWith(int rv, std::string_view what);
  void SendClose(const ngtcp2_connection_close_error& ccerr);
  void Finish(absl::Status why);

  EventLoop& loop_;
  PacketSink& sink_;
  QuicSettings settings_;
  Events events_;
  bool server_ = false;
  ngtcp2_conn* conn_ = nullptr;
  SessionRef ref_;
  Credentials client_credentials_;  // client only
  Session session_;
  std::array<uint8_t, 32> reset_secret_{};
  CidRoute route_;  // server: of the connection IDs it issues
  SockAddr local_;
  SockAddr remote_;

  bool handshake_completed_ = false;
  bool closed_ = false;
  bool closing_ = false;  // inside Close(): its last Flush() must not close again
  uint64_t migrations_ = 0;
  uint64_t datagrams_sent_ = 0;
  // Loss signals (NoteLossSignals): what ngtcp2 reported when last looked at, and the counts.
  ngtcp2_tstamp recovery_started_ = UINT64_MAX;
  size_t pto_count_ = 0;
  uint64_t congestion_events_ = 0;
  uint64_t probe_timeouts_ = 0;

  // The SSH stream.
  int64_t stream_id_ = -1;
  std::vector<int64_t> extra_streams_;  // opened by the peer beyond the first: reset after read
  UniqueFd plain_;
  uint32_t plain_events_ = 0;
  StreamBuffer out_;         // read from SSH: [acked, sent) in flight, [sent, end) unsent
  uint64_t out_sent_ = 0;
  bool out_eof_ = false;     // SSH side closed its writing: FIN after out_
  bool fin_sent_ = false;
  bool stream_blocked_ = false;  // flow control: wait for MAX_STREAM_DATA
  StreamBuffer in_;          // arrived, not yet written to SSH
  bool peer_fin_ = false;    // the peer's FIN came; shut SSH's reading once in_ is written
  bool plain_shut_ = false;
  bool stream_closed_ = false;  // ngtcp2 closed the stream both ways

  // Packets out.
  static constexpr size_t kBatchBytes = 64 * 1024;
  std::unique_ptr<uint8_t[]> batch_;
  bool send_blocked_ = false;
  size_t pending_begin_ = 0;  // unsent part of batch_ while blocked
  size_t pending_end_ = 0;
  size_t pending_segment_ = 0;
  uint8_t pending_ecn_ = 0;
  SockAddr pending_remote_;
  EventLoop::TimerId timer_ = 0;
};

}  // namespace alknet::quic
