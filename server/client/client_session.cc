// One SSH client connection to an upstream server on an event loop, never blocking.
//
// libssh rules this file follows (libssh 0.10, non-blocking client): we connect the socket
// ourselves and hand it over with SSH_OPTIONS_FD; ssh_connect, ssh_userauth_publickey,
// ssh_channel_listen_forward and ssh_channel_open_forward return SSH_AGAIN and are simply called
// again when the socket is ready (each call polls the socket once with a zero timeout). Only one
// global request may be outstanding in libssh, so -R requests (at the handshake and at run time)
// and keepalives take turns through StepGlobalRequests() and ReapKeepalive(). Once ready the session sits in its own ssh_event, driven by our epoll,
// exactly like the server session (ADR 0002); no message callbacks are installed, so
// forwarded-tcpip opens queue and are answered after our local connect (ADR 0001).
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include "server/client/client_session.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/auth/fingerprint.h"
#include "server/client/socks5.h"
#include "server/common/reserved_names.h"
#include "server/config/duration.h"

namespace alknet {
namespace {

std::string KeyFingerprint(ssh_key key) {
  char* base64 = nullptr;
  std::string fingerprint = "unknown";
  if (key != nullptr && ssh_pki_export_pubkey_base64(key, &base64) == SSH_OK) {
    if (auto blob = auth::Base64Decode(base64)) fingerprint = auth::Sha256Fingerprint(*blob);
  }
  ssh_string_free_char(base64);
  return fingerprint;
}

// The fingerprints known_hosts lists for this host ("none" if it lists none): libssh does not
// return the mismatching entry, and the refusal must show what was expected.
std::string KnownFingerprints(const std::string& file, const HostPort& server) {
  std::string host = server.port == 22 ? server.host
                                       : absl::StrCat("[", server.host, "]:", server.port);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> in(std::fopen(file.c_str(), "r"), &std::fclose);
  std::string found;
  if (in == nullptr) return "none";
  char line[8192];
  while (std::fgets(line, sizeof(line), in.get()) != nullptr) {
    std::string text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (text.empty() || text[0] == '#') continue;
    ssh_knownhosts_entry* entry = nullptr;
    if (ssh_known_hosts_parse_line(host.c_str(), text.c_str(), &entry) == SSH_OK && entry != nullptr &&
        entry->publickey != nullptr) {
      absl::StrAppend(&found, found.empty() ? "" : ",", KeyFingerprint(entry->publickey));
    }
    ssh_knownhosts_entry_free(entry);
  }
  return found.empty() ? "none" : found;
}

void KeepNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

std::string ErrorOf(ssh_session session) {
  const char* error = ssh_get_error(session);
  return error != nullptr && *error != '\0' ? error : "unknown error";
}

}  // namespace

namespace {
// Service passes per wake-up at most (Service()).
constexpr int kServicePasses = 4;
}  // namespace

ClientSession::ClientSession(ClientSessionEnv& env, Callbacks callbacks)
    : env_(env), callbacks_(std::move(callbacks)) {
  server_ = env_.config.server.address.ToString();
}

ClientSession::~ClientSession() { Close(); }

void ClientSession::Start() {
  const config::UpstreamConfig& config = env_.config;
  handshake_timer_ = env_.loop.AddTimer(config.handshake_timeout, [this] {
    handshake_timer_ = 0;
    Fail({absl::StrCat("no session within ", config::FormatDuration(env_.config.handshake_timeout),
                       " (handshake timeout)")});
  });
  phase_ = Phase::kConnect;
  const StreamDialer* dialer = FindStreamDialer(config.server.scheme);
  if (dialer == nullptr) {  // the config's validation rules this out; fails on the next turn
    env_.loop.CancelTimer(handshake_timer_);
    handshake_timer_ = env_.loop.AddTimer(absl::ZeroDuration(), [this] {
      handshake_timer_ = 0;
      Fail({absl::StrCat("no transport for ", env_.config.server.scheme, "://")});
    });
    return;
  }
  stream_ = dialer->Dial({env_.loop, env_.logger, env_.connector}, config, config.name,
                         [this](absl::StatusOr<UniqueFd> fd) {
                           if (!fd.ok()) {
                             Fail({std::string(fd.status().message())});
                             return;
                           }
                           StartSsh(*std::move(fd));
                         });
}

void ClientSession::StartSsh(UniqueFd fd) {
  const config::UpstreamConfig& config = env_.config;
  session_ = ssh_new();
  if (session_ == nullptr) {
    Fail({"ssh_new failed"});
    return;
  }
  bool no = false;
  int port = config.server.address.port;
  int strict = 1;
  ssh_options_set(session_, SSH_OPTIONS_PROCESS_CONFIG, &no);  // no ~/.ssh/config, no /etc/ssh
  ssh_options_set(session_, SSH_OPTIONS_HOST, config.server.address.host.c_str());
  ssh_options_set(session_, SSH_OPTIONS_PORT, &port);
  ssh_options_set(session_, SSH_OPTIONS_USER, env_.user.c_str());
  ssh_options_set(session_, SSH_OPTIONS_STRICTHOSTKEYCHECK, &strict);
  ssh_options_set(session_, SSH_OPTIONS_KNOWNHOSTS,
                  config.known_hosts.empty() ? "/dev/null" : config.known_hosts.c_str());
  ssh_options_set(session_, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
  // The same modern lists the server offers (ssh.*), not libssh's defaults.
  const config::SshAlgorithms& algorithms = env_.algorithms;
  const struct {
    ssh_options_e option;
    const std::vector<std::string>& list;
  } lists[] = {
      {SSH_OPTIONS_KEY_EXCHANGE, algorithms.kex},
      {SSH_OPTIONS_CIPHERS_C_S, algorithms.ciphers},
      {SSH_OPTIONS_CIPHERS_S_C, algorithms.ciphers},
      {SSH_OPTIONS_HMAC_C_S, algorithms.macs},
      {SSH_OPTIONS_HMAC_S_C, algorithms.macs},
      {SSH_OPTIONS_HOSTKEYS, algorithms.host_key_algorithms},
  };
  for (const auto& entry : lists) {
    if (ssh_options_set(session_, entry.option, config::JoinAlgorithms(entry.list).c_str()) !=
        SSH_OK) {
      Fail({absl::StrCat("ssh algorithms: ", ssh_get_error(session_))});
      return;
    }
  }
  socket_t socket = fd.release();
  fd_ = socket;
  ssh_options_set(session_, SSH_OPTIONS_FD, &socket);  // libssh closes it in ssh_free
  ssh_set_blocking(session_, 0);
  ssh_set_counters(session_, nullptr, &packet_counter_);
  phase_ = Phase::kSsh;
  interest_ = EPOLLIN | EPOLLOUT;
  watching_ = env_.loop.Watch(fd_, interest_, this).ok();
  if (!watching_) {
    Fail({"cannot watch the session socket"});
    return;
  }
  Step();
}

void ClientSession::OnFdEvents(uint32_t events) {
  if (phase_ == Phase::kDead) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) last_rx_ = absl::Now();
  if (phase_ != Phase::kReady) {
    Step();
    return;
  }
  // libssh reads at most 4 KiB per poll; drain a bounded batch per wake-up.
  for (int i = 0; i < 16; ++i) {
    if (ssh_event_dopoll(event_, 0) != SSH_OK) break;
  }
  Service();
}

void ClientSession::Step() {
  if (phase_ == Phase::kSsh) {
    int rc = ssh_connect(session_);
    // libssh treats a socket given with SSH_OPTIONS_FD as "connecting" and, at its first
    // POLLOUT, switches it to blocking mode. A blocking send() would stall this whole loop (and
    // deadlock against a TLS bridge on the same loop): put O_NONBLOCK back.
    KeepNonBlocking(fd_);
    if (rc == SSH_AGAIN) {
      UpdateInterest();
      return;
    }
    if (rc != SSH_OK) {
      Fail({absl::StrCat("ssh handshake failed: ", ErrorOf(session_))});
      return;
    }
    if (!CheckHostKey()) return;
    phase_ = Phase::kAuth;
  }
  if (phase_ == Phase::kAuth) {
    int rc = ssh_userauth_publickey(session_, nullptr, env_.identity);
    if (rc == SSH_AUTH_AGAIN) {
      UpdateInterest();
      return;
    }
    if (rc != SSH_AUTH_SUCCESS) {
      Fail({rc == SSH_AUTH_ERROR ? absl::StrCat("authentication failed: ", ErrorOf(session_))
                                 : std::string("the server refused our key (authentication denied)")});
      return;
    }
    phase_ = Phase::kRemoteForwards;
  }
  if (phase_ == Phase::kRemoteForwards) {
    if (!StepGlobalRequests()) {
      if (phase_ == Phase::kRemoteForwards) UpdateInterest();
      return;
    }
    EnterReady();
  }
}

bool ClientSession::CheckHostKey() {
  const config::UpstreamConfig& config = env_.config;
  ssh_key key = nullptr;
  if (ssh_get_server_publickey(session_, &key) != SSH_OK) {
    Fail({"the server sent no host key"});
    return false;
  }
  std::string presented = KeyFingerprint(key);
  ssh_key_free(key);
  if (config.insecure_accept_any_host_key) {
    env_.logger.Warn("client", "host key not checked (insecure_accept_any_host_key)",
                     {{"upstream", config.name}, {"server", server_}, {"presented", presented}});
    return true;
  }
  std::string expected;
  std::string problem;
  if (!config.host_key_fingerprint.empty()) {
    expected = config.host_key_fingerprint;
    if (expected == presented) return true;
    problem = "host key mismatch";
  } else {
    ssh_knownhosts_entry* entry = nullptr;
    enum ssh_known_hosts_e state = ssh_session_get_known_hosts_entry(session_, &entry);
    ssh_knownhosts_entry_free(entry);
    expected = KnownFingerprints(config.known_hosts, config.server.address);
    switch (state) {
      case SSH_KNOWN_HOSTS_OK: return true;
      case SSH_KNOWN_HOSTS_CHANGED: problem = "host key mismatch (changed since known_hosts)"; break;
      case SSH_KNOWN_HOSTS_OTHER: problem = "host key mismatch (known_hosts has another key type)"; break;
      case SSH_KNOWN_HOSTS_UNKNOWN:
      case SSH_KNOWN_HOSTS_NOT_FOUND: problem = "unknown host key (not in known_hosts)"; break;
      default: problem = absl::StrCat("known_hosts check failed: ", ErrorOf(session_)); break;
    }
  }
  env_.logger.Error("client", "refusing the server's host key",
                    {{"upstream", config.name}, {"server", server_}, {"problem", problem},
                     {"expected", expected}, {"presented", presented},
                     {"known_hosts", config.known_hosts}});
  Fail({problem, /*host_key=*/true});
  return false;
}

void ClientSession::AddRemoteForward(RemoteForwardRef forward) {
  auto entry = std::make_unique<RemoteForward>();
  entry->ref = std::move(forward);
  entry->ref.status->state = phase_ == Phase::kReady || phase_ == Phase::kRemoteForwards
                                 ? "requesting"
                                 : "waiting for upstream";
  remote_forwards_.push_back(std::move(entry));
  if (phase_ == Phase::kReady) Service();
}

void ClientSession::RemoveRemoteForward(const std::string& id) {
  auto it = std::find_if(remote_forwards_.begin(), remote_forwards_.end(),
                         [&](const auto& f) { return f->ref.id == id; });
  if (it == remote_forwards_.end()) return;
  RemoteForward& forward = **it;
  switch (forward.step) {
    case RemoteForward::Step::kQueued:
    case RemoteForward::Step::kRefused: EraseRemoteForward(&forward); return;
    case RemoteForward::Step::kRequesting: forward.removed = true; return;
    case RemoteForward::Step::kActive: forward.step = RemoteForward::Step::kCancelQueued; break;
    case RemoteForward::Step::kCancelQueued:
    case RemoteForward::Step::kCancelling: return;
  }
  if (phase_ == Phase::kReady) Service();
}

int ClientSession::RemoteForwardPort(const std::string& id) const {
  for (const auto& forward : remote_forwards_) {
    if (forward->ref.id == id && forward->step == RemoteForward::Step::kActive) return forward->bound_port;
  }
  return 0;
}

void ClientSession::EraseRemoteForward(const RemoteForward* forward) {
  std::erase_if(remote_forwards_, [&](const auto& f) { return f.get() == forward; });
}

bool ClientSession::StepGlobalRequests() {
  using Step = RemoteForward::Step;
  for (;;) {
    if (global_ == nullptr) {
      for (auto& forward : remote_forwards_) {
        if (forward->step == Step::kQueued || forward->step == Step::kCancelQueued) {
          if (forward->step == Step::kQueued) forward->ref.status->state = "requesting";
          forward->step = forward->step == Step::kQueued ? Step::kRequesting : Step::kCancelling;
          global_ = forward.get();
          break;
        }
      }
      if (global_ == nullptr) return true;
    }
    if (!ReapKeepalive()) return false;  // ours may only go out once libssh has no request
    RemoteForward& forward = *global_;
    const config::ForwardSpec& spec = forward.ref.spec;
    int bound = 0;
    // The first call sends the request; while it is outstanding, later calls only collect the
    // reply (see ssh_global_request in libssh).
    int rc = forward.step == Step::kRequesting
                 ? ssh_channel_listen_forward(session_, spec.bind_host.c_str(), spec.bind_port, &bound)
                 : ssh_channel_cancel_forward(session_, spec.bind_host.c_str(), forward.bound_port);
    if (rc == SSH_AGAIN) return false;
    global_ = nullptr;
    if (rc != SSH_OK && !ssh_is_connected(session_)) {
      Fail({absl::StrCat("connection lost during a -R request: ", ErrorOf(session_))});
      return false;
    }
    FinishGlobalRequest(forward, rc, bound);
  }
}

bool ClientSession::ReapKeepalive() {
  if (!keepalive_outstanding_) return true;
  // With a request outstanding, libssh's global-request calls only collect its reply and never
  // send: this one tells us (unlike ssh_send_keepalive) whether the reply has come. The address
  // matches nothing, so even if it ever went out it would only draw a harmless failure reply.
  int rc = ssh_channel_cancel_forward(session_, "keepalive.alknet.invalid", 0);
  if (rc == SSH_AGAIN) return false;
  keepalive_outstanding_ = false;
  return true;
}

void ClientSession::FinishGlobalRequest(RemoteForward& forward, int rc, int bound) {
  using Step = RemoteForward::Step;
  const config::ForwardSpec& spec = forward.ref.spec;
  ForwardStatus& status = *forward.ref.status;
  if (forward.step == Step::kCancelling) {
    env_.logger.Info("client", "remote forward cancelled",
                     {{"upstream", env_.config.name}, {"forward", forward.ref.id}});
    EraseRemoteForward(&forward);
    return;
  }
  int port = spec.bind_port != 0 ? spec.bind_port : bound;
  std::string listen = absl::StrCat(spec.bind_host.empty() ? "*" : spec.bind_host, ":", port);
  if (rc == SSH_OK) {
    forward.bound_port = port;
    forward.step = forward.removed ? Step::kCancelQueued : Step::kActive;
    status.state = "active";
    env_.logger.Info("client", "remote forward established",
                     {{"upstream", env_.config.name}, {"forward", forward.ref.id}, {"listen", listen}});
    return;
  }
  std::string error = ErrorOf(session_);
  env_.logger.Warn("client", "remote forward refused by the server",
                   {{"upstream", env_.config.name}, {"forward", forward.ref.id}, {"listen", listen},
                    {"error", error}});
  if (forward.removed) {
    EraseRemoteForward(&forward);
    return;
  }
  forward.step = Step::kRefused;
  status.state = "failed: refused by the server";
  status.last_error = absl::StrCat("the server refused tcpip-forward: ", error);
}

void ClientSession::EnterReady() {
  if (handshake_timer_ != 0) {
    env_.loop.CancelTimer(handshake_timer_);
    handshake_timer_ = 0;
  }
  event_ = ssh_event_new();
  if (event_ == nullptr || ssh_event_add_session(event_, session_) != SSH_OK) {
    Fail({"cannot set up the session's event"});
    return;
  }
  phase_ = Phase::kReady;
  const char* kex = ssh_get_kex_algo(session_);
  const char* cipher = ssh_get_cipher_in(session_);  // server->client, as `ssh -v` shows it
  env_.logger.Info("client", "ssh negotiated",
                   {{"upstream", env_.config.name}, {"kex", kex != nullptr ? kex : ""},
                    {"cipher", cipher != nullptr ? cipher : ""}});
  last_rx_ = absl::Now();
  keepalive_timer_ = env_.loop.AddTimer(env_.config.keepalive_interval, [this] { Keepalive(); });
  if (callbacks_.on_ready) callbacks_.on_ready();
  Service();
}

void ClientSession::Service() {
  if (phase_ != Phase::kReady || in_service_) return;
  in_service_ = true;
  // As in the server session: opens and relays may make libssh decode packets, and a request
  // queued then (a forwarded-tcpip open the server waits on) is handled in this pass.
  for (int pass = 0; pass < kServicePasses && phase_ == Phase::kReady; ++pass) {
    ProcessMessages();
    StepGlobalRequests();  // may fail the session
    PollOpens();
    PumpRelays();
    if (packet_counter_.in_packets == packets_seen_) break;
  }
  in_service_ = false;
  if (phase_ != Phase::kReady) return;
  int status = ssh_get_status(session_);
  if ((status & (SSH_CLOSED | SSH_CLOSED_ERROR)) || !ssh_is_connected(session_)) {
    Fail({(status & SSH_CLOSED_ERROR) ? absl::StrCat("connection error: ", ErrorOf(session_))
                                      : std::string("connection closed by the server")});
    return;
  }
  UpdateInterest();
}

void ClientSession::ProcessMessages() {
  for (int i = 0; i < 64 && phase_ == Phase::kReady; ++i) {
    ssh_message message = ssh_message_get(session_);
    if (message == nullptr) {
      packets_seen_ = packet_counter_.in_packets;
      return;
    }
    if (ssh_message_type(message) == SSH_REQUEST_CHANNEL_OPEN &&
        ssh_message_subtype(message) == SSH_CHANNEL_FORWARDED_TCPIP) {
      HandleForwardedOpen(message);
      continue;
    }
    // session, x11, auth-agent... opened by a server: never.
    ssh_message_reply_default(message);
    ssh_message_free(message);
  }
}

void ClientSession::HandleForwardedOpen(ssh_message message) {
  int port = ssh_message_channel_request_open_destination_port(message);
  auto it = std::find_if(remote_forwards_.begin(), remote_forwards_.end(),
                         [&](const auto& f) {
                           return f->step == RemoteForward::Step::kActive && f->bound_port == port;
                         });
  if (it == remote_forwards_.end()) {
    env_.metrics.ChannelOpenFinished(ChannelKind::kForwardedTcpip, ChannelResult::kProhibited);
    ssh_message_reply_default(message);
    ssh_message_free(message);
    return;
  }
  uint64_t id = next_accept_id_++;
  PendingAccept& accept = accepts_[id];
  accept.message = message;
  accept.forward = (*it)->ref.status;
  accept.attempt = env_.connector.Connect(
      (*it)->ref.spec.host, (*it)->ref.spec.host_port, env_.config.request_timeout,
      [this, id](absl::StatusOr<UniqueFd> result) { OnForwardConnectDone(id, std::move(result)); });
}

void ClientSession::OnForwardConnectDone(uint64_t id, absl::StatusOr<UniqueFd> result) {
  auto it = accepts_.find(id);
  if (it == accepts_.end()) return;
  ssh_message message = it->second.message;
  std::shared_ptr<ForwardStatus> forward = std::move(it->second.forward);
  env_.loop.DeleteLater(std::move(it->second.attempt));  // we are inside its callback
  accepts_.erase(it);
  if (phase_ != Phase::kReady) {
    ssh_message_free(message);
    return;
  }
  if (!result.ok()) {
    env_.metrics.ChannelOpenFinished(ChannelKind::kForwardedTcpip, ChannelResult::kConnectFailed);
    std::string reason(ConnectFailureName(ClassifyConnectError(result.status())));
    forward->last_error = absl::StrCat("connect failed: ", reason);
    env_.logger.Info("client", "forwarded channel refused",
                     {{"upstream", env_.config.name}, {"reason", reason}});
    ssh_message_reply_default(message);
    ssh_message_free(message);
    Service();
    return;
  }
  ssh_channel channel = ssh_message_channel_request_open_reply_accept(message);
  ssh_message_free(message);
  if (channel != nullptr) {
    StartRelay(channel, *std::move(result), ChannelKind::kForwardedTcpip, "", std::move(forward));
  }
  Service();
}

void ClientSession::Open(std::unique_ptr<StreamRequest> request) {
  // The SOCKS5 handshake and the -L validation refuse these already; this is the last gate
  // before a channel: the agent's own services are never opened for a local program.
  if (IsReservedDestination(request->host) || request->port == 0) {
    env_.logger.Info("client", "channel refused",
                     {{"upstream", env_.config.name}, {"reason", "reserved-destination"}});
    AnswerFailure(*request, socks5::Reply::kNotAllowed);
    return;
  }
  if (phase_ != Phase::kReady) {
    AnswerFailure(*request, socks5::Reply::kGeneralFailure);
    return;
  }
  ssh_channel channel = ssh_channel_new(session_);
  if (channel == nullptr) {
    AnswerFailure(*request, socks5::Reply::kGeneralFailure);
    return;
  }
  pending_.push_back(PendingOpen{channel, std::move(request)});
  Service();
}

void ClientSession::PollOpens() {
  // StepOpen may poll the socket (libssh does, inside ssh_channel_open_forward): that can queue
  // messages and relay data, but never adds or removes pending opens.
  for (size_t i = 0; i < pending_.size() && phase_ == Phase::kReady;) {
    if (StepOpen(pending_[i])) {
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

bool ClientSession::StepOpen(PendingOpen& open) {
  StreamRequest& request = *open.request;
  int rc = ssh_channel_open_forward(open.channel, request.host.c_str(), request.port,
                                    request.originator_ip.c_str(), request.originator_port);
  if (rc == SSH_OK) {
    ssh_channel channel = std::exchange(open.channel, nullptr);
    if (!AnswerSuccess(request)) {
      ssh_channel_close(channel);
      ssh_channel_free(channel);
      return true;
    }
    StartRelay(channel, std::move(request.fd), request.metric_kind(), request.early_data,
               request.forward);
    return true;
  }
  if (rc == SSH_AGAIN && absl::Now() < request.deadline) return false;
  socks5::Reply reply = rc == SSH_AGAIN ? socks5::Reply::kTtlExpired
                                        : socks5::ReplyForOpenFailure(ErrorOf(session_));
  env_.metrics.ChannelOpenFinished(request.metric_kind(), reply == socks5::Reply::kNotAllowed
                                                              ? ChannelResult::kProhibited
                                                              : ChannelResult::kConnectFailed);
  // Only the reason: destinations never reach the log.
  env_.logger.Info("client", "channel refused",
                   {{"upstream", env_.config.name}, {"reason", std::string(socks5::ReplyName(reply))}});
  AnswerFailure(request, reply);
  ssh_channel_free(std::exchange(open.channel, nullptr));
  return true;
}

void ClientSession::StartRelay(ssh_channel channel, UniqueFd fd, ChannelKind kind,
                               const std::string& early, std::shared_ptr<ForwardStatus> forward) {
  if (!early.empty()) ssh_channel_write(channel, early.data(), static_cast<uint32_t>(early.size()));
  auto relay = std::make_unique<ChannelRelay>(env_.loop, *this, env_.scratch, channel, std::move(fd));
  relay->set_kind(kind);
  if (forward) {
    // Aliasing: the relay keeps the whole status alive and adds to its byte counts.
    relay->set_tally(std::shared_ptr<RelayCounters>(forward, &forward->bytes));
  }
  if (!relays_.Start(std::move(relay))) {
    env_.metrics.ChannelOpenFinished(kind, ChannelResult::kConnectFailed);
    return;
  }
  env_.metrics.ChannelOpenFinished(kind, ChannelResult::kOpened);
  if (forward) {
    ++forward->connections;
    forward->bytes.from_target += early.size();
  }
}

void ClientSession::PumpRelays() {
  relays_.Pump([this] { return phase_ == Phase::kReady; },
               [this](const ChannelRelay& relay) { env_.metrics.ChannelClosed(relay.kind()); });
}

void ClientSession::Keepalive() {
  keepalive_timer_ = 0;
  if (phase_ != Phase::kReady) return;
  // Bytes libssh read inside its own calls (channel opens, keepalives) never woke epoll: the
  // kernel's count of the last data received is the authority.
  tcp_info info{};
  socklen_t info_len = sizeof(info);
  if (getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &info_len) == 0) {
    absl::Time kernel_rx = absl::Now() - absl::Milliseconds(info.tcpi_last_data_recv);
    if (kernel_rx > last_rx_) last_rx_ = kernel_rx;
  }
  absl::Duration silent = absl::Now() - last_rx_;
  if (silent > env_.config.keepalive_timeout) {
    Fail({absl::StrCat("nothing from the server for ",
                       config::FormatDuration(absl::Trunc(silent, absl::Seconds(1))),
                       " (keepalive timeout)")});
    return;
  }
  // libssh has one global request outstanding at a time, keepalives included. A -R request in
  // flight (or queued) already draws a reply from the server, so the keepalive skips this turn;
  // so does one whose previous keepalive is still unanswered (last_rx_ decides about that).
  bool forward_requests = global_ != nullptr ||
                          std::any_of(remote_forwards_.begin(), remote_forwards_.end(), [](const auto& f) {
                            return f->step == RemoteForward::Step::kQueued ||
                                   f->step == RemoteForward::Step::kCancelQueued;
                          });
  if (!forward_requests && ReapKeepalive()) {
    ssh_send_keepalive(session_);  // no request outstanding: this sends one, never waits
    keepalive_outstanding_ = true;
  }
  keepalive_timer_ = env_.loop.AddTimer(env_.config.keepalive_interval, [this] { Keepalive(); });
  Service();
}

void ClientSession::UpdateInterest() {
  if (!watching_ || session_ == nullptr) return;
  uint32_t wanted = EPOLLIN;
  if (ssh_get_poll_flags(session_) & SSH_WRITE_PENDING) wanted |= EPOLLOUT;
  if (wanted != interest_) {
    interest_ = wanted;
    (void)env_.loop.Modify(fd_, wanted);
  }
}

void ClientSession::Fail(SessionLoss loss) {
  if (phase_ == Phase::kDead) return;
  std::vector<std::unique_ptr<StreamRequest>> unanswered;
  Teardown(&unanswered);
  auto on_lost = std::move(callbacks_.on_lost);
  if (on_lost) on_lost(std::move(loss), std::move(unanswered));
}

void ClientSession::Close() {
  if (phase_ == Phase::kDead) return;
  Teardown(nullptr);
}

void ClientSession::Teardown(std::vector<std::unique_ptr<StreamRequest>>* unanswered) {
  phase_ = Phase::kDead;
  global_ = nullptr;
  remote_forwards_.clear();  // the upstream keeps the forwards for the next session
  for (EventLoop::TimerId* timer : {&handshake_timer_, &keepalive_timer_}) {
    if (*timer != 0) env_.loop.CancelTimer(*timer);
    *timer = 0;
  }
  for (PendingOpen& open : pending_) {
    if (open.channel != nullptr) ssh_channel_free(open.channel);
    if (unanswered != nullptr && open.request->fd.valid()) {
      unanswered->push_back(std::move(open.request));
    } else {
      AnswerFailure(*open.request, socks5::Reply::kGeneralFailure);
    }
  }
  pending_.clear();
  for (auto& [id, accept] : accepts_) {
    ssh_message_free(accept.message);
    env_.loop.DeleteLater(std::move(accept.attempt));
  }
  accepts_.clear();
  relays_.CloseAll([this](const ChannelRelay& relay) { env_.metrics.ChannelClosed(relay.kind()); });
  if (watching_) {
    env_.loop.Unwatch(fd_);
    watching_ = false;
  }
  if (session_ != nullptr) {
    if (event_ != nullptr) ssh_event_remove_session(event_, session_);
    if (ssh_is_connected(session_)) ssh_disconnect(session_);
    ssh_free(session_);  // closes the socket
    session_ = nullptr;
    fd_ = -1;
  }
  if (event_ != nullptr) {
    ssh_event_free(event_);
    event_ = nullptr;
  }
  if (stream_) {  // after ssh_free: a TLS bridge passes on what SSH wrote last, then close_notify
    stream_->Close();
    env_.loop.DeleteLater(std::move(stream_));
  }
}

}  // namespace alknet
