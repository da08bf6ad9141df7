// One configured upstream of the client role: its local listeners (SOCKS5, -L), which stay
// bound for the agent's lifetime, the queue of connections waiting while (re)connecting, and
// the reconnect loop (exponential backoff with jitter) around one ClientSession at a time.
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
#include "server/client/client_session.h"
#include "server/client/socks5.h"
#include "server/client/stream_request.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/forward/outbound_connector.h"
#include "server/loop/event_loop.h"
#include "server/metrics/engine_metrics.h"
#include "server/ssh/channel_relay.h"

namespace alknet {

// A listening TCP socket on the client loop (host names resolved once, at bind time).
class LocalListener final : public FdHandler {
 public:
  using Accept = std::function<void(UniqueFd fd)>;
  static absl::StatusOr<std::unique_ptr<LocalListener>> Bind(const HostPort& address);
  ~LocalListener() override;
  absl::Status Start(EventLoop& loop, Accept on_accept);
  void Close();
  const HostPort& bound() const { return bound_; }
  void OnFdEvents(uint32_t events) override;

 private:
  LocalListener(UniqueFd fd, HostPort bound) : fd_(std::move(fd)), bound_(std::move(bound)) {}
  UniqueFd fd_;
  HostPort bound_;
  EventLoop* loop_ = nullptr;
  Accept on_accept_;
};

class Upstream {
 public:
  struct Shared {
    EventLoop& loop;
    Logger& logger;
    OutboundConnector& connector;
    RelayScratch& scratch;
    EngineMetrics& metrics;
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
  // Bound addresses (port 0 resolved), for logs and tests.
  std::vector<HostPort> socks5_bound() const;
  std::vector<HostPort> local_forward_bound() const;

 private:
  class Socks5Client;
  Upstream(Shared shared, const config::UpstreamConfig& config);

  void Connect();
  void OnReady();
  void OnLost(SessionLoss loss, std::vector<std::unique_ptr<StreamRequest>> unanswered);
  void ScheduleReconnect();
  void Submit(std::unique_ptr<StreamRequest> request);
  void SweepWaiting();
  void OnSocksAccepted(UniqueFd fd);
  void OnLocalForwardAccepted(size_t index, UniqueFd fd);
  void Socks5Done(Socks5Client* client, std::unique_ptr<StreamRequest> request);

  Shared shared_;
  config::UpstreamConfig config_;
  ssh_key identity_ = nullptr;
  std::string user_;
  std::unique_ptr<ClientSessionEnv> env_;
  EngineMetrics::UpstreamSeries series_;

  std::unique_ptr<LocalListener> socks5_;
  std::vector<std::unique_ptr<LocalListener>> local_forwards_;
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
