// The client role: one event-loop thread that runs every configured upstream (SOCKS5 and -L
// listeners, one SSH session each, -R). Knows no main(); the agent wires it up next to (or
// instead of) the ServerEngine.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/client/forward.h"
#include "server/client/upstream.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/forward/outbound_connector.h"
#include "server/forward/resolver.h"
#include "server/http/status_server.h"
#include "server/loop/event_loop.h"
#include "server/loop/loop_heartbeat.h"
#include "server/metrics/engine_metrics.h"
#include "server/ssh/channel_relay.h"

namespace alknet {

class ClientEngine {
 public:
  struct Options {
    // Serve /metrics, /healthz and /readyz on config.metrics.listen (the `connect` command,
    // where no ServerEngine does it).
    bool serve_status = false;
    // Tests only: runs on the client loop at every heartbeat (a hook that blocks stalls the
    // loop; see LoopHeartbeat::SetTestHook).
    std::function<void()> heartbeat_test_hook;
  };
  ClientEngine(const config::AgentConfig& config, Logger& logger, EngineMetrics& metrics,
               Options options);
  ~ClientEngine();

  // Loads identities, binds every listener, then starts the loop thread. Any failure fails
  // the whole start (nothing keeps running).
  absl::Status Start();
  // Closes listeners and sessions and joins the thread. Idempotent.
  void Shutdown();

  // Readiness contribution: the loop is alive (Healthy) and every upstream has its SSH session
  // up. The "connected" flags are written by the loop, so a stuck loop would leave them true:
  // readiness needs a fresh heartbeat too. Thread-safe.
  bool Ready() const;
  // The client loop ran its heartbeat within LoopHeartbeat::kStaleMillis (true when the loop
  // is not running: before Start and after Shutdown nothing can be stuck). Thread-safe.
  bool Healthy() const;

  // Forwards at run time (the admin API). Call from any thread but the loop's; each call runs
  // on the loop and waits for it. FAILED_PRECONDITION when the engine is not running.
  std::vector<std::string> upstream_names() const;
  // NOT_FOUND for an unknown upstream, ALREADY_EXISTS for a taken id or listen address.
  absl::StatusOr<ForwardSnapshot> AddForward(const std::string& upstream, ForwardDef def,
                                             bool keep_if_unbound = false);
  absl::Status RemoveForward(const std::string& id);
  absl::StatusOr<std::vector<ForwardSnapshot>> ListForwards();
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
  LoopHeartbeat heartbeat_;
  bool started_ = false;
  // Ready()/Healthy() from other threads: the loop runs, and upstreams_ is not being built or
  // cleared (ready_mu_ guards the vector itself, never held while waiting for the loop).
  mutable absl::Mutex ready_mu_;
  bool loop_running_ ABSL_GUARDED_BY(ready_mu_) = false;

  // Runs `task` on the loop and waits; held shared so Shutdown waits for calls in flight.
  absl::Status RunOnLoop(absl::AnyInvocable<void()> task);
  mutable absl::Mutex api_mu_;
  bool running_ ABSL_GUARDED_BY(api_mu_) = false;
};

}  // namespace alknet
