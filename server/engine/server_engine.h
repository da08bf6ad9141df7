// The tunnel engine: listeners on an acceptor loop, a fixed pool of worker loops, the shared
// key store and pre-auth limiter. Knows no gRPC and no main(); the agent wires it up.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/auth/key_set.h"
#include "server/common/rate_limiter.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/engine/source_penalties.h"
#include "server/engine/startup_limiter.h"
#include "server/engine/worker.h"
#include "server/forward/resolver.h"
#include "server/http/status_server.h"
#include "server/loop/event_loop.h"
#include "server/metrics/engine_metrics.h"
#include "server/transport/listener.h"
#include "server/transport/transport_table.h"

namespace alknet {

class ServerEngine {
 public:
  // `keys` is shared with whoever reloads it (SIGHUP, later the admin API); `metrics` owns the
  // registry the status endpoint serves.
  ServerEngine(const config::AgentConfig& config, Logger& logger, auth::KeyStore& keys,
               EngineMetrics& metrics);
  ~ServerEngine();

  // Before Start(): trusted user CAs and revocation lists (owned and reloaded by the caller,
  // like `keys`). Without it certificates only work through cert-authority lines.
  void SetTrustStores(const auth::TrustStores* trust) { trust_ = trust; }

  // Before Start(): sockets passed in by systemd or by the process this one upgrades. Each
  // listener adopts the one bound to its address; one left over fails Start() (a unit that
  // passes a socket nobody serves is a mistake to report, not to ignore).
  void SetInheritedSockets(InheritedSockets* inherited) { inherited_ = inherited; }

  // Binds every listener and starts the workers. Any bind failure fails the whole start.
  absl::Status Start();

  // The listening sockets with their LISTEN_FDNAMES names, for handing them to a new binary
  // (binary upgrade), in the order they must be inherited: TCP listeners, then each quic://
  // listener's UDP sockets, worker 0 first, each followed by its upgrade link. Valid until
  // StopAccepting() or Shutdown(). Call from the controlling thread.
  std::vector<std::pair<int, std::string>> listen_fds() const;
  // Binary upgrade, once the new process serves: closes this process's listeners (the sockets
  // live on in the new process, so no connection is refused) and leaves the sessions running.
  // /readyz turns 503, alknet_listener_up 0. Blocking; from the controlling thread.
  void StopAccepting();
  // Binary upgrade: the new process binds the metrics/health address, so this one lets it go
  // first (CloseStatusServer) and binds it again if the upgrade fails (ReopenStatusServer).
  void CloseStatusServer();
  absl::Status ReopenStatusServer();

  // Stops accepting, lets open channels finish up to `grace`, then disconnects the rest and
  // stops every thread. Blocking; call from the controlling thread.
  void Shutdown(absl::Duration grace);

  std::vector<EndpointUrl> bound_endpoints() const;

  // Admin hooks (thread-safe, blocking; not for worker threads).
  std::vector<SessionSnapshot> ListSessions() const;
  int KillSessions(const std::function<bool(const SessionSnapshot&)>& match, std::string_view reason);
  // Takes effect at once: pre-auth caps for new connections, grace time for new sessions,
  // channel caps and connect timeouts for every later channel open.
  void UpdateLimits(const config::Limits& limits);
  config::Limits limits() const;
  // rate_limits (issue 15): new connections, sessions and channels, and the bandwidth of
  // running transfers, at once. Thread-safe.
  void UpdateRateLimits(const config::RateLimits& rate_limits);
  config::RateLimits rate_limits() const;
  // The forwarding policy (ADR 0014): replaced whole, read by the next channel open or -R
  // request of every session. The getter returns it as set (without the self rules).
  void UpdateForwarding(fwd::ForwardingPolicy policy);
  fwd::ForwardingPolicy forwarding() const;
  // Per-source penalties' settings (ADR 0013): the next event and check; entries keep their time.
  void UpdatePenalties(const config::PenaltiesConfig& penalties);
  // Every policy section of `policy` (limits, penalties, rate_limits, forwarding) at once, from
  // the admin API or a reload; a forwarding policy equal to the one in force is left alone.
  void UpdatePolicy(const config::AgentConfig& policy);
  // The policy in force, self rules included (for `policy test`). Thread-safe.
  std::shared_ptr<const fwd::CompiledPolicy> forwarding_in_force() const { return forwarding_.Current(); }
  int active_sessions() const;
  int unauthenticated() const { return limiter_.unauthenticated(); }
  // /readyz: started, not draining, every listener accepting (none paused for lack of
  // descriptors or memory, see AcceptLoop::starved), and every added readiness check.
  // Thread-safe.
  bool Ready() const;
  // Another role's readiness joins /readyz (e.g. the client role: upstreams connected). Call
  // before Start(); the check runs on the acceptor thread and must be thread-safe.
  void AddReadinessCheck(std::function<bool()> check) { readiness_checks_.push_back(std::move(check)); }
  // /healthz: every worker loop ran its heartbeat recently, and every added health check (e.g.
  // the client role's loop heartbeat). Thread-safe.
  bool Healthy() const;
  // Another role's liveness joins /healthz. Same rules as AddReadinessCheck.
  void AddHealthCheck(std::function<bool()> check) { health_checks_.push_back(std::move(check)); }

  // Tests only, before Start(): runs on worker `index`'s loop at every heartbeat (a hook that
  // blocks stalls that loop; see LoopHeartbeat::SetTestHook).
  void SetWorkerHeartbeatTestHook(std::function<void(int index)> hook) {
    worker_heartbeat_test_hook_ = std::move(hook);
  }
  // Per-source penalties (ADR 0013): listed, cleared and reconfigured by the admin API.
  SourcePenalties& penalties() { return penalties_; }
  std::string metrics_url() const { return status_server_ ? status_server_->bound_url() : ""; }

 private:
  // Closes every SSH listener on the acceptor loop and waits; listener_up goes to 0. QUIC
  // endpoints stop accepting, or, `handed_over` to a new binary, stop reading their sockets.
  void CloseListeners(bool handed_over);
  void OnAccept(UniqueFd fd, StreamInfo info, ServerTransport& transport);
  // Per-source penalties, the connection rate and max_sessions, for any new connection (stream
  // or datagram). False: refused (counted and logged). Thread-safe.
  bool AdmitConnection(const StreamInfo& info);
  // A max_startups slot for `info`'s source, or nullptr after counting and logging the refusal.
  // Thread-safe: the acceptor calls it at accept, workers when a TLS stream turns out SSH.
  std::unique_ptr<StartupTicket> AdmitStartup(const StreamInfo& info);
  // The transport for a listener's scheme (tcp, tls), creating the TLS one on first use.
  absl::StatusOr<ServerTransport*> TransportFor(const EndpointUrl& url);

  std::string RenderMetrics();

  config::AgentConfig config_;
  Logger& logger_;
  auth::KeyStore& keys_;
  EngineMetrics& metrics_;
  std::unique_ptr<http::StatusServer> status_server_;
  std::vector<prometheus::Gauge*> listener_up_;
  std::atomic<bool> ready_{false};
  // Listeners whose accepting is paused for lack of descriptors or memory (acceptor thread
  // writes, anyone reads).
  std::atomic<int> starved_listeners_{0};
  std::vector<std::function<bool()>> readiness_checks_;
  std::vector<std::function<bool()>> health_checks_;
  std::function<void(int index)> worker_heartbeat_test_hook_;
  StartupLimiter limiter_;
  // rate_limits: shared by the acceptor (conn-rate) and every worker (per-key, per-session).
  SteadyClock clock_;
  RateLimiter rate_limiter_;
  SourcePenalties penalties_;
  std::unique_ptr<Resolver> resolver_;
  // One transport per scheme in use, made from the transport table (transport_table.h) for the
  // first listener of its scheme; outlive the workers (declared before them).
  absl::flat_hash_map<std::string, std::unique_ptr<ServerTransport>> transports_;
  std::unique_ptr<EventLoop> acceptor_loop_;
  std::thread acceptor_thread_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<Worker>> workers_;
  // quic:// listeners: endpoints on the worker loops (destroyed before the workers).
  std::vector<std::unique_ptr<DatagramListener>> datagram_listeners_;
  std::vector<prometheus::Gauge*> datagram_up_;
  size_t next_worker_ = 0;
  std::atomic<int> max_sessions_{0};
  mutable absl::Mutex limits_mu_;
  bool started_ = false;
  const auth::TrustStores* trust_ = nullptr;
  InheritedSockets* inherited_ = nullptr;
  // Built-in denies of the agent's own listeners (set at Start), and the policy in force.
  std::vector<fwd::ForwardRule> self_rules_;
  fwd::ForwardingPolicyStore forwarding_;
};

}  // namespace alknet
