// One configured upstream of the client role: listeners, waiting queue, reconnect loop.
#include "server/client/upstream.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/tcp_listen.h"
#include "server/config/duration.h"

namespace alknet {

// ---- LocalListener ----

absl::StatusOr<std::unique_ptr<LocalListener>> LocalListener::Bind(const HostPort& address) {
  absl::StatusOr<UniqueFd> fd = ListenTcp(address, absl::StrCat("listen ", address.ToString()));
  if (!fd.ok()) return fd.status();
  SocketEndpoint local = LocalOf(fd->get());
  return std::unique_ptr<LocalListener>(new LocalListener(*std::move(fd), HostPort{local.ip, local.port}));
}

LocalListener::~LocalListener() { Close(); }

absl::Status LocalListener::Start(EventLoop& loop, Accept on_accept) {
  AcceptLoop::Options options;
  options.tcp_nodelay = true;
  accept_ = std::make_unique<AcceptLoop>(
      loop, fd_.get(), std::move(options),
      [on_accept = std::move(on_accept)](UniqueFd fd, const sockaddr_storage&, socklen_t) {
        on_accept(std::move(fd));
      });
  return accept_->Start();
}

void LocalListener::Close() {
  if (accept_ != nullptr) accept_->Stop();
  fd_.reset();
}

// ---- one SOCKS5 client in its handshake ----

class Upstream::Socks5Client final : public FdHandler {
 public:
  Socks5Client(Upstream& owner, std::shared_ptr<ForwardStatus> forward, UniqueFd fd)
      : owner_(owner), forward_(std::move(forward)), fd_(std::move(fd)) {
    socks5::Credentials credentials{owner.config_.socks5_username, owner.config_.socks5_password};
    credentials_ = std::move(credentials);
    handshake_ = socks5::ServerHandshake(&credentials_);
  }
  ~Socks5Client() override {
    if (timer_ != 0) owner_.shared_.loop.CancelTimer(timer_);
    if (watching_) owner_.shared_.loop.Unwatch(fd_.get());
  }

  void Start() {
    EventLoop& loop = owner_.shared_.loop;
    watching_ = loop.Watch(fd_.get(), EPOLLIN, this).ok();
    timer_ = loop.AddTimer(owner_.config_.request_timeout, [this] {
      timer_ = 0;
      Finish(nullptr);  // a handshake that never completes just closes
    });
    if (!watching_) Finish(nullptr);
  }

  void OnFdEvents(uint32_t) override {
    if (done_) return;
    char chunk[1024];
    size_t room = socks5::kMaxHandshakeMessage + 1024 - buffer_.size();
    ssize_t n = ::recv(fd_.get(), chunk, std::min(sizeof(chunk), room), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
      Finish(nullptr);  // EOF or error mid-handshake
      return;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    std::string_view input = buffer_;
    socks5::ServerHandshake::Step step = handshake_.Feed(input);
    buffer_.erase(0, buffer_.size() - input.size());
    if (!step.reply.empty() &&
        ::send(fd_.get(), step.reply.data(), step.reply.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(step.reply.size())) {
      Finish(nullptr);
      return;
    }
    switch (step.status) {
      case socks5::ServerHandshake::Status::kNeedMore:
        if (buffer_.size() > socks5::kMaxHandshakeMessage) Finish(nullptr);
        return;
      case socks5::ServerHandshake::Status::kClose:
        owner_.shared_.logger.Debug("client", "socks5 handshake refused",
                                    {{"upstream", owner_.config_.name},
                                     {"reason", std::string(handshake_.failure())}});
        Finish(nullptr);
        return;
      case socks5::ServerHandshake::Status::kRequest: {
        auto request = std::make_unique<StreamRequest>();
        request->kind = StreamRequest::Kind::kSocks;
        request->forward = forward_;
        request->host = handshake_.request().host;
        request->port = handshake_.request().port;
        request->early_data = std::move(buffer_);
        Finish(std::move(request));
        return;
      }
    }
  }

 private:
  void Finish(std::unique_ptr<StreamRequest> request) {
    if (done_) return;
    done_ = true;
    if (timer_ != 0) {
      owner_.shared_.loop.CancelTimer(timer_);
      timer_ = 0;
    }
    if (watching_) {
      owner_.shared_.loop.Unwatch(fd_.get());
      watching_ = false;
    }
    if (request) request->fd = std::move(fd_);
    owner_.Socks5Done(this, std::move(request));
  }

  Upstream& owner_;
  std::shared_ptr<ForwardStatus> forward_;
  UniqueFd fd_;
  socks5::Credentials credentials_;
  socks5::ServerHandshake handshake_;
  std::string buffer_;
  EventLoop::TimerId timer_ = 0;
  bool watching_ = false;
  bool done_ = false;
};

// ---- Upstream ----

namespace {

std::string LocalUserName() {
  char buffer[4096];
  passwd entry{};
  passwd* result = nullptr;
  if (getpwuid_r(getuid(), &entry, buffer, sizeof(buffer), &result) == 0 && result != nullptr) {
    return result->pw_name;
  }
  return "alknet";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Upstream>> Upstream::Create(Shared shared,
                                                           const config::UpstreamConfig& config) {
  std::unique_ptr<Upstream> upstream(new Upstream(shared, config));
  if (ssh_pki_import_privkey_file(config.identity.c_str(), nullptr, nullptr, nullptr,
                                  &upstream->identity_) != SSH_OK) {
    return absl::InvalidArgumentError(absl::StrCat("upstream ", config.name,
                                                   ": cannot load the identity '", config.identity,
                                                   "' (missing, unreadable or passphrase-protected)"));
  }
  if (!config.tls_ca_file.empty() && access(config.tls_ca_file.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("upstream ", config.name, ": tls_ca_file '",
                                                   config.tls_ca_file, "': ", std::strerror(errno)));
  }
  upstream->user_ = config.user.empty() ? LocalUserName() : config.user;
  upstream->env_.reset(new ClientSessionEnv{shared.loop, shared.logger, shared.connector,
                                            shared.scratch, shared.metrics, upstream->config_,
                                            shared.algorithms, upstream->identity_,
                                            upstream->user_});
  // The configuration's forwards, with stable ids; a bind error fails the agent's start.
  std::vector<ForwardDef> defs;
  if (config.socks5) {
    defs.push_back({absl::StrCat(config.name, "/socks5"), ForwardKind::kDynamic,
                    config::ForwardSpec{config.socks5->host, config.socks5->port, "", 0}, true});
  }
  for (size_t i = 0; i < config.local_forwards.size(); ++i) {
    defs.push_back({absl::StrCat(config.name, "/L", i), ForwardKind::kLocal, config.local_forwards[i], true});
  }
  for (size_t i = 0; i < config.remote_forwards.size(); ++i) {
    defs.push_back({absl::StrCat(config.name, "/R", i), ForwardKind::kRemote, config.remote_forwards[i], true});
  }
  for (ForwardDef& def : defs) {
    if (auto added = upstream->AddForward(std::move(def)); !added.ok()) return added.status();
  }
  return upstream;
}

Upstream::Upstream(Shared shared, const config::UpstreamConfig& config)
    : shared_(shared), config_(config), series_(shared.metrics.Upstream(config.name)) {
  series_.connected->Set(0);
}

Upstream::~Upstream() {
  Stop();
  if (identity_ != nullptr) ssh_key_free(identity_);
}

Upstream::Forward* Upstream::Find(const std::string& id) const {
  for (const auto& forward : forwards_) {
    if (forward->def.id == id) return forward.get();
  }
  return nullptr;
}

bool Upstream::HasForward(const std::string& id) const { return Find(id) != nullptr; }

absl::StatusOr<ForwardSnapshot> Upstream::AddForward(ForwardDef def, bool keep_if_unbound) {
  if (Find(def.id) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("a forward with id '", def.id, "' exists"));
  }
  for (const auto& other : forwards_) {
    const config::ForwardSpec& a = other->def.spec;
    if (def.kind == ForwardKind::kRemote && other->def.kind == ForwardKind::kRemote &&
        a.bind_host == def.spec.bind_host && a.bind_port == def.spec.bind_port && a.bind_port != 0) {
      return absl::AlreadyExistsError(absl::StrCat("forward '", other->def.id, "' already asks the server for ",
                                                   a.bind_host, ":", a.bind_port));
    }
  }
  auto forward = std::make_unique<Forward>();
  forward->def = std::move(def);
  if (forward->def.kind != ForwardKind::kRemote) {
    absl::Status bound = Listen(*forward);
    if (!bound.ok() && !keep_if_unbound) return bound;
  }
  Forward& added = *forward;
  forwards_.push_back(std::move(forward));
  if (added.def.kind == ForwardKind::kRemote) {
    added.status->state = "waiting for upstream";
    if (session_) session_->AddRemoteForward({added.def.id, added.def.spec, added.status});
  } else if (added.listener && started_) {
    StartListening(added);
  }
  return Snapshot(added);
}

absl::Status Upstream::Listen(Forward& forward) {
  const config::ForwardSpec& spec = forward.def.spec;
  auto listener = LocalListener::Bind(HostPort{spec.bind_host, spec.bind_port});
  if (!listener.ok()) {
    forward.status->state = "failed: cannot listen";
    forward.status->last_error = std::string(listener.status().message());
    return listener.status();  // ALREADY_EXISTS for an address in use
  }
  forward.listener = *std::move(listener);
  forward.status->state = connected_ ? "active" : "waiting for upstream";
  return absl::OkStatus();
}

void Upstream::StartListening(Forward& forward) {
  Forward* raw = &forward;
  bool dynamic = forward.def.kind == ForwardKind::kDynamic;
  (void)forward.listener->Start(shared_.loop, [this, raw, dynamic](UniqueFd fd) {
    if (dynamic) {
      OnSocksAccepted(*raw, std::move(fd));
    } else {
      OnLocalForwardAccepted(*raw, std::move(fd));
    }
  });
  shared_.logger.Info("client", dynamic ? "socks5 listening" : "local forward listening",
                      {{"upstream", config_.name}, {"forward", forward.def.id},
                       {"address", forward.listener->bound().ToString()}});
}

void Upstream::RetryUnbound() {
  for (auto& forward : forwards_) {
    if (forward->def.kind == ForwardKind::kRemote || forward->listener) continue;
    if (Listen(*forward).ok() && started_) StartListening(*forward);
  }
}

bool Upstream::RemoveForward(const std::string& id) {
  auto it = std::find_if(forwards_.begin(), forwards_.end(),
                         [&](const auto& forward) { return forward->def.id == id; });
  if (it == forwards_.end()) return false;
  if ((*it)->listener) (*it)->listener->Close();
  if ((*it)->def.kind == ForwardKind::kRemote && session_) session_->RemoveRemoteForward(id);
  (*it)->status->state = "removed";
  shared_.logger.Info("client", "forward removed", {{"upstream", config_.name}, {"forward", id}});
  forwards_.erase(it);
  return true;
}

ForwardSnapshot Upstream::Snapshot(const Forward& forward) const {
  ForwardSnapshot snapshot{config_.name, forward.def, {}, *forward.status};
  if (forward.listener) {
    snapshot.bound = forward.listener->bound();
  } else if (forward.def.kind == ForwardKind::kRemote) {
    int port = session_ ? session_->RemoteForwardPort(forward.def.id) : 0;
    snapshot.bound = HostPort{forward.def.spec.bind_host, static_cast<uint16_t>(port)};
  }
  return snapshot;
}

std::vector<ForwardSnapshot> Upstream::ListForwards() const {
  std::vector<ForwardSnapshot> out;
  for (const auto& forward : forwards_) out.push_back(Snapshot(*forward));
  return out;
}

// -D/-L forwards follow the upstream's connection; -R forwards wait for the next session.
void Upstream::SetIdleStates() {
  for (auto& forward : forwards_) {
    if (forward->def.kind == ForwardKind::kRemote) {
      if (!connected_) forward->status->state = "waiting for upstream";
    } else if (forward->listener) {
      forward->status->state = connected_ ? "active" : "waiting for upstream";
    }
  }
}

void Upstream::Start() {
  started_ = true;
  for (auto& forward : forwards_) {
    if (forward->listener) StartListening(*forward);
  }
  sweep_timer_ = shared_.loop.AddTimer(absl::Seconds(1), [this] { SweepWaiting(); });
  Connect();
}

void Upstream::Stop() {
  if (stopped_) return;
  stopped_ = true;
  for (EventLoop::TimerId* timer : {&reconnect_timer_, &sweep_timer_}) {
    if (*timer != 0) shared_.loop.CancelTimer(*timer);
    *timer = 0;
  }
  for (auto& forward : forwards_) {
    if (forward->listener) forward->listener->Close();
  }
  negotiating_.clear();
  if (session_) {
    session_->Close();
    shared_.loop.DeleteLater(std::move(session_));
  }
  for (auto& request : waiting_) AnswerFailure(*request, socks5::Reply::kGeneralFailure);
  waiting_.clear();
  connected_ = false;
  series_.connected->Set(0);
}

void Upstream::Connect() {
  reconnect_timer_ = 0;
  if (stopped_) return;
  ++attempt_;
  shared_.logger.Info("client", "connecting",
                      {{"upstream", config_.name}, {"server", config_.server.ToString()},
                       {"attempt", absl::StrCat(attempt_)},
                       {"via", config_.proxy ? config_.proxy->ToString() : "direct"}});
  ClientSession::Callbacks callbacks;
  callbacks.on_ready = [this] { OnReady(); };
  callbacks.on_lost = [this](SessionLoss loss, std::vector<std::unique_ptr<StreamRequest>> unanswered) {
    OnLost(std::move(loss), std::move(unanswered));
  };
  session_ = std::make_unique<ClientSession>(*env_, std::move(callbacks));
  for (auto& forward : forwards_) {
    if (forward->def.kind == ForwardKind::kRemote) {
      session_->AddRemoteForward({forward->def.id, forward->def.spec, forward->status});
    }
  }
  session_->Start();
}

void Upstream::OnReady() {
  shared_.logger.Info("client", "upstream connected",
                      {{"upstream", config_.name}, {"server", config_.server.ToString()},
                       {"attempt", absl::StrCat(attempt_)}});
  backoff_.Reset();
  attempt_ = 0;
  ever_connected_ = true;
  connected_ = true;
  series_.connected->Set(1);
  SetIdleStates();
  // Hand the queue over in arrival order; the session answers each one.
  std::deque<std::unique_ptr<StreamRequest>> queued;
  queued.swap(waiting_);
  for (auto& request : queued) {
    if (!session_ || !session_->ready()) {
      waiting_.push_back(std::move(request));
      continue;
    }
    session_->Open(std::move(request));
  }
}

void Upstream::OnLost(SessionLoss loss, std::vector<std::unique_ptr<StreamRequest>> unanswered) {
  bool was_connected = connected_.exchange(false);
  series_.connected->Set(0);
  SetIdleStates();
  if (was_connected) {
    shared_.logger.Warn("client", "upstream connection lost",
                        {{"upstream", config_.name}, {"reason", loss.reason}});
  } else {
    shared_.logger.Warn("client", "connection attempt failed",
                        {{"upstream", config_.name}, {"attempt", absl::StrCat(attempt_)},
                         {"reason", loss.reason}});
  }
  if (session_) shared_.loop.DeleteLater(std::move(session_));  // we are inside its callback
  for (auto& request : unanswered) {
    if (waiting_.size() < static_cast<size_t>(config_.max_pending_requests)) {
      waiting_.push_back(std::move(request));
    } else {
      AnswerFailure(*request, socks5::Reply::kGeneralFailure);
    }
  }
  ScheduleReconnect();
}

void Upstream::ScheduleReconnect() {
  if (stopped_) return;
  Backoff::Delay delay = backoff_.Next();
  shared_.logger.Info("client", "reconnecting",
                      {{"upstream", config_.name}, {"backoff", config::FormatDuration(delay.base)},
                       {"delay", config::FormatDuration(delay.actual)},
                       {"attempt", absl::StrCat(attempt_ + 1)}});
  if (ever_connected_ || attempt_ > 0) series_.reconnects->Increment();
  reconnect_timer_ = shared_.loop.AddTimer(delay.actual, [this] { Connect(); });
}

void Upstream::Submit(std::unique_ptr<StreamRequest> request) {
  if (stopped_) {
    AnswerFailure(*request, socks5::Reply::kGeneralFailure);
    return;
  }
  request->deadline = absl::Now() + config_.request_timeout;
  if (session_ && session_->ready() && waiting_.empty()) {
    if (session_->pending_opens() >= static_cast<size_t>(config_.max_pending_requests)) {
      AnswerFailure(*request, socks5::Reply::kGeneralFailure);
      return;
    }
    session_->Open(std::move(request));
    return;
  }
  if (waiting_.size() >= static_cast<size_t>(config_.max_pending_requests)) {
    shared_.logger.Debug("client", "request dropped: queue full", {{"upstream", config_.name}});
    AnswerFailure(*request, socks5::Reply::kGeneralFailure);
    return;
  }
  waiting_.push_back(std::move(request));
}

void Upstream::SweepWaiting() {
  sweep_timer_ = shared_.loop.AddTimer(absl::Seconds(1), [this] { SweepWaiting(); });
  if (++sweeps_ % 5 == 0) RetryUnbound();
  absl::Time now = absl::Now();
  while (!waiting_.empty() && waiting_.front()->deadline <= now) {
    // Not connected in time: fail cleanly (SOCKS "general failure", -L closes).
    AnswerFailure(*waiting_.front(), socks5::Reply::kGeneralFailure);
    waiting_.pop_front();
  }
}

void Upstream::OnSocksAccepted(Forward& forward, UniqueFd fd) {
  if (negotiating_.size() >= kMaxNegotiating) return;  // closes
  auto client = std::make_unique<Socks5Client>(*this, forward.status, std::move(fd));
  Socks5Client* raw = client.get();
  negotiating_.emplace(raw, std::move(client));
  raw->Start();
}

void Upstream::Socks5Done(Socks5Client* client, std::unique_ptr<StreamRequest> request) {
  auto it = negotiating_.find(client);
  if (it != negotiating_.end()) {
    shared_.loop.DeleteLater(std::move(it->second));  // we are inside its event
    negotiating_.erase(it);
  }
  if (!request) return;
  SocketEndpoint peer = PeerOf(request->fd.get());
  request->originator_ip = peer.ip.empty() ? "127.0.0.1" : peer.ip;
  request->originator_port = peer.port;
  Submit(std::move(request));
}

void Upstream::OnLocalForwardAccepted(Forward& forward, UniqueFd fd) {
  auto request = std::make_unique<StreamRequest>();
  request->kind = StreamRequest::Kind::kLocalForward;
  SocketEndpoint peer = PeerOf(fd.get());
  request->fd = std::move(fd);
  request->host = forward.def.spec.host;
  request->port = forward.def.spec.host_port;
  request->originator_ip = peer.ip.empty() ? "127.0.0.1" : peer.ip;
  request->originator_port = peer.port;
  request->forward = forward.status;
  Submit(std::move(request));
}

}  // namespace alknet
