// The per-worker QUIC endpoint: routing by connection ID, Retry, admission, stateless resets,
// upgrade links.
#include "server/quic/quic_endpoint.h"

#include <gnutls/crypto.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/strings.h"
#include "server/quic/upgrade_relay.h"

namespace alknet::quic {
namespace {

constexpr int kResetsPerSecond = 100;
// Messages read from an upgrade link per wake-up, like the socket's batch; the largest one (a
// 64 KiB datagram with its header).
constexpr size_t kLinkBatch = 256;
constexpr size_t kLinkMessageMax = 65536 + 64;
// How long a Retry token is good for.
constexpr ngtcp2_duration kRetryTokenLifetime = 10 * NGTCP2_SECONDS;

ngtcp2_tstamp Now() { return QuicNow(); }

std::string Key(const uint8_t* data, size_t length) {
  return std::string(reinterpret_cast<const char*>(data), length);
}
// A lookup key without a copy (Debian's Abseil hashes absl::string_view, not std's).
absl::string_view KeyView(const uint8_t* data, size_t length) {
  return absl::string_view(reinterpret_cast<const char*>(data), length);
}

}  // namespace

QuicEndpoint::QuicEndpoint(EventLoop& loop, UniqueFd socket, EndpointOptions options,
                           EndpointHooks hooks, Logger& logger, UpgradeLinks links)
    : loop_(loop), socket_(std::move(socket)), options_(std::move(options)), hooks_(std::move(hooks)),
      logger_(logger), local_(LocalAddress(socket_.get())) {
  successor_.fd = std::move(links.successor);
  predecessor_.fd = std::move(links.predecessor);
  predecessor_.epoch = links.predecessor_epoch;
}

QuicEndpoint::~QuicEndpoint() {
  if (socket_.valid() && socket_events_ != 0) loop_.Unwatch(socket_.get());
  CloseLink(Source::kSuccessor);
  CloseLink(Source::kPredecessor);
}

void QuicEndpoint::Start() {
  loop_.SetInterest(socket_.get(), socket_events_, EPOLLIN, this);
  for (Link* link : {&successor_, &predecessor_}) {
    if (link->fd.valid()) loop_.SetInterest(link->fd.get(), link->events, EPOLLIN, link);
  }
  if (predecessor_.fd.valid() && SendRelayHello(predecessor_.fd.get(), options_.epoch) == RelaySend::kGone) {
    CloseLink(Source::kPredecessor);
  }
}

void QuicEndpoint::CloseLink(Source source) {
  Link& link = LinkFor(source);
  if (!link.fd.valid()) return;
  if (link.events != 0) loop_.Unwatch(link.fd.get());
  link.events = 0;
  link.fd.reset();
}

void QuicEndpoint::ReadLink(Source source) {
  bool open = true;
  ReadBatch([&] { open = DrainLink(source); });
  if (!open) CloseLink(source);  // that process has exited
}

bool QuicEndpoint::DrainLink(Source source) {
  Link& link = LinkFor(source);
  if (!link.fd.valid()) return true;
  // Its own buffer, not the loop's scratch: a packet read from the socket (in the scratch) may
  // be what made PassOn drain the successor's link.
  if (link_buffer_ == nullptr) link_buffer_ = std::make_unique_for_overwrite<uint8_t[]>(kLinkMessageMax);
  return ReceiveRelayed(link.fd.get(), {link_buffer_.get(), kLinkMessageMax}, kLinkBatch,
                        [&](const RelayMessage& message) {
                          if (message.kind == RelayMessage::Kind::kHello) {
                            if (source == Source::kSuccessor) link.epoch = message.epoch;
                            return;
                          }
                          OnDatagram(message.remote, message.ecn, message.packet, source);
                        });
}

void QuicEndpoint::ReadBatch(const std::function<void()>& read) {
  batching_ = true;
  read();
  batching_ = false;
  for (QuicConnection* conn : touched_) {
    if (connections_.contains(conn) && !conn->closed()) conn->Flush();
  }
  touched_.clear();
}

void QuicEndpoint::Close() {
  accepting_ = false;
  CloseLink(Source::kSuccessor);
  CloseLink(Source::kPredecessor);
  std::vector<QuicConnection*> all;
  for (auto& [conn, entry] : connections_) all.push_back(conn);
  for (QuicConnection* conn : all) conn->Close();  // on_closed removes each
  if (socket_.valid()) {
    loop_.SetInterest(socket_.get(), socket_events_, 0, this);
    socket_.reset();
  }
}

void QuicEndpoint::StopReading() {
  accepting_ = false;
  read_interest_ = 0;
  if (socket_.valid()) {
    loop_.SetInterest(socket_.get(), socket_events_,
                      waiting_writable_.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT), this);
  }
}

void QuicEndpoint::OnFdEvents(uint32_t events) {
  if ((events & EPOLLOUT) != 0) {
    std::vector<QuicConnection*> waiting(waiting_writable_.begin(), waiting_writable_.end());
    waiting_writable_.clear();
    for (QuicConnection* conn : waiting) {
      if (connections_.contains(conn)) conn->OnWritable();
    }
  }
  if ((events & EPOLLIN) != 0 && socket_.valid() && read_interest_ != 0) {
    // A bounded batch per wake-up, so one busy socket cannot starve the loop's other work.
    ReadBatch([this] {
      ReceiveDatagrams(socket_.get(), loop_.Scratch(), 256,
                       [this](const Datagram& d) { OnDatagram(*d.remote, d.ecn, d.data); });
    });
  }
  if (socket_.valid()) {
    uint32_t write_interest = waiting_writable_.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT);
    loop_.SetInterest(socket_.get(), socket_events_, read_interest_ | write_interest, this);
  }
}

void QuicEndpoint::OnDatagram(const SockAddr& remote, uint8_t ecn, std::span<const uint8_t> data,
                              Source source) {
  if (data.empty()) return;  // ngtcp2_pkt_decode_version_cid asserts on an empty datagram
  ngtcp2_version_cid vc;
  int rv = ngtcp2_pkt_decode_version_cid(&vc, data.data(), data.size(), QuicConnection::kCidLength);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    SendVersionNegotiation(vc, remote);
    return;
  }
  if (rv != 0) return;  // not a QUIC packet we can read: dropped
  if (auto found = by_cid_.find(KeyView(vc.dcid, vc.dcidlen)); found != by_cid_.end()) {
    QuicConnection* conn = found->second;
    conn->OnPacket(local_, remote, ecn, data, /*flush=*/!batching_);
    if (batching_ && std::find(touched_.begin(), touched_.end(), conn) == touched_.end()) {
      touched_.push_back(conn);
    }
    return;
  }
  // Not ours. Without reuseport steering a packet can reach the wrong worker: its connection
  // ID names the owner.
  int owner = vc.dcidlen > 0 ? vc.dcid[0] % options_.worker_count : options_.worker_index;
  if (owner != options_.worker_index && hooks_.forward && source == Source::kSocket) {
    hooks_.forward(owner, Key(data.data(), data.size()), remote, ecn);
    return;
  }
  // QUIC v1 long header packet types: 0 Initial and 1 0-RTT may open a connection (the
  // client chose their connection ID); Handshake packets and short headers name ours.
  bool long_header = (data[0] & 0x80) != 0;
  if (long_header && ((data[0] & 0x30) >> 4) <= 1) {
    if (source != Source::kSocket) return;
    // Once the server answered, the client's Initials name the connection ID it chose: a
    // handshake the other process of an upgrade began goes on there.
    std::span<const uint8_t> dcid(vc.dcid, vc.dcidlen);
    if (IssuedByTheOtherProcess(dcid) && PassOn(dcid, remote, ecn, data, source)) return;
    Accept(remote, ecn, data);
    return;
  }
  if (PassOn({vc.dcid, vc.dcidlen}, remote, ecn, data, source)) return;
  if (!long_header) SendStatelessReset({vc.dcid, vc.dcidlen}, remote, data.size());
}

void QuicEndpoint::LearnSuccessorEpoch() {
  if (!successor_.epoch && successor_.fd.valid() && !DrainLink(Source::kSuccessor)) CloseLink(Source::kSuccessor);
}

bool QuicEndpoint::IssuedByTheOtherProcess(std::span<const uint8_t> dcid) {
  std::optional<uint32_t> epoch = CidEpoch(dcid);
  if (!epoch || *epoch == options_.epoch) return false;
  if (epoch == predecessor_.epoch) return true;
  LearnSuccessorEpoch();
  return epoch == successor_.epoch;
}

bool QuicEndpoint::PassOn(std::span<const uint8_t> dcid, const SockAddr& remote, uint8_t ecn,
                          std::span<const uint8_t> data, Source source) {
  std::optional<uint32_t> epoch = CidEpoch(dcid);
  if (!epoch || *epoch == options_.epoch) return false;  // one of ours, gone
  if (source == Source::kSocket) LearnSuccessorEpoch();
  // The successor's own connections (read here before this process stopped reading), else
  // an older process's: the predecessor has them or passes them further back.
  Source to = successor_.epoch == epoch && source != Source::kSuccessor ? Source::kSuccessor
                                                                          : Source::kPredecessor;
  Link& link = LinkFor(to);
  if (to == source || !link.fd.valid()) return false;
  switch (SendRelayPacket(link.fd.get(), remote, ecn, data)) {
    case RelaySend::kSent:
      Count("upgrade_relayed");
      return true;
    case RelaySend::kDropped:
      return true;
    case RelaySend::kGone:
      CloseLink(to);
      return false;
  }
  return false;
}

void QuicEndpoint::Accept(const SockAddr& remote, uint8_t ecn, std::span<const uint8_t> data) {
  if (!accepting_) return;
  ngtcp2_pkt_hd hd;
  int rv = ngtcp2_accept(&hd, data.data(), data.size());
  if (rv == NGTCP2_ERR_RETRY) {
    SendRetry(hd, remote);
    return;
  }
  if (rv != 0) return;  // not a first packet: dropped, no state
  ngtcp2_cid original_dcid;
  const ngtcp2_cid* validated = nullptr;
  if (hd.token.len > 0 && hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
    if (ngtcp2_crypto_verify_retry_token(&original_dcid, hd.token.base, hd.token.len,
                                         options_.secret.data(), options_.secret.size(), hd.version,
                                         remote.get(), remote.len, &hd.dcid, kRetryTokenLifetime,
                                         Now()) != 0) {
      return;  // forged, stale or for another address: dropped
    }
    validated = &original_dcid;
  } else {
    bool under_load = options_.retry == RetryMode::kAuto &&
                      handshaking_ >= static_cast<size_t>(options_.retry_threshold);
    if (options_.retry == RetryMode::kAlways || under_load) {
      SendRetry(hd, remote);  // no state until the client proves its address
      return;
    }
  }

  StreamInfo info;
  info.transport = "quic";
  info.peer = DescribeSockaddr(remote.get(), remote.len);
  info.local = DescribeSockaddr(local_.get(), local_.len);
  std::shared_ptr<void> admission = hooks_.admit ? hooks_.admit(info) : std::make_shared<int>(0);
  if (admission == nullptr) return;  // refused before any state

  QuicConnection::Events events;
  events.on_stream = [this](QuicConnection& conn, UniqueFd plain) {
    auto it = connections_.find(&conn);
    if (it == connections_.end()) return;
    Entry& entry = it->second;
    if (entry.handshaking) {
      entry.handshaking = false;
      --handshaking_;
    }
    Count("handshake");
    ConnectedStream stream{std::move(plain), entry.info};
    std::shared_ptr<void> admitted = std::move(entry.admission);
    if (hooks_.deliver) hooks_.deliver(std::move(stream), std::move(admitted));
  };
  // IDs announced inside QuicConnection::Accept (before the entry exists) wait in new_cids_.
  events.on_cid_added = [this](QuicConnection& conn, const ngtcp2_cid& cid) {
    std::string key = Key(cid.data, cid.datalen);
    auto it = connections_.find(&conn);
    if (it == connections_.end()) {
      new_cids_.push_back(std::move(key));
      return;
    }
    by_cid_[key] = &conn;
    it->second.cids.push_back(std::move(key));
  };
  events.on_cid_removed = [this](QuicConnection&, const ngtcp2_cid& cid) {
    by_cid_.erase(KeyView(cid.data, cid.datalen));
  };
  events.on_event = [this](QuicConnection&, std::string_view event) { Count(event); };
  events.on_closed = [this](QuicConnection& conn, const absl::Status& why) {
    auto it = connections_.find(&conn);
    if (it != connections_.end() && !it->second.handshaking && hooks_.ended) hooks_.ended(conn.stats());
    if (it != connections_.end() && it->second.handshaking) {
      Count("handshake_failed");
      logger_.Info("quic", "handshake failed",
                   {{"src", it->second.info.peer.ip},
                    {"port", absl::StrCat(it->second.info.peer.port)},
                    {"reason", std::string(why.message())}});
    }
    Remove(&conn);
  };
  ServerAccept accept{options_.credentials, options_.secret, Route(), &hd, validated};
  new_cids_.clear();
  absl::StatusOr<std::unique_ptr<QuicConnection>> made =
      QuicConnection::Accept(loop_, *this, accept, local_, remote, options_.settings, std::move(events));
  if (!made.ok()) {
    new_cids_.clear();
    logger_.Warn("quic", "cannot accept",
                 {{"src", info.peer.ip}, {"error", std::string(made.status().message())}});
    return;
  }
  QuicConnection* conn = made->get();
  Entry& entry = connections_[conn];
  entry.conn = *std::move(made);
  entry.admission = std::move(admission);
  entry.info = info;
  ++handshaking_;
  for (std::string& key : new_cids_) {
    by_cid_[key] = conn;
    entry.cids.push_back(std::move(key));
  }
  new_cids_.clear();
  conn->OnPacket(local_, remote, ecn, data);
  // A real client's first Initial carries a ClientHello that gets an answer (at least an ACK).
  // None: it only looked like an Initial; the connection goes at once, with its pre-auth slot.
  if (!conn->closed() && conn->datagrams_sent() == 0) Remove(conn);
}

void QuicEndpoint::Remove(QuicConnection* conn) {
  auto it = connections_.find(conn);
  if (it == connections_.end()) return;
  for (const std::string& key : it->second.cids) {
    if (auto found = by_cid_.find(key); found != by_cid_.end() && found->second == conn) by_cid_.erase(found);
  }
  if (it->second.handshaking) --handshaking_;
  waiting_writable_.erase(conn);
  std::unique_ptr<QuicConnection> owned = std::move(it->second.conn);
  connections_.erase(it);
  loop_.DeleteLater(std::move(owned));  // we may be inside its callback
}

void QuicEndpoint::SendRetry(const ngtcp2_pkt_hd& hd, const SockAddr& remote) {
  ngtcp2_cid retry_scid;
  MakeRoutedCid(Route(), &retry_scid);
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
  ngtcp2_ssize token_len = ngtcp2_crypto_generate_retry_token(
      token, options_.secret.data(), options_.secret.size(), hd.version, remote.get(), remote.len,
      &retry_scid, &hd.dcid, Now());
  if (token_len < 0) return;
  uint8_t packet[1280];
  ngtcp2_ssize n = ngtcp2_crypto_write_retry(packet, sizeof(packet), hd.version, &hd.scid, &retry_scid,
                                             &hd.dcid, token, static_cast<size_t>(token_len));
  if (n < 0) return;
  Count("retry");
  SendRaw({packet, static_cast<size_t>(n)}, remote);
}

void QuicEndpoint::SendStatelessReset(std::span<const uint8_t> dcid, const SockAddr& remote,
                                      size_t received) {
  // RFC 9000 10.3: smaller than the packet that provoked it, and at least 41 bytes... so
  // nothing is sent for packets of 42 bytes or less (no reset loops, no amplification).
  constexpr size_t kMinReset = NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN + 1;
  if (received <= kMinReset + 1 || dcid.empty()) return;
  int64_t second = static_cast<int64_t>(Now() / NGTCP2_SECONDS);
  if (second != reset_second_) {
    reset_second_ = second;
    resets_this_second_ = 0;
  }
  if (++resets_this_second_ > kResetsPerSecond) return;
  ngtcp2_cid cid;
  ngtcp2_cid_init(&cid, dcid.data(), dcid.size());
  uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
  if (ngtcp2_crypto_generate_stateless_reset_token(token, options_.secret.data(), options_.secret.size(),
                                                   &cid) != 0) {
    return;
  }
  size_t randlen = std::min<size_t>(received - 1 - NGTCP2_STATELESS_RESET_TOKENLEN, 64);
  uint8_t random[64];
  gnutls_rnd(GNUTLS_RND_NONCE, random, randlen);
  uint8_t packet[128];
  ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(packet, sizeof(packet), token, random, randlen);
  if (n < 0) return;
  Count("stateless_reset");
  SendRaw({packet, static_cast<size_t>(n)}, remote);
}

void QuicEndpoint::SendVersionNegotiation(const ngtcp2_version_cid& vc, const SockAddr& remote) {
  uint32_t versions[] = {NGTCP2_PROTO_VER_V1};
  uint8_t unused = 0;
  gnutls_rnd(GNUTLS_RND_NONCE, &unused, 1);
  uint8_t packet[256];
  ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(packet, sizeof(packet), unused, vc.scid,
                                                        vc.scidlen, vc.dcid, vc.dcidlen, versions, 1);
  if (n > 0) SendRaw({packet, static_cast<size_t>(n)}, remote);
}

void QuicEndpoint::SendRaw(std::span<const uint8_t> packet, const SockAddr& remote) {
  size_t sent = 0;
  SendPackets(socket_.get(), &remote, packet, packet.size(), 0, &sent);  // best effort
}

SendResult QuicEndpoint::Send(const ngtcp2_addr& remote, std::span<const uint8_t> data, size_t segment,
                              uint8_t ecn, size_t* sent) {
  if (!socket_.valid()) {
    *sent = data.size();
    return SendResult::kFailed;
  }
  SockAddr to;
  to.len = std::min<socklen_t>(remote.addrlen, sizeof(to.storage));
  std::memcpy(&to.storage, remote.addr, to.len);
  return SendPackets(socket_.get(), &to, data, segment, ecn, sent);
}

void QuicEndpoint::NotifyWritable(QuicConnection* conn) {
  waiting_writable_.insert(conn);
  if (socket_.valid()) loop_.SetInterest(socket_.get(), socket_events_, read_interest_ | EPOLLOUT, this);
}

}  // namespace alknet::quic
