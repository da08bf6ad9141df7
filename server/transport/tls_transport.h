// TLS transport (tls:// listeners): OpenSSL on the worker loop, then a banner decision. An SSH
// client gets a socketpair whose other end this transport bridges to the TLS stream; anything
// else gets nginx's answers (stealth) or is proxied to an HTTP backend. See
// docs/adr/0006-tls-socketpair-bridge-and-stealth.md.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/log.h"
#include "server/common/net_address.h"
#include "server/transport/tls_context.h"
#include "server/transport/transport.h"

namespace alknet {

struct TlsTransportOptions {
  std::string cert_path;  // PEM chain; empty (with key_path): generated in state_dir
  std::string key_path;
  std::string state_dir;
  std::string cert_host = "localhost";  // CN/SAN of a generated certificate
  bool stealth = true;                   // false: every client goes straight to SSH
  absl::Duration stealth_timeout = absl::Seconds(10);  // banner wait, HTTP header/keep-alive idle
  absl::Duration handshake_timeout = absl::Seconds(10);
  std::optional<HostPort> stealth_backend;  // plain HTTP server for non-SSH clients
  TlsProfile profile = TlsProfile::kModern;  // what the handshake presents (tls_context.h)
};

class TlsConnection;

class TlsTransport final : public ServerTransport {
 public:
  // Loads (or generates) the certificate and resolves the backend; errors name the file.
  static absl::StatusOr<std::unique_ptr<TlsTransport>> Create(TlsTransportOptions options,
                                                              Logger& logger);
  // Deletes connections still open. Call only after every loop that ran them has stopped.
  ~TlsTransport() override;

  std::string_view name() const override { return "tls"; }
  void Establish(EventLoop& loop, UniqueFd accepted, StreamInfo info,
                 std::function<void(absl::StatusOr<ConnectedStream>)> done) override;

  TlsContextStore& contexts() { return *contexts_; }
  const TlsTransportOptions& options() const { return options_; }

 private:
  friend class TlsConnection;
  TlsTransport(TlsTransportOptions options, Logger& logger, std::unique_ptr<TlsContextStore> store)
      : options_(std::move(options)), logger_(logger), contexts_(std::move(store)) {}
  void Forget(TlsConnection* connection);

  TlsTransportOptions options_;
  Logger& logger_;
  std::unique_ptr<TlsContextStore> contexts_;
  sockaddr_storage backend_address_{};
  socklen_t backend_length_ = 0;
  absl::Mutex mu_;
  absl::flat_hash_set<TlsConnection*> live_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alknet
