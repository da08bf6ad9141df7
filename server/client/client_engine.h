// The client role: one event-loop thread that runs every configured upstream (SOCKS5 and -L
// listeners, one SSH session each, -R). Knows no main(); the agent wires it up next to (or
// instead of) the ServerEngine.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "server/client/upstream.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/forward/outbound_connector.h"
#include "server/forward/resolver.h"
#include "server/http/status_server.h"
#include "server/loop/event_loop.h"
#include "server/metrics/engine_metrics.h"
#include "server/ssh/channel_relay.h"

namespace alknet {

class ClientEngine {
 public:
  struct Options {
    // Serve /metrics, /healthz and /readyz on config.metrics.listen (the `connect` command,
    // where no ServerEngine does it).
    bool serve_status = false;
  };
  ClientEngine(const config::AgentConfig& config, Logger& logger, EngineMetrics& metrics,
               Options options);
  ~ClientEngine();

  // Loads identities, binds every listener, then starts the loop thread. Any failure fails
  // the whole start (nothing keeps running).
  absl::Status Start();
  // Closes listeners and sessions and joins the thread. Idempotent.
  void Shutdown();

  // Readiness contribution: every upstream has its SSH session up.
  bool Ready() const;
  bool Healthy() const;
  std::string metrics_url() const { return status_server_ ? status_server_->bound_url() : ""; }

 private:
  config::AgentConfig config_;
  Logger& logger_;
  EngineMetrics& metrics_;
  Options options_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Resolver> resolver_;
  std::unique_ptr<OutboundConnector> connector_;
  std::unique_ptr<RelayScratch> scratch_ = std::make_unique<RelayScratch>();
  std::vector<std::unique_ptr<Upstream>> upstreams_;
  std::unique_ptr<http::StatusServer> status_server_;
  std::thread thread_;
  std::atomic<int64_t> last_heartbeat_ms_{0};
  bool started_ = false;
};

}  // namespace alknet
