// The quic:// server transport (ADR 0018): per-worker endpoints of one SO_REUSEPORT UDP group,
// the tls:// certificate (or the generated one) in GnuTLS, and a secret kept in the state
// directory for Retry and stateless reset tokens, so they survive a restart.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/common/log.h"
#include "server/quic/quic_endpoint.h"
#include "server/quic/quic_tls.h"
#include "server/transport/transport.h"

namespace alknet {

struct QuicTransportOptions {
  std::string cert_path;  // PEM chain; empty (with key_path): the generated tls:// pair
  std::string key_path;
  std::string state_dir;
  std::string cert_host = "localhost";
  quic::QuicSettings settings;
  quic::RetryMode retry = quic::RetryMode::kAuto;
  int retry_threshold = 16;
  // Counters of the endpoints ("handshake", "retry", ...), from any worker thread.
  std::function<void(std::string_view event)> count;
  // A connection's RTT (s) and congestion window (bytes) when it ended, from any worker thread.
  std::function<void(double rtt_seconds, double cwnd_bytes)> ended;
};

// <state_dir>/quic_secret: 32 random bytes made on first use (mode 0600), read afterwards.
absl::StatusOr<std::array<uint8_t, 32>> LoadOrCreateQuicSecret(const std::string& state_dir);

class QuicTransport final : public ServerTransport {
 public:
  static absl::StatusOr<std::unique_ptr<QuicTransport>> Create(QuicTransportOptions options,
                                                              Logger& logger);
  std::string_view name() const override { return "quic"; }
  bool datagram() const override { return true; }
  void Establish(EventLoop&, UniqueFd, StreamInfo,
                 std::function<void(absl::StatusOr<ConnectedStream>)> done) override {
    done(absl::UnimplementedError("quic takes no accepted connections"));
  }
  absl::StatusOr<std::unique_ptr<DatagramListener>> BindDatagram(const EndpointUrl& url,
                                                                 int workers,
                                                                 InheritedSockets* inherited) override;

 private:
  QuicTransport(QuicTransportOptions options, Logger& logger, quic::Credentials credentials,
                std::array<uint8_t, 32> secret)
      : options_(std::move(options)), logger_(logger), credentials_(std::move(credentials)),
        secret_(secret) {}

  QuicTransportOptions options_;
  Logger& logger_;
  quic::Credentials credentials_;
  std::array<uint8_t, 32> secret_;
};

}  // namespace alknet
