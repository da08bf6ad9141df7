// The server transport table: TCP, and TLS with its options read from the tls.* configuration.
#include "server/transport/transport_table.h"

#include <algorithm>
#include <string>

#include "server/transport/quic_transport.h"
#include "server/transport/tcp_transport.h"
#include "server/transport/tls_transport.h"

namespace alknet {
namespace {

class TcpFactory final : public ServerTransportFactory {
 public:
  std::string_view scheme() const override { return "tcp"; }
  absl::StatusOr<std::unique_ptr<ServerTransport>> Create(const ServerTransportEnv&,
                                                          const EndpointUrl&) const override {
    return std::make_unique<TcpTransport>();
  }
};

class TlsFactory final : public ServerTransportFactory {
 public:
  std::string_view scheme() const override { return "tls"; }
  absl::StatusOr<std::unique_ptr<ServerTransport>> Create(const ServerTransportEnv& env,
                                                          const EndpointUrl& first) const override {
    const config::TlsConfig& tls = env.config.tls;
    TlsTransportOptions options;
    options.cert_path = tls.cert;
    options.key_path = tls.key;
    options.state_dir = env.config.state_dir;
    const std::string& host = first.address.host;
    bool wildcard = host.empty() || host == "*" || host == "0.0.0.0" || host == "::";
    options.cert_host = wildcard ? "localhost" : host;
    options.stealth = tls.stealth_enabled();
    options.stealth_timeout = tls.stealth_timeout;
    options.profile = tls.effective_profile() == config::TlsProfile::kNginx ? TlsProfile::kNginx
                                                                           : TlsProfile::kModern;
    options.handshake_timeout = std::min(tls.stealth_timeout, env.config.limits.login_grace_time);
    options.max_handshakes = tls.max_handshakes;
    options.per_source_max_handshakes = tls.per_source_max_handshakes;
    options.web_max_connections = tls.web_max_connections;
    options.web_per_source_max_connections = tls.web_per_source_max_connections;
    options.web_lifetime = tls.web_lifetime;
    options.web_idle_timeout = tls.web_idle_timeout;
    options.on_probe = env.on_probe;
    options.on_refused = env.on_refused;
    if (!tls.stealth_backend.empty()) {
      std::string_view backend = tls.stealth_backend;
      backend.remove_prefix(std::string_view("http://").size());
      if (!backend.empty() && backend.back() == '/') backend.remove_suffix(1);
      absl::StatusOr<HostPort> address = ParseHostPort(backend, /*allow_zero=*/false);
      if (!address.ok()) return address.status();
      options.stealth_backend = *std::move(address);
    }
    absl::StatusOr<std::unique_ptr<TlsTransport>> transport =
        TlsTransport::Create(std::move(options), env.logger);
    if (!transport.ok()) return transport.status();
    return std::unique_ptr<ServerTransport>(*std::move(transport));
  }
};

// quic://: the tls.* certificate, the quic.* settings.
class QuicFactory final : public ServerTransportFactory {
 public:
  std::string_view scheme() const override { return "quic"; }
  absl::StatusOr<std::unique_ptr<ServerTransport>> Create(const ServerTransportEnv& env,
                                                          const EndpointUrl& first) const override {
    const config::AgentConfig& config = env.config;
    QuicTransportOptions options;
    options.cert_path = config.tls.cert;
    options.key_path = config.tls.key;
    options.state_dir = config.state_dir;
    const std::string& host = first.address.host;
    bool wildcard = host.empty() || host == "*" || host == "0.0.0.0" || host == "::";
    options.cert_host = wildcard ? "localhost" : host;
    options.settings.stream_window = static_cast<uint64_t>(config.quic.stream_window);
    options.settings.idle_timeout = config.quic.idle_timeout;
    options.settings.max_udp_payload = static_cast<size_t>(config.quic.max_udp_payload);
    options.settings.congestion = config.quic.congestion_control == config::QuicCongestion::kCubic
                                      ? quic::QuicSettings::Congestion::kCubic
                                      : quic::QuicSettings::Congestion::kBbr;
    options.settings.handshake_timeout = config.limits.login_grace_time;
    options.retry = config.quic.retry == config::QuicRetry::kAlways  ? quic::RetryMode::kAlways
                    : config.quic.retry == config::QuicRetry::kNever ? quic::RetryMode::kNever
                                                                     : quic::RetryMode::kAuto;
    options.retry_threshold = config.quic.retry_threshold;
    options.count = env.on_quic_event;
    options.ended = env.on_quic_ended;
    absl::StatusOr<std::unique_ptr<QuicTransport>> transport =
        QuicTransport::Create(std::move(options), env.logger);
    if (!transport.ok()) return transport.status();
    return std::unique_ptr<ServerTransport>(*std::move(transport));
  }
};

}  // namespace

const ServerTransportFactory* FindServerTransport(std::string_view scheme) {
  // The registered transports; a new one adds its row here.
  static const TcpFactory kTcp;
  static const TlsFactory kTls;
  static const QuicFactory kQuic;
  static const ServerTransportFactory* const kFactories[] = {&kTcp, &kTls, &kQuic};
  for (const ServerTransportFactory* factory : kFactories) {
    if (factory->scheme() == scheme) return factory;
  }
  return nullptr;
}

}  // namespace alknet
