// The dialers of the stream transports: TCP (optionally through a SOCKS5 / HTTP CONNECT proxy),
// and TLS over that (server/transport/tls_client.h); the scheme table.
#include "server/client/stream_dialer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/client/proxy_handshake.h"
#include "server/client/quic_dialer.h"
#include "server/transport/tls_client.h"

namespace alknet {
namespace {

// connect -> proxy (if configured) -> TLS (tls:// only) -> done.
class TcpFamilyStream final : public DialedStream {
 public:
  TcpFamilyStream(const DialEnv& env, const config::UpstreamConfig& upstream, std::string label,
                  bool tls, DialDone done)
      : env_(env), upstream_(upstream), label_(std::move(label)), tls_(tls),
        done_(std::move(done)) {}

  ~TcpFamilyStream() override { Close(); }

  void Start() {
    const HostPort& first_hop = upstream_.proxy ? upstream_.proxy->address : upstream_.server.address;
    connecting_ = env_.connector.Connect(
        first_hop.host, first_hop.port, upstream_.handshake_timeout,
        [this](absl::StatusOr<UniqueFd> fd) { OnConnected(std::move(fd)); });
  }

  void Close() override {
    done_ = nullptr;
    if (connecting_) env_.loop.DeleteLater(std::move(connecting_));
    if (proxying_) env_.loop.DeleteLater(std::move(proxying_));
    if (bridge_) {
      bridge_->Close();
      env_.loop.DeleteLater(std::move(bridge_));
    }
  }

 private:
  void OnConnected(absl::StatusOr<UniqueFd> fd) {
    env_.loop.DeleteLater(std::move(connecting_));  // we are inside its callback
    if (!fd.ok()) {
      Finish(absl::UnavailableError(absl::StrCat(
          upstream_.proxy ? "cannot connect to the proxy: " : "cannot connect: ", fd.status().message())));
      return;
    }
    if (!upstream_.proxy) {
      OnStream(*std::move(fd));
      return;
    }
    ProxyKind kind = upstream_.proxy->scheme == "socks5" ? ProxyKind::kSocks5 : ProxyKind::kHttpConnect;
    proxying_ = std::make_unique<ProxyHandshake>(
        env_.loop, kind, *std::move(fd), upstream_.server.address.host, upstream_.server.address.port,
        upstream_.handshake_timeout, [this](absl::StatusOr<UniqueFd> tunnel) {
          env_.loop.DeleteLater(std::move(proxying_));
          if (!tunnel.ok()) {
            Finish(absl::UnavailableError(absl::StrCat("proxy: ", tunnel.status().message())));
            return;
          }
          OnStream(*std::move(tunnel));
        });
    proxying_->Start();
  }

  // The connected TCP stream: the SSH stream itself (tcp://), or the TLS bridge's carrier.
  void OnStream(UniqueFd fd) {
    if (!tls_) {
      Finish(std::move(fd));
      return;
    }
    TlsClientOptions options{upstream_.server.address.host, upstream_.tls_server_name,
                             upstream_.tls_ca_file, upstream_.tls_fingerprint, upstream_.tls_insecure};
    bridge_ = std::make_unique<TlsClientStream>(
        env_.loop, env_.logger, label_, std::move(fd), std::move(options),
        [this](absl::StatusOr<UniqueFd> plain) {
          if (plain.ok()) {
            if (upstream_.tls_insecure) {
              env_.logger.Warn("client", "tls certificate not checked (tls_insecure)",
                               {{"upstream", label_},
                                {"server", upstream_.server.address.ToString()},
                                {"presented", bridge_->presented_fingerprint()}});
            }
            env_.logger.Debug("client", "tls established",
                              {{"upstream", label_}, {"version", bridge_->version()},
                               {"cipher", bridge_->cipher()},
                               {"sha256", bridge_->presented_fingerprint()}});
          }
          Finish(std::move(plain));
        });
    bridge_->Start();
  }

  void Finish(absl::StatusOr<UniqueFd> result) {
    DialDone done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));
  }

  const DialEnv env_;
  const config::UpstreamConfig& upstream_;
  const std::string label_;
  const bool tls_;
  DialDone done_;
  std::unique_ptr<ConnectAttempt> connecting_;
  std::unique_ptr<ProxyHandshake> proxying_;
  std::unique_ptr<TlsClientStream> bridge_;
};

class TcpFamilyDialer final : public StreamDialer {
 public:
  TcpFamilyDialer(std::string_view scheme, bool tls) : scheme_(scheme), tls_(tls) {}
  std::string_view scheme() const override { return scheme_; }
  std::unique_ptr<DialedStream> Dial(const DialEnv& env, const config::UpstreamConfig& upstream,
                                     std::string label, DialDone done) const override {
    auto stream = std::make_unique<TcpFamilyStream>(env, upstream, std::move(label), tls_,
                                                    std::move(done));
    stream->Start();
    return stream;
  }

 private:
  std::string_view scheme_;
  bool tls_;
};

}  // namespace

const StreamDialer* FindStreamDialer(std::string_view scheme) {
  // The registered transports; a new one adds its row here.
  static const TcpFamilyDialer kTcp("tcp", /*tls=*/false);
  static const TcpFamilyDialer kTls("tls", /*tls=*/true);
  static const StreamDialer* const kDialers[] = {&kTcp, &kTls, &QuicDialer()};
  for (const StreamDialer* dialer : kDialers) {
    if (dialer->scheme() == scheme) return dialer;
  }
  return nullptr;
}

}  // namespace alknet
