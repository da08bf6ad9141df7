// TLS transport (tls:// listeners): OpenSSL on the worker loop, then a banner decision. An SSH
// client gets a socketpair whose other end this transport bridges to the TLS stream; anything
// else gets nginx's answers (stealth) or is proxied to an HTTP backend. See
// docs/adr/0006-tls-socketpair-bridge-and-stealth.md.
#pragma once

#include <sys/socket.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/connection_budget.h"
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
  // Connections before the SSH/web decision (handshake + banner wait), total and per source
  // (IPv6 per /64). They hold no max_startups slot: the engine takes that at the SSH banner.
  int max_handshakes = 200;
  int per_source_max_handshakes = 10;
  // Web-looking connections (nginx imitation or backend relay), total and per source.
  int web_max_connections = 256;
  int web_per_source_max_connections = 10;
  absl::Duration web_lifetime = absl::Minutes(5);  // from the web decision on, busy or not
  // Backend relay: no byte either way for this long closes it; also caps the imitation's
  // keep-alive wait (otherwise stealth_timeout).
  absl::Duration web_idle_timeout = absl::Minutes(1);
  // A connection turned away by a budget: "tls_handshakes" or "web_connections" (a metric).
  std::function<void(std::string_view budget)> on_refused;
  // A client that sent something other than an SSH banner (answered as a web server or relayed
  // to the backend): its source, for per-source penalties (the `probe` event).
  std::function<void(const StreamInfo& info)> on_probe;
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
  // The max_startups slot is taken when the SSH banner arrives, not at accept.
  bool startup_slot_at_accept() const override { return false; }
  void Establish(EventLoop& loop, UniqueFd accepted, StreamInfo info,
                 std::function<void(absl::StatusOr<ConnectedStream>)> done) override;

  TlsContextStore& contexts() { return *contexts_; }
  const TlsTransportOptions& options() const { return options_; }

 private:
  friend class TlsConnection;
  TlsTransport(TlsTransportOptions options, Logger& logger, std::unique_ptr<TlsContextStore> store)
      : options_(std::move(options)), logger_(logger), contexts_(std::move(store)),
        handshakes_(options_.max_handshakes, options_.per_source_max_handshakes),
        web_(options_.web_max_connections, options_.web_per_source_max_connections) {}
  void Forget(TlsConnection* connection);
  // A slot of `budget` for `info`'s source, or nullptr (logged at debug level and counted).
  std::unique_ptr<BudgetTicket> Admit(ConnectionBudget& budget, std::string_view name,
                                      const StreamInfo& info);

  TlsTransportOptions options_;
  Logger& logger_;
  std::unique_ptr<TlsContextStore> contexts_;
  sockaddr_storage backend_address_{};
  socklen_t backend_length_ = 0;
  ConnectionBudget handshakes_;  // before the SSH/web decision
  ConnectionBudget web_;         // nginx imitation and backend relay
  absl::Mutex mu_;
  absl::flat_hash_set<TlsConnection*> live_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alknet
