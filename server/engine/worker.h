// One worker thread: an event loop that owns the SSH sessions handed to it and everything
// they use (libssh bind, relay scratch buffer, outbound connector). No session ever moves.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <libssh/server.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "server/auth/key_set.h"
#include "server/common/log.h"
#include "server/config/algorithms.h"
#include "server/engine/startup_limiter.h"
#include "server/forward/outbound_connector.h"
#include "server/loop/event_loop.h"
#include "server/loop/loop_heartbeat.h"
#include "server/ssh/channel_relay.h"
#include "server/ssh/ssh_server_session.h"
#include "server/transport/transport.h"

namespace alknet {

class Worker {
 public:
  static absl::StatusOr<std::unique_ptr<Worker>> Create(int index, Logger& logger,
                                                        auth::KeyStore& keys, Resolver& resolver,
                                                        EngineMetrics& metrics,
                                                        const std::vector<std::string>& host_keys,
                                                        const config::SshAlgorithms& algorithms,
                                                        SessionLimits limits);
  ~Worker();

  void StartThread();
  // Thread-safe: hands an accepted connection to this worker (its transport establishes it here).
  void Adopt(UniqueFd fd, StreamInfo info, ServerTransport& transport,
             std::unique_ptr<StartupTicket> ticket);
  // On this worker's loop: a stream its own transport endpoint established (QUIC), with the
  // max_startups slot taken when the connection arrived.
  void AdoptStream(ConnectedStream stream, std::shared_ptr<StartupTicket> ticket);
  // The worker's loop, for endpoints that run on it (QUIC). Lives as long as the worker.
  EventLoop& loop() { return *loop_; }
  // Thread-safe: stop taking channels, disconnect sessions as they go idle.
  void BeginShutdown();
  // Thread-safe: disconnect every remaining session now.
  void TerminateAll();
  // Thread-safe: stop the loop and join the thread (after TerminateAll).
  void Stop();

  // Thread-safe, blocking (never call from this worker's own thread): a snapshot of every
  // session, and disconnecting the sessions `match` selects (returns how many).
  std::vector<SessionSnapshot> Snapshot();
  int Kill(const std::function<bool(const SessionSnapshot&)>& match, std::string_view reason);
  // Thread-safe: limits for new sessions and for later channel opens of existing ones.
  void UpdateLimits(SessionLimits limits);
  // Before StartThread: where "alknet-admin" channels of admin-role keys connect.
  void SetAdminSocketPath(std::string path) { environment_.admin_socket_path = std::move(path); }
  // Before StartThread: trusted user CAs and revocations for certificate and key checks.
  void SetTrustStores(const auth::TrustStores* trust) { environment_.trust = trust; }
  // Before StartThread: the engine's rate limits (per-key and per-session rules, bandwidth).
  void SetRateLimiter(RateLimiter* limiter) { environment_.rate_limiter = limiter; }
  // Before StartThread: the forwarding policy every session reads per channel (ADR 0014).
  void SetForwardingPolicy(const fwd::ForwardingPolicyStore* store) { environment_.forwarding = store; }
  // Before StartThread: takes the pre-auth slot (max_startups) of a stream whose transport
  // took none at accept (TLS: at the SSH banner); nullptr refuses it (the callee logs why).
  using LateAdmission = std::function<std::unique_ptr<StartupTicket>(const StreamInfo&)>;
  void SetLateAdmission(LateAdmission admit) { late_admission_ = std::move(admit); }

  // Before StartThread: told how every session ended (not during shutdown), on this worker's
  // thread; the engine turns unauthenticated ends into per-source penalties.
  using SessionEnded = std::function<void(const StreamInfo&, SessionResult)>;
  void SetSessionEnded(SessionEnded ended) { session_ended_ = std::move(ended); }

  // Tests only, before StartThread: see LoopHeartbeat::SetTestHook.
  void SetHeartbeatTestHook(std::function<void()> hook) { heartbeat_.SetTestHook(std::move(hook)); }

  int session_count() const { return session_count_.load(); }
  // Milliseconds since the loop last ran its heartbeat timer (a stuck loop stops beating).
  int64_t millis_since_heartbeat() const;
  bool heartbeat_fresh() const { return heartbeat_.fresh(); }

 private:
  Worker(int index, Logger& logger, auth::KeyStore& keys, std::unique_ptr<EventLoop> loop,
         Resolver& resolver, EngineMetrics& metrics, SessionLimits limits);
  // Runs `task` on the loop and waits for it (or runs it inline once the loop has stopped).
  void RunOnLoop(const std::function<void()>& task);
  void StartSession(ConnectedStream stream, std::shared_ptr<StartupTicket> ticket);

  int index_;
  Logger& logger_;
  std::unique_ptr<EventLoop> loop_;
  ssh_bind bind_ = nullptr;
  std::unique_ptr<RelayScratch> scratch_ = std::make_unique<RelayScratch>();
  OutboundConnector connector_;
  ByteTally& byte_tally_;
  SessionEnvironment environment_;
  absl::flat_hash_map<SshServerSession*, std::unique_ptr<SshServerSession>> sessions_;
  LateAdmission late_admission_;
  SessionEnded session_ended_;
  bool shutting_down_ = false;
  std::atomic<int> session_count_{0};
  LoopHeartbeat heartbeat_;
  std::atomic<bool> loop_running_{false};
  std::thread thread_;
};

}  // namespace alknet
