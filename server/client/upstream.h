// One configured upstream of the client role: its forwards (SOCKS5 -D and -L listeners, which
// stay bound across reconnects; -R forwards, asked of every new session), the queue of
// connections waiting while (re)connecting, and the reconnect loop (exponential backoff with
// jitter) around one ClientSession at a time. Forwards come from the configuration and, at
// run time, from the admin API (AddForward/RemoveForward).
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <libssh/libssh.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "server/client/backoff.h"
#include "server/client/forward.h"
#include "server/client/client_session.h"
#include "server/client/socks5.h"
#include "server/client/stream_request.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/forward/outbound_connector.h"
#include "server/loop/accept_loop.h"
#include "server/loop/event_loop.h"
#include "server/metrics/engine_metrics.h"
#include "server/ssh/channel_relay.h"

namespace alknet {

// A listening TCP socket on the client loop (host names resolved once, at bind time).
class LocalListener final {
 public:
  using Accept = std::function<void(UniqueFd fd)>;
  static absl::StatusOr<std::unique_ptr<LocalListener>> Bind(const HostPort& address);
  ~LocalListener();
  absl::Status Start(EventLoop& loop, Accept on_accept);
  void Close();
  const HostPort& bound() const { return bound_; }

 private:
  LocalListener(UniqueFd fd, HostPort bound) : fd_(std::move(fd)), bound_(std::move(bound)) {}
  UniqueFd fd_;
  HostPort bound_;
  std::unique_ptr<AcceptLoop> accept_;
};

class Upstream {
 public:
  struct Shared {
    EventLoop& loop;
    Logger& logger;
    OutboundConnector& connector;
    RelayScratch& scratch;
    EngineMetrics& metrics;
    const config::SshAlgorithms& algorithms;  // ssh.* lists every session proposes
  };

  // Loads the identity and binds every listener (synchronously: errors fail the agent's start).
  static absl::StatusOr<std::unique_ptr<Upstream>> Create(Shared shared,
                                                          const config::UpstreamConfig& config);
  ~Upstream();

  // Loop thread: starts listening and the first connection attempt.
  void Start();
  // Loop thread: closes listeners and the session; no reconnect afterwards.
  void Stop();

  bool connected() const { return connected_.load(); }
  const std::string& name() const { return config_.name; }

  // Loop thread. Adds a forward: -D/-L bind at once (a bind error is returned, except with
  // `keep_if_unbound`, which keeps the forward and retries the bind every few seconds, as on a
  // restart); -R is asked of the session now, or of the next one.
  absl::StatusOr<ForwardSnapshot> AddForward(ForwardDef def, bool keep_if_unbound = false);
  // Loop thread. Closes a -D/-L listener or cancels a -R forward; open connections stay.
  bool RemoveForward(const std::string& id);
  bool HasForward(const std::string& id) const;
  std::vector<ForwardSnapshot> ListForwards() const;

 private:
  class Socks5Client;
  struct Forward {
    ForwardDef def;
    std::unique_ptr<LocalListener> listener;  // -D, -L
    std::shared_ptr<ForwardStatus> status = std::make_shared<ForwardStatus>();
  };
  Upstream(Shared shared, const config::UpstreamConfig& config);

  void Connect();
  void OnReady();
  void OnLost(SessionLoss loss, std::vector<std::unique_ptr<StreamRequest>> unanswered);
  void ScheduleReconnect();
  void Submit(std::unique_ptr<StreamRequest> request);
  void SweepWaiting();
  // Binds (-D, -L) and starts listening once started; false with status->last_error set.
  absl::Status Listen(Forward& forward);
  void StartListening(Forward& forward);
  void RetryUnbound();
  void SetIdleStates();
  Forward* Find(const std::string& id) const;
  ForwardSnapshot Snapshot(const Forward& forward) const;
  void OnSocksAccepted(Forward& forward, UniqueFd fd);
  void OnLocalForwardAccepted(Forward& forward, UniqueFd fd);
  void Socks5Done(Socks5Client* client, std::unique_ptr<StreamRequest> request);

  Shared shared_;
  config::UpstreamConfig config_;
  ssh_key identity_ = nullptr;
  std::string user_;
  std::unique_ptr<ClientSessionEnv> env_;
  EngineMetrics::UpstreamSeries series_;

  std::vector<std::unique_ptr<Forward>> forwards_;
  bool started_ = false;
  int sweeps_ = 0;
  absl::flat_hash_map<Socks5Client*, std::unique_ptr<Socks5Client>> negotiating_;
  static constexpr size_t kMaxNegotiating = 1024;

  std::unique_ptr<ClientSession> session_;
  std::deque<std::unique_ptr<StreamRequest>> waiting_;
  Backoff backoff_;
  int attempt_ = 0;
  bool ever_connected_ = false;
  bool stopped_ = false;
  EventLoop::TimerId reconnect_timer_ = 0;
  EventLoop::TimerId sweep_timer_ = 0;
  std::atomic<bool> connected_{false};
};

}  // namespace alknet
