// Remote (-R) forwards of one server session: listeners on the worker loop and the
// forwarded-tcpip channels opened for their connections.
//
// The forwarded-tcpip open carries the listen address exactly as the client requested it and
// the bound port: OpenSSH's client matches the open against its -R list by that pair.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include "server/ssh/remote_forwards.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/net_address.h"
#include "server/forward/forward_policy.h"
#include "server/loop/accept_loop.h"

namespace alknet {

class RemoteForwards::ListenSocket final {
 public:
  ListenSocket(RemoteForwards& owner, uint64_t id, UniqueFd fd, std::string requested_address,
               uint32_t requested_port, uint16_t bound_port)
      : owner_(owner), id_(id), fd_(std::move(fd)), requested_address_(std::move(requested_address)),
        requested_port_(requested_port), bound_port_(bound_port) {}
  ~ListenSocket() { Close(); }

  absl::Status Start() {
    AcceptLoop::Options options;
    options.batch = 16;
    options.tcp_nodelay = true;
    options.after_batch = [this] {
      if (owner_.hooks_.after_io) owner_.hooks_.after_io();
    };
    accept_ = std::make_unique<AcceptLoop>(
        owner_.loop_, fd_.get(), std::move(options),
        [this](UniqueFd fd, const sockaddr_storage&, socklen_t) { owner_.OnAccepted(id_, std::move(fd)); });
    return accept_->Start();
  }
  // Stops accepting and closes the socket; the object itself goes through DeleteLater.
  void Close() {
    if (accept_ != nullptr) accept_->Stop();
    fd_.reset();
  }

  uint64_t id() const { return id_; }
  const std::string& requested_address() const { return requested_address_; }
  uint16_t bound_port() const { return bound_port_; }
  // cancel-tcpip-forward names the forward as requested, or by the port it got.
  bool Matches(std::string_view address, uint32_t port) const {
    return address == requested_address_ && (port == requested_port_ || port == bound_port_);
  }

 private:
  RemoteForwards& owner_;
  uint64_t id_;
  UniqueFd fd_;
  std::string requested_address_;
  uint32_t requested_port_;
  uint16_t bound_port_;
  std::unique_ptr<AcceptLoop> accept_;
};

class RemoteForwards::LibsshChannelOps final : public ChannelOps {
 public:
  ssh_channel New(ssh_session session) override { return ssh_channel_new(session); }
  int OpenReverse(ssh_channel channel, const char* listen_address, int listen_port,
                  const char* originator, int originator_port) override {
    return ssh_channel_open_reverse_forward(channel, listen_address, listen_port, originator,
                                            originator_port);
  }
  void Free(ssh_channel channel) override { ssh_channel_free(channel); }
};

namespace {

absl::StatusOr<UniqueFd> BindListening(const std::string& numeric_host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* results = nullptr;
  std::string port_text = absl::StrCat(port);
  int rc = getaddrinfo(numeric_host.c_str(), port_text.c_str(), &hints, &results);
  if (rc != 0) return absl::InvalidArgumentError(gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(results, freeaddrinfo);
  absl::Status last = absl::UnavailableError("no address");
  for (addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      last = ErrnoStatus("socket", errno);
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd.get(), 128) != 0) {
      last = ErrnoStatus("bind", errno);
      continue;
    }
    return fd;
  }
  return last;
}

}  // namespace

RemoteForwards::RemoteForwards(EventLoop& loop, Logger& logger, EngineMetrics& metrics, Hooks hooks,
                               ChannelOps* ops)
    : loop_(loop), logger_(logger), metrics_(metrics), hooks_(std::move(hooks)),
      libssh_ops_(ops == nullptr ? std::make_unique<LibsshChannelOps>() : nullptr),
      ops_(ops != nullptr ? *ops : *libssh_ops_) {}

RemoteForwards::~RemoteForwards() { CloseAll(); }

void RemoteForwards::Bind(ssh_session session, std::string source_ip, std::string key_fingerprint,
                          absl::Duration open_timeout) {
  bound_ = true;
  session_ = session;
  source_ip_ = std::move(source_ip);
  key_fingerprint_ = std::move(key_fingerprint);
  open_timeout_ = open_timeout;
}

RemoteForwards::Answer RemoteForwards::Refuse(RejectReason reason, std::string_view log_reason,
                                              uint32_t port) {
  metrics_.Rejected(reason);
  // The requested listen port is this server's own port: loggable. Nothing of the client's
  // targets is ever known here.
  logger_.Info("session", "remote forward refused",
               {{"src", source_ip_}, {"key", key_fingerprint_}, {"port", absl::StrCat(port)},
                {"reason", std::string(log_reason)}});
  return Answer{};
}

void RemoteForwards::HandleGlobalRequest(ssh_message message, const auth::KeyOptions* options) {
  int subtype = ssh_message_subtype(message);
  if (subtype != SSH_GLOBAL_REQUEST_TCPIP_FORWARD && subtype != SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD) {
    ssh_message_reply_default(message);
    return;
  }
  const char* address = ssh_message_global_request_address(message);
  int port = ssh_message_global_request_port(message);
  Request request{.cancel = subtype == SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD,
                  .address = address != nullptr ? address : "",
                  .port = port < 0 ? 0u : static_cast<uint32_t>(port)};
  Answer answer = HandleRequest(request, options);
  if (answer.ok) {
    ssh_message_global_request_reply_success(message, answer.bound_port);
  } else {
    ssh_message_reply_default(message);
  }
}

RemoteForwards::Answer RemoteForwards::HandleRequest(const Request& request,
                                                     const auth::KeyOptions* options) {
  const std::string& address = request.address;
  uint32_t port = request.port;
  if (request.cancel) {
    auto it = std::find_if(listeners_.begin(), listeners_.end(),
                           [&](const auto& l) { return l->Matches(address, port); });
    if (it == listeners_.end()) return Answer{};
    logger_.Info("session", "remote forward cancelled",
                 {{"src", source_ip_}, {"key", key_fingerprint_},
                  {"port", absl::StrCat((*it)->bound_port())}});
    // Opens this listener started keep their own copy of what they name (PendingOpen).
    (*it)->Close();
    loop_.DeleteLater(std::move(*it));
    listeners_.erase(it);
    return Answer{.ok = true};
  }
  if (options == nullptr) return Refuse(RejectReason::kKeyRevoked, "key-revoked", port);
  if (hooks_.can_open && !hooks_.can_open()) {
    return Refuse(RejectReason::kShuttingDown, "shutting-down", port);
  }
  if (listeners_.size() >= kMaxListeners) {
    return Refuse(RejectReason::kTooManyChannels, "too-many-listeners", port);
  }
  ListenDecision decision = CheckRemoteListen(*options, address, port);
  if (decision.verdict != ForwardVerdict::kAllowed) {
    RejectReason reason = decision.verdict == ForwardVerdict::kForwardingDisabled
                              ? RejectReason::kPortForwardingDisabled
                              : RejectReason::kPermitListen;
    return Refuse(reason, ForwardVerdictName(decision.verdict), port);
  }
  if (hooks_.listen_policy) {
    std::string rule = hooks_.listen_policy(decision.bind_host, static_cast<uint16_t>(port));
    if (!rule.empty()) {
      metrics_.ForwardingRuleRejected(rule);
      logger_.Info("session", "remote forward refused",
                   {{"src", source_ip_}, {"key", key_fingerprint_}, {"port", absl::StrCat(port)},
                    {"reason", "forwarding-policy"}, {"rule", rule}});
      return Answer{};
    }
  }
  absl::StatusOr<UniqueFd> fd = BindListening(decision.bind_host, static_cast<uint16_t>(port));
  if (!fd.ok()) {
    logger_.Info("session", "remote forward refused",
                 {{"src", source_ip_}, {"key", key_fingerprint_}, {"port", absl::StrCat(port)},
                  {"reason", "bind-failed"}, {"error", std::string(fd.status().message())}});
    return Answer{};
  }
  uint16_t bound_port = LocalOf(fd->get()).port;
  uint64_t id = next_listener_id_++;
  auto listener = std::make_unique<ListenSocket>(*this, id, *std::move(fd), address, port, bound_port);
  if (!listener->Start().ok()) return Answer{};
  listeners_.push_back(std::move(listener));
  logger_.Info("session", "remote forward listening",
               {{"src", source_ip_}, {"key", key_fingerprint_},
                {"listen", HostPort{decision.bind_host, bound_port}.ToString()}});
  return Answer{.ok = true, .bound_port = bound_port, .listener_id = id};
}

void RemoteForwards::OnAccepted(uint64_t listener_id, UniqueFd fd) {
  auto it = std::find_if(listeners_.begin(), listeners_.end(),
                         [&](const auto& l) { return l->id() == listener_id; });
  if (it == listeners_.end()) return;  // cancelled meanwhile: closing `fd` turns it away
  if (!bound_ || pending_.size() >= kMaxPendingOpens || (hooks_.can_open && !hooks_.can_open())) {
    metrics_.Rejected(RejectReason::kTooManyChannels);
    return;
  }
  SocketEndpoint peer = PeerOf(fd.get());
  ssh_channel channel = ops_.New(session_);
  if (channel == nullptr) return;
  PendingOpen open;
  open.channel = channel;
  open.fd = std::move(fd);
  open.listen_address = (*it)->requested_address();
  open.listen_port = (*it)->bound_port();
  open.originator = peer.ip.empty() ? "127.0.0.1" : peer.ip;
  open.originator_port = peer.port;
  open.deadline = Now() + open_timeout_;
  pending_.push_back(std::move(open));
  if (!polling_) Poll();
}

bool RemoteForwards::Step(PendingOpen& open) {
  int rc = ops_.OpenReverse(open.channel, open.listen_address.c_str(),
                            static_cast<int>(open.listen_port), open.originator.c_str(),
                            static_cast<int>(open.originator_port));
  if (rc == SSH_OK) {
    ssh_channel channel = std::exchange(open.channel, nullptr);
    if (hooks_.opened) {
      hooks_.opened(channel, std::move(open.fd));
    } else {
      ops_.Free(channel);
    }
    return true;
  }
  if (rc == SSH_AGAIN && Now() < open.deadline) return false;
  metrics_.ChannelOpenFinished(ChannelKind::kForwardedTcpip, ChannelResult::kConnectFailed);
  logger_.Debug("session", "forwarded channel not opened",
                {{"src", source_ip_}, {"port", absl::StrCat(open.listen_port)},
                 {"reason", rc == SSH_AGAIN ? "open-timeout" : "client-refused"}});
  ops_.Free(std::exchange(open.channel, nullptr));
  open.fd.reset();
  return true;
}

void RemoteForwards::Poll() {
  if (polling_ || pending_.empty()) return;
  polling_ = true;
  // Step() may poll the session and run callbacks; the vector only shrinks here.
  for (size_t i = 0; i < pending_.size();) {
    if (Step(pending_[i])) {
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  polling_ = false;
}

void RemoteForwards::CloseAll() {
  for (auto& listener : listeners_) {
    listener->Close();
    loop_.DeleteLater(std::move(listener));
  }
  listeners_.clear();
  for (PendingOpen& open : pending_) {
    if (open.channel != nullptr) ops_.Free(open.channel);
  }
  pending_.clear();
  bound_ = false;
  session_ = nullptr;
}

}  // namespace alknet
