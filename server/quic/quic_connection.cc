// ngtcp2 connection driving: callbacks, the read path, the paced write path with GSO batches,
// the expiry timer, and the socketpair bridge of the SSH stream.
#include "server/quic/quic_connection.h"

#include <gnutls/crypto.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/big_endian.h"
#include "server/common/strings.h"
#include "server/common/errno_status.h"
#include "server/quic/quic_status.h"

namespace alknet::quic {
namespace {

ngtcp2_tstamp Now() { return QuicNow(); }

ngtcp2_duration ToNgtcp2(absl::Duration d) {
  return static_cast<ngtcp2_duration>(absl::ToInt64Nanoseconds(d));
}

// The first windows; ngtcp2 grows the stream's up to QuicSettings::stream_window as the SSH
// side takes data.
constexpr uint64_t kInitialStreamWindow = 256 * 1024;
constexpr uint64_t kInitialConnectionWindow = 1024 * 1024;
// How long we may hold an ACK (the max_ack_delay transport parameter). The peer adds it to every
// probe timeout, so RFC 9000's 25 ms default makes each tail loss on a short path cost tens of
// milliseconds; 2 ms keeps PTO near the RTT (5% loss, bench/README: quic 4.8-5.2 -> 9.5-12.6
// MiB/s) for at most one extra ACK per 2 ms of sparse traffic.
constexpr ngtcp2_duration kMaxAckDelay = 2 * NGTCP2_MILLISECONDS;
// The application error with which extra streams are refused and a failed bridge resets.
constexpr uint64_t kStreamRefused = 0x101;

// Windows grow up to the configured stream window; the handshake is bounded; packets are as
// large as a known path allows; the configured congestion control.
ngtcp2_settings NgtcpSettings(const QuicSettings& settings) {
  ngtcp2_settings s;
  ngtcp2_settings_default(&s);
  s.initial_ts = Now();
  s.max_stream_window = settings.stream_window;
  s.max_window = settings.stream_window + settings.stream_window / 2;
  s.handshake_timeout = ToNgtcp2(settings.handshake_timeout);
  s.cc_algo = settings.congestion == QuicSettings::Congestion::kCubic ? NGTCP2_CC_ALGO_CUBIC
                                                                      : NGTCP2_CC_ALGO_BBR;
  if (settings.max_udp_payload != 0) {
    s.max_tx_udp_payload_size = settings.max_udp_payload;
    s.no_tx_udp_payload_size_shaping = 1;
    s.no_pmtud = 1;
  }
  return s;
}

// What this endpoint offers: first windows, `peer_bidi_streams` streams the peer may open, no
// unidirectional ones, the idle timeout.
ngtcp2_transport_params TransportParams(const QuicSettings& settings, uint64_t peer_bidi_streams) {
  ngtcp2_transport_params p;
  ngtcp2_transport_params_default(&p);
  p.initial_max_stream_data_bidi_local = kInitialStreamWindow;
  p.initial_max_stream_data_bidi_remote = kInitialStreamWindow;
  p.initial_max_data = kInitialConnectionWindow;
  p.initial_max_streams_bidi = peer_bidi_streams;
  p.initial_max_streams_uni = 0;
  p.max_idle_timeout = ToNgtcp2(settings.idle_timeout);
  p.active_connection_id_limit = 4;
  p.max_ack_delay = kMaxAckDelay;
  return p;
}

ngtcp2_path PathOf(const SockAddr& local, const SockAddr& remote) {
  ngtcp2_path path{};
  path.local.addr = const_cast<sockaddr*>(local.get());
  path.local.addrlen = local.len;
  path.remote.addr = const_cast<sockaddr*>(remote.get());
  path.remote.addrlen = remote.len;
  return path;
}

void CopyAddr(const ngtcp2_addr& from, SockAddr* to) {
  to->len = std::min<socklen_t>(from.addrlen, sizeof(to->storage));
  std::memcpy(&to->storage, from.addr, to->len);
}

bool SameAddr(const ngtcp2_addr& a, const SockAddr& b) {
  return a.addrlen == b.len && std::memcmp(a.addr, b.get(), b.len) == 0;
}

}  // namespace

QuicConnection::QuicConnection(EventLoop& loop, PacketSink& sink, const QuicSettings& settings,
                               Events events)
    : loop_(loop), sink_(sink), settings_(settings), events_(std::move(events)),
      batch_(std::make_unique<uint8_t[]>(kBatchBytes)) {
  ref_.conn_ref.get_conn = &QuicConnection::GetConn;
  ref_.conn_ref.user_data = this;
}

QuicConnection::~QuicConnection() {
  if (timer_ != 0) loop_.CancelTimer(timer_);
  if (plain_.valid() && plain_events_ != 0) loop_.Unwatch(plain_.get());
  if (conn_ != nullptr) ngtcp2_conn_del(conn_);
}

ngtcp2_conn* QuicConnection::GetConn(ngtcp2_crypto_conn_ref* ref) {
  return static_cast<QuicConnection*>(ref->user_data)->conn_;
}

ngtcp2_callbacks QuicConnection::Callbacks(bool server) {
  ngtcp2_callbacks cb{};
  if (server) {
    cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  } else {
    cb.client_initial = ngtcp2_crypto_client_initial_cb;
    cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
  }
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.handshake_completed = &QuicConnection::OnHandshakeCompleted;
  cb.recv_stream_data = &QuicConnection::OnRecvStreamData;
  cb.acked_stream_data_offset = &QuicConnection::OnAckedStreamData;
  cb.stream_open = &QuicConnection::OnStreamOpen;
  cb.stream_close = &QuicConnection::OnStreamClose;
  cb.stream_reset = &QuicConnection::OnStreamReset;
  cb.stream_stop_sending = [](ngtcp2_conn* conn, int64_t stream_id, uint64_t code, void* user_data,
                              void* stream_data) {
    return OnStreamReset(conn, stream_id, 0, code, user_data, stream_data);
  };
  cb.extend_max_stream_data = &QuicConnection::OnExtendMaxStreamData;
  cb.rand = &QuicConnection::Rand;
  cb.get_new_connection_id = &QuicConnection::GetNewConnectionId;
  cb.remove_connection_id = &QuicConnection::RemoveConnectionId;
  cb.path_validation = &QuicConnection::OnPathValidation;
  return cb;
}

void QuicConnection::Rand(uint8_t* dest, size_t destlen, const ngtcp2_rand_ctx*) {
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, destlen);
}

ngtcp2_tstamp QuicNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * NGTCP2_SECONDS + static_cast<uint64_t>(ts.tv_nsec);
}

void MakeRoutedCid(const CidRoute& route, ngtcp2_cid* cid) {
  uint8_t data[QuicConnection::kCidLength];
  gnutls_rnd(GNUTLS_RND_NONCE, data, sizeof(data));
  uint8_t count = std::max<uint8_t>(route.worker_count, 1);
  data[0] = static_cast<uint8_t>((data[0] / count) * count + route.worker_index);
  if (data[0] % count != route.worker_index % count) data[0] = route.worker_index;  // wrapped past 255
  StoreBigEndian32(route.epoch, data + 1);
  ngtcp2_cid_init(cid, data, sizeof(data));
}

std::optional<uint32_t> CidEpoch(std::span<const uint8_t> cid) {
  if (cid.size() != QuicConnection::kCidLength) return std::nullopt;
  return LoadBigEndian32(cid.data() + 1);
}

absl::StatusOr<std::unique_ptr<QuicConnection>> QuicConnection::Accept(
    EventLoop& loop, PacketSink& sink, const ServerAccept& accept, const SockAddr& local,
    const SockAddr& remote, const QuicSettings& settings, Events events) {
  std::unique_ptr<QuicConnection> c(new QuicConnection(loop, sink, settings, std::move(events)));
  c->server_ = true;
  c->route_ = accept.route;
  std::memcpy(c->reset_secret_.data(), accept.reset_secret.data(),
              std::min(accept.reset_secret.size(), c->reset_secret_.size()));
  c->local_ = local;
  c->remote_ = remote;

  ngtcp2_settings s = NgtcpSettings(settings);
  // One SSH stream, opened by the client; any further one is refused.
  ngtcp2_transport_params p = TransportParams(settings, /*peer_bidi_streams=*/1);
  const ngtcp2_pkt_hd& hd = *accept.initial;
  if (accept.original_dcid != nullptr) {
    p.original_dcid = *accept.original_dcid;
    p.retry_scid = hd.dcid;
    p.retry_scid_present = 1;
  } else {
    p.original_dcid = hd.dcid;
  }
  ngtcp2_cid scid;
  c->MakeCid(&scid);
  if (ngtcp2_crypto_generate_stateless_reset_token(p.stateless_reset_token, c->reset_secret_.data(),
                                                   c->reset_secret_.size(), &scid) != 0) {
    return absl::InternalError("quic: cannot make a stateless reset token");
  }
  p.stateless_reset_token_present = 1;

  ngtcp2_path path = PathOf(c->local_, c->remote_);
  ngtcp2_callbacks callbacks = Callbacks(/*server=*/true);
  if (int rv = ngtcp2_conn_server_new(&c->conn_, &hd.scid, &scid, &path, hd.version, &callbacks, &s,
                                      &p, nullptr, c.get());
      rv != 0) {
    return Ngtcp2Status("quic: ngtcp2_conn_server_new", rv);
  }
  absl::StatusOr<Session> session = NewServerSession(accept.credentials, &c->ref_);
  if (!session.ok()) return session.status();
  c->session_ = *std::move(session);
  ngtcp2_conn_set_tls_native_handle(c->conn_, c->session_.get());
  if (c->events_.on_cid_added) {
    c->events_.on_cid_added(*c, scid);
    c->events_.on_cid_added(*c, hd.dcid);  // the client's Initials may still carry it
  }
  return c;
}

absl::StatusOr<std::unique_ptr<QuicConnection>> QuicConnection::Connect(
    EventLoop& loop, PacketSink& sink, const ClientVerify& verify, const SockAddr& local,
    const SockAddr& remote, const QuicSettings& settings, Events events) {
  std::unique_ptr<QuicConnection> c(new QuicConnection(loop, sink, settings, std::move(events)));
  c->ref_.verify = &verify;
  c->local_ = local;
  c->remote_ = remote;
  gnutls_rnd(GNUTLS_RND_RANDOM, c->reset_secret_.data(), c->reset_secret_.size());

  ngtcp2_settings s = NgtcpSettings(settings);
  ngtcp2_transport_params p = TransportParams(settings, /*peer_bidi_streams=*/0);  // none from the server

  ngtcp2_cid dcid, scid;
  uint8_t data[kCidLength];
  gnutls_rnd(GNUTLS_RND_NONCE, data, sizeof(data));
  ngtcp2_cid_init(&dcid, data, sizeof(data));
  c->MakeCid(&scid);
  ngtcp2_path path = PathOf(c->local_, c->remote_);
  ngtcp2_callbacks callbacks = Callbacks(/*server=*/false);
  if (int rv = ngtcp2_conn_client_new(&c->conn_, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1,
                                      &callbacks, &s, &p, nullptr, c.get());
      rv != 0) {
    return Ngtcp2Status("quic: ngtcp2_conn_client_new", rv);
  }
  absl::StatusOr<Credentials> cred = ClientCredentials(verify);
  if (!cred.ok()) return cred.status();
  c->client_credentials_ = *std::move(cred);
  absl::StatusOr<Session> session = NewClientSession(c->client_credentials_.get(), &c->ref_);
  if (!session.ok()) return session.status();
  c->session_ = *std::move(session);
  ngtcp2_conn_set_tls_native_handle(c->conn_, c->session_.get());
  return c;
}

// ---- callbacks ----

int QuicConnection::OnHandshakeCompleted(ngtcp2_conn*, void* user_data) {
  static_cast<QuicConnection*>(user_data)->handshake_completed_ = true;
  return 0;
}

int QuicConnection::OnStreamOpen(ngtcp2_conn*, int64_t stream_id, void* user_data) {
  auto* self = static_cast<QuicConnection*>(user_data);
  // Server: the client's first bidirectional stream is the SSH stream (opened in AfterRead,
  // outside the callback); anything else is refused there too.
  if (self->server_ && self->stream_id_ < 0 && ngtcp2_is_bidi_stream(stream_id) &&
      (stream_id & 0x1) == 0) {
    self->stream_id_ = stream_id;
  } else if (self->extra_streams_.size() < 16) {
    self->extra_streams_.push_back(stream_id);
  }
  return 0;
}

// Stream data is gathered in in_ and written to the SSH side once per batch of datagrams
// (DrainToPlain, from Flush) or per 64 KiB: a few large sends instead of one per packet.
// Flow-control credit goes back only as SSH takes the bytes, so in_ stays within the window.
int QuicConnection::OnRecvStreamData(ngtcp2_conn*, uint32_t flags, int64_t stream_id, uint64_t,
                                     const uint8_t* data, size_t datalen, void* user_data, void*) {
  auto* self = static_cast<QuicConnection*>(user_data);
  if (stream_id != self->stream_id_) return 0;  // a refused stream: its data is dropped
  self->in_.Append({data, datalen});
  if ((flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0) self->peer_fin_ = true;
  // A full chunk goes at once: in_ then stays within the chunks StreamBuffer keeps for reuse.
  if (self->in_.size() >= StreamBuffer::kChunk) self->DrainToPlain();
  return 0;
}

int QuicConnection::OnAckedStreamData(ngtcp2_conn*, int64_t stream_id, uint64_t offset,
                                      uint64_t datalen, void* user_data, void*) {
  auto* self = static_cast<QuicConnection*>(user_data);
  if (stream_id == self->stream_id_) self->out_.DropUntil(offset + datalen);
  return 0;
}

int QuicConnection::OnStreamClose(ngtcp2_conn*, uint32_t, int64_t stream_id, uint64_t,
                                  void* user_data, void*) {
  auto* self = static_cast<QuicConnection*>(user_data);
  if (stream_id == self->stream_id_) {
    // Both directions are done (our FIN acknowledged, theirs received) or reset: the SSH
    // session over it is over.
    self->peer_fin_ = true;
    self->out_eof_ = true;
    self->fin_sent_ = true;
    self->stream_closed_ = true;
  }
  return 0;
}

int QuicConnection::OnStreamReset(ngtcp2_conn*, int64_t stream_id, uint64_t, uint64_t,
                                  void* user_data, void*) {
  auto* self = static_cast<QuicConnection*>(user_data);
  if (stream_id == self->stream_id_) {
    self->peer_fin_ = true;
    self->out_eof_ = true;
  }
  return 0;
}

int QuicConnection::OnExtendMaxStreamData(ngtcp2_conn*, int64_t stream_id, uint64_t, void* user_data,
                                          void*) {
  auto* self = static_cast<QuicConnection*>(user_data);
  if (stream_id == self->stream_id_) self->stream_blocked_ = false;
  return 0;
}

int QuicConnection::GetNewConnectionId(ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t,
                                       void* user_data) {
  auto* self = static_cast<QuicConnection*>(user_data);
  self->MakeCid(cid);
  if (ngtcp2_crypto_generate_stateless_reset_token(token, self->reset_secret_.data(),
                                                   self->reset_secret_.size(), cid) != 0) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  if (self->events_.on_cid_added) self->events_.on_cid_added(*self, *cid);
  return 0;
}

int QuicConnection::RemoveConnectionId(ngtcp2_conn*, const ngtcp2_cid* cid, void* user_data) {
  auto* self = static_cast<QuicConnection*>(user_data);
  if (self->events_.on_cid_removed) self->events_.on_cid_removed(*self, *cid);
  return 0;
}

int QuicConnection::OnPathValidation(ngtcp2_conn*, uint32_t, const ngtcp2_path* path,
                                     ngtcp2_path_validation_result res, void* user_data) {
  auto* self = static_cast<QuicConnection*>(user_data);
  if (res == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS) {
    bool moved = !SameAddr(path->remote, self->remote_);
    if (self->server_) {
      CopyAddr(path->remote, &self->remote_);
      CopyAddr(path->local, &self->local_);
    }
    if (moved) {
      ++self->migrations_;
      if (self->events_.on_event) self->events_.on_event(*self, "migration");
    }
  }
  return 0;
}

// ---- packets in ----

void QuicConnection::OnPacket(const SockAddr& local, const SockAddr& remote, uint8_t ecn,
                              std::span<const uint8_t> packet, bool flush) {
  if (closed_) return;
  ngtcp2_path path = PathOf(local, remote);
  ngtcp2_pkt_info pi{};
  pi.ecn = ecn;
  // Connection-level credit (MAX_DATA) has no callback: any packet may have brought it.
  stream_blocked_ = false;
  int rv = ngtcp2_conn_read_pkt(conn_, &path, &pi, packet.data(), packet.size(), Now());
  if (rv != 0) {
    FailWith(rv, "quic: read");
    return;
  }
  AfterRead(flush);
}

void QuicConnection::AfterRead(bool flush) {
  for (int64_t id : extra_streams_) {
    if (id != stream_id_) ngtcp2_conn_shutdown_stream(conn_, id, kStreamRefused);
  }
  extra_streams_.clear();
  if (!server_ && handshake_completed_ && stream_id_ < 0) {
    int64_t id = -1;
    if (int rv = ngtcp2_conn_open_bidi_stream(conn_, &id, nullptr); rv != 0) {
      FailWith(rv, "quic: open the SSH stream");
      return;
    }
    stream_id_ = id;
  }
  if (stream_id_ >= 0 && !plain_.valid() && !closed_) {
    if (absl::Status opened = OpenPlainSide(stream_id_); !opened.ok()) {
      Finish(opened);
      return;
    }
  }
  if (closed_ || !flush) return;  // else the caller calls Flush() after its batch
  Flush();
}

absl::Status QuicConnection::OpenPlainSide(int64_t) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
    return ErrnoStatus("quic: socketpair", errno);
  }
  plain_ = UniqueFd(pair[0]);
  UniqueFd theirs(pair[1]);
  int buffer = 1024 * 1024;
  for (int fd : pair) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  }
  UpdatePlainInterest();
  if (events_.on_stream) events_.on_stream(*this, std::move(theirs));
  return absl::OkStatus();
}

// ---- the SSH side ----

void QuicConnection::OnFdEvents(uint32_t events) {
  if (closed_) return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) ReadPlain();
  if (closed_) return;
  Flush();  // also writes what waited for EPOLLOUT to the SSH side (DrainToPlain)
}

void QuicConnection::ReadPlain() {
  while (!out_eof_ && out_.size() < settings_.stream_window) {
    std::span<uint8_t> tail = out_.WritableTail(settings_.stream_window - out_.size());
    ssize_t n = read(plain_.get(), tail.data(), tail.size());
    if (n > 0) {
      out_.Commit(static_cast<size_t>(n));
      if (static_cast<size_t>(n) < tail.size()) break;
    } else if (n == 0) {
      out_eof_ = true;  // the SSH side is done writing: FIN follows the data
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN) out_eof_ = true;
      break;
    }
  }
}

void QuicConnection::DrainToPlain() {
  uint64_t written = 0;
  while (!in_.empty() && plain_.valid() && !plain_shut_) {
    std::span<const uint8_t> part = in_.At(in_.begin());
    ssize_t n = send(plain_.get(), part.data(), part.size(), MSG_NOSIGNAL);
    if (n > 0) {
      in_.DropUntil(in_.begin() + static_cast<uint64_t>(n));
      written += static_cast<uint64_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n < 0 && errno != EAGAIN) {  // SSH is gone: forget the rest, it ends by EOF
        written += in_.size();
        in_.DropUntil(in_.end());
      }
      break;
    }
  }
  if (written > 0 && stream_id_ >= 0) {
    ngtcp2_conn_extend_max_stream_offset(conn_, stream_id_, written);
    ngtcp2_conn_extend_max_offset(conn_, written);
  }
  if (peer_fin_ && in_.empty() && plain_.valid() && !plain_shut_) {
    shutdown(plain_.get(), SHUT_WR);  // SSH reads EOF
    plain_shut_ = true;
  }
}

void QuicConnection::UpdatePlainInterest() {
  if (!plain_.valid()) return;
  uint32_t wanted = 0;
  if (!out_eof_ && out_.size() < settings_.stream_window) wanted |= EPOLLIN;
  if (!in_.empty() && !plain_shut_) wanted |= EPOLLOUT;
  loop_.SetInterest(plain_.get(), plain_events_, wanted, this);
}

// ---- packets out ----

void QuicConnection::NoteLossSignals() {
  ngtcp2_conn_stat cstat;
  ngtcp2_conn_get_conn_stat(conn_, &cstat);
  if (cstat.congestion_recovery_start_ts != recovery_started_ &&
      cstat.congestion_recovery_start_ts != UINT64_MAX) {
    ++congestion_events_;
    if (events_.on_event) events_.on_event(*this, "congestion");
  }
  recovery_started_ = cstat.congestion_recovery_start_ts;
  // pto_count goes back to 0 when an acknowledgement arrives: count its rises.
  for (size_t i = pto_count_; i < cstat.pto_count; ++i) {
    ++probe_timeouts_;
    if (events_.on_event) events_.on_event(*this, "probe_timeout");
  }
  pto_count_ = cstat.pto_count;
}

void QuicConnection::Flush() {
  if (closed_) return;
  DrainToPlain();  // what the packets read since the last flush brought for SSH, in few writes
  NoteLossSignals();  // after every batch of packets read and every timer: where loss is found
  if (send_blocked_) return;
  ngtcp2_tstamp ts = Now();
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  size_t max_udp = ngtcp2_conn_get_path_max_tx_udp_payload_size(conn_);
  size_t quantum = std::min(ngtcp2_conn_get_send_quantum(conn_), kBatchBytes);
  size_t used = 0;
  size_t segment = 0;
  uint8_t batch_ecn = 0;
  SockAddr batch_remote;
  for (;;) {
    ngtcp2_vec vec{};
    size_t vec_count = 0;
    int64_t stream = -1;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (stream_id_ >= 0 && !stream_blocked_ && !fin_sent_) {
      std::span<const uint8_t> unsent = out_.At(out_sent_);
      if (!unsent.empty()) {
        vec = {const_cast<uint8_t*>(unsent.data()), unsent.size()};
        vec_count = 1;
        stream = stream_id_;
      }
      if (out_eof_ && out_sent_ + unsent.size() == out_.end()) {
        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
        stream = stream_id_;
      }
    }
    ngtcp2_ssize datalen = -1;
    ngtcp2_ssize n = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, batch_.get() + used, max_udp,
                                               &datalen, flags, stream,
                                               vec_count ? &vec : nullptr, vec_count, ts);
    if (datalen >= 0 && stream >= 0) {
      out_sent_ += static_cast<uint64_t>(datalen);
      if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) != 0 && out_sent_ == out_.end()) fin_sent_ = true;
    }
    if (n < 0) {
      if (n == NGTCP2_ERR_WRITE_MORE) continue;
      if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
        stream_blocked_ = true;
        continue;
      }
      if (n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND) {
        fin_sent_ = true;  // nothing more can go on this stream
        continue;
      }
      FailWith(static_cast<int>(n), "quic: write");
      return;
    }
    if (n == 0) break;  // nothing to send, or congestion / pacing says wait
    size_t size = static_cast<size_t>(n);
    bool same_path = used == 0 || (SameAddr(ps.path.remote, batch_remote) && pi.ecn == batch_ecn);
    if (used > 0 && (!same_path || size > segment)) {
      // This packet cannot join the batch: send the batch, then start again with it.
      if (!SendBatch(ngtcp2_addr{batch_remote.get(), batch_remote.len}, used, segment, batch_ecn)) {
        return;  // blocked: this packet is lost to us; QUIC's recovery resends its frames
      }
      std::memmove(batch_.get(), batch_.get() + used, size);
      used = 0;
    }
    if (used == 0) {
      segment = size;
      batch_ecn = pi.ecn;
      CopyAddr(ps.path.remote, &batch_remote);
    }
    used += size;
    if (used >= quantum || used + max_udp > kBatchBytes) {
      // A pacing quantum is out: send it and let the expiry timer say when the next is due.
      bool sent = SendBatch(ngtcp2_addr{batch_remote.get(), batch_remote.len}, used, segment, batch_ecn);
      used = 0;
      if (!sent) break;
      ngtcp2_conn_update_pkt_tx_time(conn_, ts);
      quantum = std::min(ngtcp2_conn_get_send_quantum(conn_), kBatchBytes);
      continue;
    }
    if (size < segment) {  // a short packet ends a GSO batch
      bool sent = SendBatch(ngtcp2_addr{batch_remote.get(), batch_remote.len}, used, segment, batch_ecn);
      used = 0;
      if (!sent) break;
    }
  }
  if (used > 0) SendBatch(ngtcp2_addr{batch_remote.get(), batch_remote.len}, used, segment, batch_ecn);
  ngtcp2_conn_update_pkt_tx_time(conn_, ts);
  if (closed_) return;
  UpdatePlainInterest();
  ArmTimer();
  // The SSH session is over both ways and its bytes are through: close the connection.
  if (stream_closed_ && in_.empty()) Close();
}

bool QuicConnection::SendBatch(const ngtcp2_addr& remote, size_t length, size_t segment, uint8_t ecn) {
  size_t sent = 0;
  datagrams_sent_ += (length + segment - 1) / std::max<size_t>(segment, 1);
  SendResult result = sink_.Send(remote, {batch_.get(), length}, segment, ecn, &sent);
  if (result != SendResult::kBlocked) return true;  // kFailed: lost, QUIC recovers
  pending_begin_ = sent;
  pending_end_ = length;
  pending_segment_ = segment;
  pending_ecn_ = ecn;
  CopyAddr(remote, &pending_remote_);
  send_blocked_ = true;
  sink_.NotifyWritable(this);
  return false;
}

void QuicConnection::OnWritable() {
  if (closed_ || !send_blocked_) return;
  size_t sent = 0;
  SendResult result = sink_.Send(ngtcp2_addr{pending_remote_.get(), pending_remote_.len},
                                 {batch_.get() + pending_begin_, pending_end_ - pending_begin_},
                                 pending_segment_, pending_ecn_, &sent);
  if (result == SendResult::kBlocked) {
    pending_begin_ += sent;
    sink_.NotifyWritable(this);
    return;
  }
  send_blocked_ = false;
  Flush();
}

void QuicConnection::ArmTimer() {
  if (timer_ != 0) loop_.CancelTimer(timer_);
  timer_ = 0;
  ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(conn_);
  if (expiry == UINT64_MAX) return;
  ngtcp2_tstamp now = Now();
  absl::Duration after = expiry > now ? absl::Nanoseconds(expiry - now) : absl::ZeroDuration();
  timer_ = loop_.AddTimer(after, [this] { OnTimer(); });
}

void QuicConnection::OnTimer() {
  timer_ = 0;
  if (closed_) return;
  if (int rv = ngtcp2_conn_handle_expiry(conn_, Now()); rv != 0) {
    FailWith(rv, "quic: timer");
    return;
  }
  Flush();
}

// ---- the end ----

void QuicConnection::Close() {
  if (closed_ || closing_) return;
  closing_ = true;  // the Flush below ends in Close() when the stream is done: not again
  if (plain_.valid() && handshake_completed_) {
    ReadPlain();  // what the SSH side wrote last goes out first (best effort)
    Flush();
    if (closed_) return;
  }
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  SendClose(ccerr);
  Finish(absl::OkStatus());
}

void QuicConnection::FailWith(int rv, std::string_view what) {
  if (closed_) return;
  if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) {
    Finish(absl::OkStatus());  // the peer closed (draining), or we did
    return;
  }
  if (rv == NGTCP2_ERR_DROP_CONN || rv == NGTCP2_ERR_IDLE_CLOSE) {
    Finish(Ngtcp2Status(what, rv));  // no CONNECTION_CLOSE is due
    return;
  }
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  if (rv == NGTCP2_ERR_CRYPTO) {
    ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, ngtcp2_conn_get_tls_alert(conn_),
                                                                nullptr, 0);
  } else {
    ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, nullptr, 0);
  }
  SendClose(ccerr);
  absl::Status why = Ngtcp2Status(what, rv);
  if (rv == NGTCP2_ERR_CRYPTO) {
    why = absl::PermissionDeniedError(
        absl::StrCat(Sv(what), ": TLS handshake failed (alert ", ngtcp2_conn_get_tls_alert(conn_), ")"));
  }
  Finish(why);
}

void QuicConnection::SendClose(const ngtcp2_connection_close_error& ccerr) {
  if (ngtcp2_conn_is_in_closing_period(conn_) || ngtcp2_conn_is_in_draining_period(conn_)) return;
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  ngtcp2_ssize n = ngtcp2_conn_write_connection_close(
      conn_, &ps.path, &pi, batch_.get(), ngtcp2_conn_get_path_max_tx_udp_payload_size(conn_), &ccerr,
      Now());
  if (n <= 0) return;
  size_t sent = 0;
  sink_.Send(ps.path.remote, {batch_.get(), static_cast<size_t>(n)}, static_cast<size_t>(n), pi.ecn,
             &sent);
}

void QuicConnection::Finish(absl::Status why) {
  if (closed_) return;
  closed_ = true;
  if (timer_ != 0) loop_.CancelTimer(timer_);
  timer_ = 0;
  if (plain_.valid()) {
    loop_.SetInterest(plain_.get(), plain_events_, 0, this);
    plain_.reset();  // the SSH side reads EOF
  }
  Events events = std::move(events_);
  events_ = {};
  if (events.on_closed) events.on_closed(*this, why);
}

QuicStats QuicConnection::stats() const {
  QuicStats stats;
  stats.migrations = migrations_;
  stats.congestion_events = congestion_events_;
  stats.probe_timeouts = probe_timeouts_;
  if (conn_ == nullptr) return stats;
  ngtcp2_conn_stat cstat;
  ngtcp2_conn_get_conn_stat(conn_, &cstat);
  stats.rtt_us = cstat.smoothed_rtt / 1000;
  stats.cwnd = cstat.cwnd;
  return stats;
}

std::string QuicConnection::peer_fingerprint() const {
  return session_ ? PeerFingerprint(session_.get()) : "";
}

}  // namespace alknet::quic
