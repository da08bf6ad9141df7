// The server transports by scheme: each registers a factory in transport_table.cc's table (tcp,
// tls), and the engine asks the table for each listener's scheme; it names no transport itself.
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/common/log.h"
#include "server/common/net_address.h"
#include "server/config/config.h"
#include "server/transport/transport.h"

namespace alknet {

// What a transport's factory gets from the engine: the configuration (a transport reads its own
// section, e.g. tls.*), the log, and the engine's hooks.
struct ServerTransportEnv {
  const config::AgentConfig& config;
  Logger& logger;
  // A client that never spoke SSH (TLS stealth: answered as a web server): its source is penalised.
  std::function<void(const StreamInfo& info)> on_probe;
  // A transport's own budget turned a connection away ("tls_handshakes", "web_connections").
  std::function<void(std::string_view budget)> on_refused;
  // A QUIC endpoint event ("handshake", "retry", ...): alknet_quic_events_total. Any thread.
  std::function<void(std::string_view event)> on_quic_event;
  // A QUIC connection ended: its smoothed RTT and last congestion window. Any thread.
  std::function<void(double rtt_seconds, double cwnd_bytes)> on_quic_ended;
};

class ServerTransportFactory {
 public:
  virtual ~ServerTransportFactory() = default;
  virtual std::string_view scheme() const = 0;
  // One transport serves every listener of its scheme; `first` is the first such listener (a
  // generated TLS certificate names its host). Errors name the file or field at fault.
  virtual absl::StatusOr<std::unique_ptr<ServerTransport>> Create(const ServerTransportEnv& env,
                                                                  const EndpointUrl& first) const = 0;
};

// The factory registered for `scheme`; null when no transport has that scheme.
const ServerTransportFactory* FindServerTransport(std::string_view scheme);

}  // namespace alknet
