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

namespace alknet {

class RemoteForwards::ListenSocket final : public FdHandler {
 public:
  ListenSocket(RemoteForwards& owner, UniqueFd fd, std::string requested_address,
               uint32_t requested_port, uint16_t bound_port, std::string bound_host)
      : owner_(owner), fd_(std::move(fd)), requested_address_(std::move(requested_address)),
        requested_port_(requested_port), bound_port_(bound_port), bound_host_(std::move(bound_host)) {}
  ~ListenSocket() override { Close(); }

  absl::Status Start() { return owner_.loop_.Watch(fd_.get(), EPOLLIN, this); }
  void Close() {
    if (fd_.valid()) {
      owner_.loop_.Unwatch(fd_.get());
      fd_.reset();
    }
  }

  void OnFdEvents(uint32_t) override {
    for (int i = 0; i < 16 && fd_.valid(); ++i) {
      UniqueFd accepted(accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!accepted.valid()) return;
      int one = 1;
      setsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      owner_.OnAccepted(*this, std::move(accepted));
    }
    if (owner_.hooks_.after_io) owner_.hooks_.after_io();
  }

  const std::string& requested_address() const { return requested_address_; }
  uint32_t requested_port() const { return requested_port_; }
  uint16_t bound_port() const { return bound_port_; }
  const std::string& bound_host() const { return bound_host_; }
  // cancel-tcpip-forward names the forward as requested, or by the port it got.
  bool Matches(std::string_view address, uint32_t port) const {
    return address == requested_address_ && (port == requested_port_ || port == bound_port_);
  }

 private:
  RemoteForwards& owner_;
  UniqueFd fd_;
  std::string requested_address_;
  uint32_t requested_port_;
  uint16_t bound_port_;
  std::string bound_host_;
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

RemoteForwards::RemoteForwards(EventLoop& loop, Logger& logger, EngineMetrics& metrics, Hooks hooks)
    : loop_(loop), logger_(logger), metrics_(metrics), hooks_(std::move(hooks)) {}

RemoteForwards::~RemoteForwards() { CloseAll(); }

void RemoteForwards::Bind(ssh_session session, std::string source_ip, std::string key_fingerprint,
                          absl::Duration open_timeout) {
  session_ = session;
  source_ip_ = std::move(source_ip);
  key_fingerprint_ = std::move(key_fingerprint);
  open_timeout_ = open_timeout;
}

void RemoteForwards::Refuse(ssh_message message, RejectReason reason, std::string_view log_reason,
                            uint32_t port) {
  metrics_.Rejected(reason);
  // The requested listen port is this server's own port: loggable. Nothing of the client's
  // targets is ever known here.
  logger_.Info("session", "remote forward refused",
               {{"src", source_ip_}, {"key", key_fingerprint_}, {"port", absl::StrCat(port)},
                {"reason", std::string(log_reason)}});
  ssh_message_reply_default(message);
}

void RemoteForwards::HandleGlobalRequest(ssh_message message, const auth::KeyOptions* options) {
  const char* address_c = ssh_message_global_request_address(message);
  std::string address = address_c != nullptr ? address_c : "";
  int port_signed = ssh_message_global_request_port(message);
  uint32_t port = port_signed < 0 ? 0 : static_cast<uint32_t>(port_signed);
  int subtype = ssh_message_subtype(message);

  if (subtype == SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD) {
    auto it = std::find_if(listeners_.begin(), listeners_.end(),
                           [&](const auto& l) { return l->Matches(address, port); });
    if (it == listeners_.end()) {
      ssh_message_reply_default(message);
      return;
    }
    logger_.Info("session", "remote forward cancelled",
                 {{"src", source_ip_}, {"key", key_fingerprint_},
                  {"port", absl::StrCat((*it)->bound_port())}});
    (*it)->Close();
    loop_.DeleteLater(std::move(*it));
    listeners_.erase(it);
    ssh_message_global_request_reply_success(message, 0);
    return;
  }
  if (subtype != SSH_GLOBAL_REQUEST_TCPIP_FORWARD) {
    ssh_message_reply_default(message);
    return;
  }
  if (options == nullptr) {
    Refuse(message, RejectReason::kKeyRevoked, "key-revoked", port);
    return;
  }
  if (hooks_.can_open && !hooks_.can_open()) {
    Refuse(message, RejectReason::kShuttingDown, "shutting-down", port);
    return;
  }
  if (listeners_.size() >= kMaxListeners) {
    Refuse(message, RejectReason::kTooManyChannels, "too-many-listeners", port);
    return;
  }
  ListenDecision decision = CheckRemoteListen(*options, address, port);
  if (decision.verdict != ForwardVerdict::kAllowed) {
    RejectReason reason = decision.verdict == ForwardVerdict::kForwardingDisabled
                              ? RejectReason::kPortForwardingDisabled
                              : RejectReason::kPermitListen;
    Refuse(message, reason, ForwardVerdictName(decision.verdict), port);
    return;
  }
  absl::StatusOr<UniqueFd> fd = BindListening(decision.bind_host, static_cast<uint16_t>(port));
  if (!fd.ok()) {
    logger_.Info("session", "remote forward refused",
                 {{"src", source_ip_}, {"key", key_fingerprint_}, {"port", absl::StrCat(port)},
                  {"reason", "bind-failed"}, {"error", std::string(fd.status().message())}});
    ssh_message_reply_default(message);
    return;
  }
  uint16_t bound_port = LocalOf(fd->get()).port;
  auto listener = std::make_unique<ListenSocket>(*this, *std::move(fd), address, port, bound_port,
                                                 decision.bind_host);
  if (!listener->Start().ok()) {
    ssh_message_reply_default(message);
    return;
  }
  listeners_.push_back(std::move(listener));
  logger_.Info("session", "remote forward listening",
               {{"src", source_ip_}, {"key", key_fingerprint_},
                {"listen", HostPort{decision.bind_host, bound_port}.ToString()}});
  ssh_message_global_request_reply_success(message, bound_port);
}

void RemoteForwards::OnAccepted(ListenSocket& listener, UniqueFd fd) {
  if (session_ == nullptr || pending_.size() >= kMaxPendingOpens ||
      (hooks_.can_open && !hooks_.can_open())) {
    metrics_.Rejected(RejectReason::kTooManyChannels);
    return;  // closing `fd` turns the connection away
  }
  SocketEndpoint peer = PeerOf(fd.get());
  ssh_channel channel = ssh_channel_new(session_);
  if (channel == nullptr) return;
  PendingOpen open;
  open.channel = channel;
  open.fd = std::move(fd);
  open.listener = &listener;
  open.originator = peer.ip.empty() ? "127.0.0.1" : peer.ip;
  open.originator_port = peer.port;
  open.deadline = absl::Now() + open_timeout_;
  pending_.push_back(std::move(open));
  if (!polling_) Poll();
}

bool RemoteForwards::Step(PendingOpen& open) {
  int rc = ssh_channel_open_reverse_forward(
      open.channel, open.listener->requested_address().c_str(),
      static_cast<int>(open.listener->bound_port()), open.originator.c_str(),
      static_cast<int>(open.originator_port));
  if (rc == SSH_OK) {
    ssh_channel channel = std::exchange(open.channel, nullptr);
    if (hooks_.opened) hooks_.opened(channel, std::move(open.fd));
    return true;
  }
  if (rc == SSH_AGAIN && absl::Now() < open.deadline) return false;
  metrics_.ChannelOpenFinished(ChannelKind::kForwardedTcpip, ChannelResult::kConnectFailed);
  logger_.Debug("session", "forwarded channel not opened",
                {{"src", source_ip_}, {"port", absl::StrCat(open.listener->bound_port())},
                 {"reason", rc == SSH_AGAIN ? "open-timeout" : "client-refused"}});
  ssh_channel_free(std::exchange(open.channel, nullptr));
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
    if (open.channel != nullptr) ssh_channel_free(open.channel);
  }
  pending_.clear();
  session_ = nullptr;
}

}  // namespace alknet
