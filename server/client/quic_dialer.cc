// QuicClientStream: one UDP socket and one QuicConnection on the caller's loop.
#include "server/client/quic_dialer.h"

#include <sys/epoll.h>

#include "absl/strings/str_cat.h"
#include "server/quic/quic_connection.h"
#include "server/quic/udp_socket.h"

namespace alknet {
namespace {

class QuicClientStream final : public DialedStream, public FdHandler, public quic::PacketSink {
 public:
  QuicClientStream(const DialEnv& env, const config::UpstreamConfig& upstream, std::string label,
                   DialDone done)
      : env_(env), label_(std::move(label)), done_(std::move(done)) {
    verify_.name = upstream.tls_server_name.empty() ? upstream.server.address.host : upstream.tls_server_name;
    verify_.ca_file = upstream.tls_ca_file;
    verify_.fingerprint = upstream.tls_fingerprint;
    verify_.insecure = upstream.tls_insecure;
    settings_.handshake_timeout = upstream.handshake_timeout;
    settings_.max_udp_payload = static_cast<size_t>(upstream.quic_max_udp_payload);
    settings_.congestion = upstream.quic_congestion_control == config::QuicCongestion::kCubic
                               ? quic::QuicSettings::Congestion::kCubic
                               : quic::QuicSettings::Congestion::kBbr;
    server_ = upstream.server.address;
  }

  ~QuicClientStream() override { Close(); }

  void Start() {
    // Name resolution happens here, on the loop (an IP literal costs nothing).
    absl::StatusOr<UniqueFd> socket = quic::ConnectUdp(server_, &remote_);
    if (!socket.ok()) {
      FailSoon(absl::UnavailableError(absl::StrCat("cannot connect: ", socket.status().message())));
      return;
    }
    socket_ = *std::move(socket);
    local_ = quic::LocalAddress(socket_.get());
    quic::QuicConnection::Events events;
    events.on_stream = [this](quic::QuicConnection& conn, UniqueFd plain) {
      if (verify_.insecure) {
        env_.logger.Warn("client", "tls certificate not checked (tls_insecure)",
                         {{"upstream", label_}, {"server", server_.ToString()},
                          {"presented", conn.peer_fingerprint()}});
      }
      env_.logger.Debug("client", "quic established",
                        {{"upstream", label_}, {"sha256", conn.peer_fingerprint()}});
      Finish(std::move(plain));
    };
    events.on_closed = [this](quic::QuicConnection&, const absl::Status& why) {
      if (done_) {
        Finish(absl::UnavailableError(absl::StrCat(
            "quic: ", why.ok() ? "closed by the server" : std::string(why.message()))));
      }
      Unwatch();
    };
    absl::StatusOr<std::unique_ptr<quic::QuicConnection>> conn =
        quic::QuicConnection::Connect(env_.loop, *this, verify_, local_, remote_, settings_, std::move(events));
    if (!conn.ok()) {
      FailSoon(conn.status());
      return;
    }
    conn_ = *std::move(conn);
    env_.loop.SetInterest(socket_.get(), socket_events_, EPOLLIN, this);
    conn_->Flush();  // the first Initial
  }

  void Close() override {
    done_ = nullptr;
    if (fail_timer_ != 0) env_.loop.CancelTimer(fail_timer_);
    fail_timer_ = 0;
    if (conn_ != nullptr) {
      conn_->Close();
      env_.loop.DeleteLater(std::move(conn_));
    }
    Unwatch();
  }

  // The UDP socket.
  void OnFdEvents(uint32_t events) override {
    if ((events & EPOLLOUT) != 0 && conn_ != nullptr) {
      env_.loop.SetInterest(socket_.get(), socket_events_, EPOLLIN, this);
      conn_->OnWritable();
    }
    if ((events & EPOLLIN) != 0 && socket_.valid()) {
      // The whole batch first, then one Flush: one answer (ACKs, data) for many packets.
      quic::ReceiveDatagrams(socket_.get(), env_.loop.Scratch(), 256, [this](const quic::Datagram& d) {
        if (conn_ != nullptr && !conn_->closed()) {
          conn_->OnPacket(local_, *d.remote, d.ecn, d.data, /*flush=*/false);
        }
      });
      if (conn_ != nullptr && !conn_->closed()) conn_->Flush();
    }
  }

  quic::SendResult Send(const ngtcp2_addr&, std::span<const uint8_t> data, size_t segment, uint8_t ecn,
                        size_t* sent) override {
    if (!socket_.valid()) {
      *sent = data.size();
      return quic::SendResult::kFailed;
    }
    return quic::SendPackets(socket_.get(), nullptr, data, segment, ecn, sent);
  }
  void NotifyWritable(quic::QuicConnection*) override {
    if (socket_.valid()) env_.loop.SetInterest(socket_.get(), socket_events_, EPOLLIN | EPOLLOUT, this);
  }

 private:
  void Unwatch() {
    if (socket_.valid()) env_.loop.SetInterest(socket_.get(), socket_events_, 0, this);
  }
  // `done` never runs from inside Dial: a failure found there is reported from the loop.
  void FailSoon(absl::Status status) {
    fail_timer_ = env_.loop.AddTimer(absl::ZeroDuration(), [this, status] {
      fail_timer_ = 0;
      Finish(status);
    });
  }
  void Finish(absl::StatusOr<UniqueFd> result) {
    DialDone done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));
  }

  const DialEnv env_;
  const std::string label_;
  DialDone done_;
  quic::ClientVerify verify_;
  quic::QuicSettings settings_;
  HostPort server_;
  UniqueFd socket_;
  uint32_t socket_events_ = 0;
  quic::SockAddr local_;
  quic::SockAddr remote_;
  std::unique_ptr<quic::QuicConnection> conn_;
  EventLoop::TimerId fail_timer_ = 0;
};

class QuicDialerImpl final : public StreamDialer {
 public:
  std::string_view scheme() const override { return "quic"; }
  std::unique_ptr<DialedStream> Dial(const DialEnv& env, const config::UpstreamConfig& upstream,
                                     std::string label, DialDone done) const override {
    auto stream = std::make_unique<QuicClientStream>(env, upstream, std::move(label), std::move(done));
    stream->Start();
    return stream;
  }
};

}  // namespace

const StreamDialer& QuicDialer() {
  static const QuicDialerImpl kDialer;
  return kDialer;
}

}  // namespace alknet
