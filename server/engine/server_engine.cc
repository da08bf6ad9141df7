// The tunnel engine: listeners on an acceptor loop, a fixed pool of worker loops.
#include "server/engine/server_engine.h"

#include <algorithm>
#include <chrono>
#include <future>

#include <prometheus/text_serializer.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/listen_fds.h"
#include "server/config/rate_units.h"
#include "server/common/strings.h"
#include "server/ssh/host_key.h"
#include "server/ssh/rate_rejections.h"

namespace alknet {

namespace {
SessionLimits ToSessionLimits(const config::Limits& limits) {
  SessionLimits session;
  session.login_grace_time = limits.login_grace_time;
  session.max_channels = limits.max_channels_per_session;
  session.connect_timeout = limits.connect_timeout;
  return session;
}

// The configured lists, except that the default host key list gains the algorithm of each
// ECDSA host key (ECDSA is offered only when such a key is configured). A host key that no
// listed algorithm can use is reported: clients will never see it.
config::SshAlgorithms OfferedAlgorithms(const config::SshAlgorithms& configured,
                                        const std::vector<HostKeyInfo>& host_keys, Logger& logger) {
  config::SshAlgorithms offered = configured;
  std::vector<std::string>& list = offered.host_key_algorithms;
  bool is_default =
      configured.host_key_algorithms == config::DefaultAlgorithms(config::AlgorithmKind::kHostKeys);
  for (const HostKeyInfo& key : host_keys) {
    if (is_default && key.type.rfind("ecdsa-sha2-", 0) == 0 &&
        std::find(list.begin(), list.end(), key.type) == list.end()) {
      list.push_back(key.type);
    }
    bool usable = key.type == "ssh-rsa"
                      ? std::any_of(list.begin(), list.end(),
                                    [](const std::string& a) {
                                      return a == "rsa-sha2-512" || a == "rsa-sha2-256" ||
                                             a == "ssh-rsa";
                                    })
                      : std::find(list.begin(), list.end(), key.type) != list.end();
    if (!usable) {
      logger.Warn("engine", "host key not offered: no algorithm in ssh.host_key_algorithms uses it",
                  {{"path", key.path}, {"type", key.type}});
    }
  }
  return offered;
}
SourcePenaltyOptions ToPenaltyOptions(const config::PenaltiesConfig& config) {
  SourcePenaltyOptions options;
  options.enabled = config.enabled;
  options.authfail = config.authfail;
  options.noauth = config.noauth;
  options.grace_exceeded = config.grace_exceeded;
  options.probe = config.probe;
  options.min = config.min;
  options.max = config.max;
  options.max_sources = config.max_sources;
  options.overflow =
      config.overflow == "deny-all" ? PenaltyOverflow::kDenyAll : PenaltyOverflow::kPermissive;
  options.ipv4_netblock = config.ipv4_netblock;
  options.ipv6_netblock = config.ipv6_netblock;
  for (const std::string& entry : config.exempt) {
    absl::StatusOr<Netblock> block = ParseCidr(entry);
    if (block.ok()) options.exempt.push_back(*block);  // the schema checked every entry
  }
  return options;
}
}  // namespace

ServerEngine::ServerEngine(const config::AgentConfig& config, Logger& logger, auth::KeyStore& keys,
                           EngineMetrics& metrics)
    : config_(config), logger_(logger), keys_(keys), metrics_(metrics),
      limiter_(config.limits.max_startups, config.limits.per_source_max_startups),
      rate_limiter_(clock_, config::ToRateLimitSettings(config.rate_limits)),
      penalties_(ToPenaltyOptions(config.penalties)),
      max_sessions_(config.limits.max_sessions) {}

ServerEngine::~ServerEngine() {
  if (started_) Shutdown(absl::ZeroDuration());
}

absl::Status ServerEngine::Start() {
  auto host_keys = LoadOrCreateHostKeys(config_.host_keys);
  if (!host_keys.ok()) return host_keys.status();
  for (const HostKeyInfo& key : *host_keys) {
    logger_.Info("engine", key.generated ? "generated host key" : "loaded host key",
                 {{"path", key.path}, {"type", key.type}, {"fingerprint", key.fingerprint}});
  }
  config::SshAlgorithms algorithms = OfferedAlgorithms(config_.ssh, *host_keys, logger_);

  auto acceptor_loop = EventLoop::Create();
  if (!acceptor_loop.ok()) return acceptor_loop.status();
  acceptor_loop_ = *std::move(acceptor_loop);

  int worker_count = config_.workers > 0 ? config_.workers : 1;
  std::vector<EndpointUrl> stream_urls;
  for (const EndpointUrl& url : config_.listen) {
    absl::StatusOr<ServerTransport*> transport = TransportFor(url);
    if (!transport.ok()) return transport.status();
    if ((*transport)->datagram()) {
      // QUIC: one UDP socket per worker, each served on its worker's loop.
      auto listener = (*transport)->BindDatagram(url, worker_count, inherited_);
      if (!listener.ok()) return listener.status();
      datagram_listeners_.push_back(*std::move(listener));
      continue;
    }
    stream_urls.push_back(url);
    auto listener = Listener::Bind(url, **transport, inherited_);
    if (!listener.ok()) return listener.status();
    if ((*listener)->adopted()) {
      logger_.Info("engine", "adopted inherited listening socket",
                   {{"address", (*listener)->bound().ToString()}});
    }
    listeners_.push_back(*std::move(listener));
  }
  if (inherited_ != nullptr && !inherited_->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LISTEN_FDS: ", inherited_->size(),
        " inherited socket(s) match no configured listener (check --listen / listen:): ",
        inherited_->DescribeRemaining()));
  }

  if (config_.metrics.listen) {
    auto status_server = http::StatusServer::BindOrFallBack(*config_.metrics.listen,
                                                             config_.metrics.listen_explicit, logger_);
    if (!status_server.ok()) return status_server.status();
    status_server_ = *std::move(status_server);
  }
  for (const EndpointUrl& url : stream_urls) listener_up_.push_back(&metrics_.ListenerUp(url.ToString()));
  // The forwarding policy's self rules: channels never reach the agent's own metrics or TCP
  // admin listener (unless the operator's rules allow them first, or default_rules is off).
  if (status_server_ != nullptr) {
    std::string_view url = status_server_->bound_url();  // "http://host:port"
    if (absl::StartsWith(Sv(url), "http://")) url.remove_prefix(7);
    if (size_t colon = url.rfind(':'); colon != std::string_view::npos) {
      std::string_view host = url.substr(0, colon);
      if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
      uint32_t port = 0;
      if (absl::SimpleAtoi(Sv(url.substr(colon + 1)), &port) && port <= 65535) {
        if (auto rule = fwd::SelfRule("builtin:metrics", host, static_cast<uint16_t>(port))) {
          self_rules_.push_back(*std::move(rule));
        }
      }
    }
  }
  if (config_.admin.listen) {
    if (auto rule = fwd::SelfRule("builtin:admin", config_.admin.listen->host, config_.admin.listen->port)) {
      self_rules_.push_back(*std::move(rule));
    }
  }
  UpdateForwarding(config_.forwarding);

  // Name resolution for every session: fair per-session queues, at most 16 pending per session
  // and 64 per key, a key holds at most half the threads, each lookup answered within 5 s.
  resolver_ = std::make_unique<Resolver>(ResolverOptions{.threads = 4});
  SessionLimits limits = ToSessionLimits(config_.limits);
  for (int i = 0; i < worker_count; ++i) {
    auto worker = Worker::Create(i, logger_, keys_, *resolver_, metrics_, config_.host_keys,
                                 algorithms, limits);
    if (!worker.ok()) return worker.status();
    (*worker)->SetAdminSocketPath(config_.admin.socket);
    (*worker)->SetTrustStores(trust_);
    (*worker)->SetRateLimiter(&rate_limiter_);
    (*worker)->SetForwardingPolicy(&forwarding_);
    if (worker_heartbeat_test_hook_) {
      (*worker)->SetHeartbeatTestHook([hook = worker_heartbeat_test_hook_, i] { hook(i); });
    }
    (*worker)->SetLateAdmission([this](const StreamInfo& info) { return AdmitStartup(info); });
    (*worker)->SetSessionEnded([this](const StreamInfo& info, SessionResult result) {
      switch (result) {
        case SessionResult::kAuthenticated: return;
        case SessionResult::kAuthFailed: penalties_.Penalise(info.peer.ip, PenaltyEvent::kAuthFail); return;
        case SessionResult::kLoginTimeout:
          penalties_.Penalise(info.peer.ip, PenaltyEvent::kGraceExceeded);
          return;
        case SessionResult::kClosedBeforeAuth:
        case SessionResult::kCount:
          penalties_.Penalise(info.peer.ip, PenaltyEvent::kNoAuth);
          return;
      }
    });
    workers_.push_back(*std::move(worker));
  }
  std::vector<EventLoop*> worker_loops;
  for (auto& worker : workers_) worker_loops.push_back(&worker->loop());
  for (auto& listener : datagram_listeners_) {
    DatagramHooks hooks{
        .admit = [this](const StreamInfo& info) -> std::shared_ptr<void> {
          if (!AdmitConnection(info)) return nullptr;
          return std::shared_ptr<StartupTicket>(AdmitStartup(info));
        },
        .deliver = [this](int worker, ConnectedStream stream, std::shared_ptr<void> admission) {
          workers_[worker]->AdoptStream(std::move(stream),
                                        std::static_pointer_cast<StartupTicket>(std::move(admission)));
        }};
    if (absl::Status started = listener->Start(worker_loops, std::move(hooks)); !started.ok()) {
      return started;
    }
    prometheus::Gauge& up = metrics_.ListenerUp(listener->bound().ToString());
    up.Set(1);
    datagram_up_.push_back(&up);
    logger_.Info("engine", "listening", {{"address", listener->bound().ToString()}});
  }
  for (auto& worker : workers_) worker->StartThread();

  for (size_t i = 0; i < listeners_.size(); ++i) {
    Listener* listener = listeners_[i].get();
    prometheus::Gauge* up = listener_up_[i];
    absl::Status started = listener->Start(
        *acceptor_loop_,
        [this](UniqueFd fd, StreamInfo info, ServerTransport& transport) {
          OnAccept(std::move(fd), std::move(info), transport);
        },
        [this, listener, up](bool starved) {
          // Out of descriptors or memory: not ready, and alknet_listener_up says which one.
          starved_listeners_ += starved ? 1 : -1;
          up->Set(starved ? 0 : 1);
          if (starved) {
            logger_.Warn("engine", "listener paused: out of descriptors or memory",
                         {{"address", listener->bound().ToString()}});
          } else {
            logger_.Info("engine", "listener accepting again", {{"address", listener->bound().ToString()}});
          }
        });
    if (!started.ok()) return started;
    logger_.Info("engine", "listening", {{"address", listener->bound().ToString()}});
  }
  for (prometheus::Gauge* up : listener_up_) up->Set(1);
  if (status_server_) {
    absl::Status started = status_server_->Start(
        *acceptor_loop_, {.metrics = [this] { return RenderMetrics(); },
                          .healthy = [this] { return Healthy(); },
                          .ready = [this] { return Ready(); }});
    if (!started.ok()) return started;
    logger_.Info("metrics", "listening", {{"address", status_server_->bound_url()}});
  }
  acceptor_thread_ = std::thread([this] { acceptor_loop_->Run(); });
  started_ = true;
  ready_ = true;
  logger_.Info("engine", "started", {{"workers", absl::StrCat(workers_.size())}});
  return absl::OkStatus();
}

absl::StatusOr<ServerTransport*> ServerEngine::TransportFor(const EndpointUrl& url) {
  if (auto made = transports_.find(url.scheme); made != transports_.end()) return made->second.get();
  const ServerTransportFactory* factory = FindServerTransport(url.scheme);
  if (factory == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("listen ", url.ToString(), ": no transport"));
  }
  ServerTransportEnv env{
      .config = config_,
      .logger = logger_,
      .on_probe = [this](const StreamInfo& info) {
        penalties_.Penalise(info.peer.ip, PenaltyEvent::kProbe);
      },
      .on_refused = [this](std::string_view budget) {
        metrics_.Rejected(budget == "web_connections" ? RejectReason::kWebConnections
                                                      : RejectReason::kTlsHandshakes);
      },
      .on_quic_event = [this](std::string_view event) { metrics_.QuicEvent(event); },
      .on_quic_ended = [this](double rtt_seconds, double cwnd_bytes) {
        metrics_.QuicConnectionEnded(rtt_seconds, cwnd_bytes);
      }};
  absl::StatusOr<std::unique_ptr<ServerTransport>> transport = factory->Create(env, url);
  if (!transport.ok()) return transport.status();
  ServerTransport* made = transport->get();
  transports_.emplace(url.scheme, *std::move(transport));
  return made;
}

void ServerEngine::OnAccept(UniqueFd fd, StreamInfo info, ServerTransport& transport) {
  if (!AdmitConnection(info)) return;
  // TLS takes its slot at the SSH banner (its handshake and banner wait have their own budget,
  // so web-looking traffic never holds one).
  std::unique_ptr<StartupTicket> ticket;
  if (transport.startup_slot_at_accept()) {
    ticket = AdmitStartup(info);
    if (ticket == nullptr) return;
  }
  // Least-loaded worker, ties broken round-robin.
  size_t best = next_worker_++ % workers_.size();
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i]->session_count() < workers_[best]->session_count()) best = i;
  }
  workers_[best]->Adopt(std::move(fd), std::move(info), transport, std::move(ticket));
}

bool ServerEngine::AdmitConnection(const StreamInfo& info) {
  // A penalised source is closed before any byte (banner or TLS handshake), like sshd.
  if (PenaltyCheck penalty = penalties_.Check(info.peer.ip); penalty.refused) {
    metrics_.Rejected(RejectReason::kPenalty);
    if (penalty.log) {
      logger_.Warn("engine", "connection refused",
                   {{"src", info.peer.ip}, {"port", absl::StrCat(info.peer.port)},
                    {"transport", info.transport},
                    {"reason", penalty.overflow ? "penalty-table-full" : "penalty"}});
    }
    return false;
  }
  // rate_limits.connections_per_source: closed before any byte (no banner, no TLS handshake).
  if (!rate_limiter_.AdmitConnection(info.peer.ip)) {
    RecordRateRejection(logger_, metrics_, rate_limiter_, kConnRateRejection, info);
    return false;
  }
  int max_sessions = max_sessions_.load();
  if (max_sessions > 0 && active_sessions() >= max_sessions) {
    metrics_.Rejected(RejectReason::kMaxSessions);
    logger_.Warn("engine", "connection refused",
                 {{"src", info.peer.ip}, {"port", absl::StrCat(info.peer.port)},
                  {"reason", "max-sessions"}});
    return false;
  }
  return true;
}

std::unique_ptr<StartupTicket> ServerEngine::AdmitStartup(const StreamInfo& info) {
  StartupVerdict verdict;
  std::unique_ptr<StartupTicket> ticket = limiter_.TryAdmit(info.peer.ip, &verdict);
  if (ticket != nullptr) return ticket;
  metrics_.Rejected(verdict == StartupVerdict::kGlobalLimit ? RejectReason::kMaxStartups
                                                            : RejectReason::kPerSourceMaxStartups);
  // Dropped before any SSH byte, like sshd past MaxStartups.
  logger_.Warn("engine", "connection refused",
               {{"src", info.peer.ip}, {"port", absl::StrCat(info.peer.port)},
                {"transport", info.transport},
                {"reason", verdict == StartupVerdict::kGlobalLimit ? "max-startups"
                                                                    : "per-source-max-startups"}});
  return nullptr;
}

void ServerEngine::Shutdown(absl::Duration grace) {
  if (!started_) return;
  started_ = false;
  ready_ = false;
  // 1. Stop accepting SSH. The acceptor loop keeps serving /readyz (503) while we drain.
  CloseListeners(/*handed_over=*/false);
  logger_.Info("engine", "stopped accepting; draining",
               {{"sessions", absl::StrCat(active_sessions())},
                {"grace", absl::FormatDuration(grace)}});
  // 2. Drain: sessions disconnect as their channels finish.
  for (auto& worker : workers_) worker->BeginShutdown();
  auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(grace);
  while (active_sessions() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // 3. Disconnect whatever is left, then stop the loops.
  int remaining = active_sessions();
  for (auto& worker : workers_) worker->TerminateAll();
  auto hard_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (active_sessions() > 0 && std::chrono::steady_clock::now() < hard_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& listener : datagram_listeners_) listener->Close();
  for (auto& worker : workers_) worker->Stop();
  std::promise<void> status_closed;
  acceptor_loop_->Post([this, &status_closed] {
    if (status_server_) status_server_->Close();
    status_closed.set_value();
  });
  status_closed.get_future().wait();
  acceptor_loop_->Stop();
  acceptor_thread_.join();
  resolver_.reset();
  datagram_listeners_.clear();  // their endpoints live on the (stopped) worker loops
  workers_.clear();
  listeners_.clear();
  logger_.Info("engine", "stopped", {{"disconnected_at_deadline", absl::StrCat(remaining)}});
}

std::vector<std::pair<int, std::string>> ServerEngine::listen_fds() const {
  std::vector<std::pair<int, std::string>> fds;
  for (const auto& listener : listeners_) {
    if (listener->fd() >= 0) fds.emplace_back(listener->fd(), kUpgradeFdName);
  }
  for (const auto& listener : datagram_listeners_) {
    for (DatagramListener::Handover handover : listener->fds()) {
      int inherited_as = kListenFdsStart + static_cast<int>(fds.size());
      fds.emplace_back(handover.socket, kUpgradeFdName);
      if (handover.link >= 0) fds.emplace_back(handover.link, UpgradeLinkFdName(inherited_as, handover.epoch));
    }
  }
  return fds;
}

void ServerEngine::CloseStatusServer() {
  if (!started_ || status_server_ == nullptr) return;
  std::promise<void> closed;
  acceptor_loop_->Post([this, &closed] {
    status_server_->Close();
    status_server_.reset();  // on the loop that served it
    closed.set_value();
  });
  closed.get_future().wait();
}

absl::Status ServerEngine::ReopenStatusServer() {
  if (!started_ || status_server_ != nullptr || !config_.metrics.listen) return absl::OkStatus();
  auto status_server = http::StatusServer::BindOrFallBack(*config_.metrics.listen,
                                                           config_.metrics.listen_explicit, logger_);
  if (!status_server.ok()) return status_server.status();
  std::promise<absl::Status> started;
  acceptor_loop_->Post([this, &started, server = status_server->get()] {
    started.set_value(server->Start(*acceptor_loop_,
                                    {.metrics = [this] { return RenderMetrics(); },
                                     .healthy = [this] { return Healthy(); },
                                     .ready = [this] { return Ready(); }}));
  });
  absl::Status result = started.get_future().get();
  if (!result.ok()) return result;
  status_server_ = *std::move(status_server);
  logger_.Info("metrics", "listening", {{"address", status_server_->bound_url()}});
  return absl::OkStatus();
}

void ServerEngine::CloseListeners(bool handed_over) {
  std::promise<void> listeners_closed;
  acceptor_loop_->Post([this, &listeners_closed] {
    for (auto& listener : listeners_) listener->Close();
    listeners_closed.set_value();
  });
  listeners_closed.get_future().wait();
  // Handed over, the new process reads the UDP sockets; else they keep serving the
  // connections this process has.
  for (auto& listener : datagram_listeners_) {
    if (handed_over) {
      listener->HandOver();
    } else {
      listener->StopAccepting();
    }
  }
  for (prometheus::Gauge* up : listener_up_) up->Set(0);
  for (prometheus::Gauge* up : datagram_up_) up->Set(0);
}

void ServerEngine::StopAccepting() {
  if (!started_) return;
  ready_ = false;
  CloseListeners(/*handed_over=*/true);
  logger_.Info("engine", "stopped accepting (handed over); sessions stay",
               {{"sessions", absl::StrCat(active_sessions())}});
}

bool ServerEngine::Ready() const {
  if (!ready_.load()) return false;
  if (starved_listeners_.load() > 0) return false;
  for (const auto& check : readiness_checks_) {
    if (!check()) return false;
  }
  return true;
}

std::vector<SessionSnapshot> ServerEngine::ListSessions() const {
  std::vector<SessionSnapshot> all;
  for (const auto& worker : workers_) {
    std::vector<SessionSnapshot> part = worker->Snapshot();
    all.insert(all.end(), part.begin(), part.end());
  }
  std::sort(all.begin(), all.end(),
            [](const SessionSnapshot& a, const SessionSnapshot& b) { return a.id < b.id; });
  return all;
}

int ServerEngine::KillSessions(const std::function<bool(const SessionSnapshot&)>& match,
                               std::string_view reason) {
  int killed = 0;
  for (auto& worker : workers_) killed += worker->Kill(match, reason);
  return killed;
}

void ServerEngine::UpdateLimits(const config::Limits& limits) {
  {
    absl::MutexLock lock(&limits_mu_);
    config_.limits = limits;
  }
  limiter_.SetLimits(limits.max_startups, limits.per_source_max_startups);
  max_sessions_ = limits.max_sessions;
  for (auto& worker : workers_) worker->UpdateLimits(ToSessionLimits(limits));
}

void ServerEngine::UpdateRateLimits(const config::RateLimits& rate_limits) {
  {
    absl::MutexLock lock(&limits_mu_);
    config_.rate_limits = rate_limits;
  }
  rate_limiter_.Update(config::ToRateLimitSettings(rate_limits));
}

config::RateLimits ServerEngine::rate_limits() const {
  absl::MutexLock lock(&limits_mu_);
  return config_.rate_limits;
}

void ServerEngine::UpdateForwarding(fwd::ForwardingPolicy policy) {
  {
    absl::MutexLock lock(&limits_mu_);
    policy.self_rules = self_rules_;
    config_.forwarding = policy;
  }
  forwarding_.Replace(std::move(policy));
}

fwd::ForwardingPolicy ServerEngine::forwarding() const {
  absl::MutexLock lock(&limits_mu_);
  fwd::ForwardingPolicy policy = config_.forwarding;
  policy.self_rules.clear();
  return policy;
}

void ServerEngine::UpdatePenalties(const config::PenaltiesConfig& penalties) {
  penalties_.SetOptions(ToPenaltyOptions(penalties));
}

void ServerEngine::UpdatePolicy(const config::AgentConfig& policy) {
  UpdateLimits(policy.limits);
  UpdatePenalties(policy.penalties);
  UpdateRateLimits(policy.rate_limits);
  if (!(forwarding() == policy.forwarding)) UpdateForwarding(policy.forwarding);
}

config::Limits ServerEngine::limits() const {
  absl::MutexLock lock(&limits_mu_);
  return config_.limits;
}

bool ServerEngine::Healthy() const {
  for (const auto& worker : workers_) {
    if (!worker->heartbeat_fresh()) return false;
  }
  for (const auto& check : health_checks_) {
    if (!check()) return false;
  }
  return true;
}

std::string ServerEngine::RenderMetrics() {
  metrics_.SetUnauthenticated(limiter_.unauthenticated());
  return prometheus::TextSerializer().Serialize(metrics_.Collect());
}

std::vector<EndpointUrl> ServerEngine::bound_endpoints() const {
  std::vector<EndpointUrl> endpoints;
  for (const auto& listener : listeners_) endpoints.push_back(listener->bound());
  for (const auto& listener : datagram_listeners_) endpoints.push_back(listener->bound());
  return endpoints;
}

int ServerEngine::active_sessions() const {
  int total = 0;
  for (const auto& worker : workers_) total += worker->session_count();
  return total;
}

}  // namespace alknet
