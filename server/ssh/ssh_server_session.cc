// One SSH server session on one worker loop: key exchange, public-key auth, direct-tcpip
// channels answered after the outbound connect, and the relays that carry them.
//
// libssh rules this file follows (libssh 0.10): no server or message callbacks are installed,
// so every request queues and is popped with ssh_message_get() after each poll; a channel-open
// message is kept until the outbound connect finishes, then answered. libssh calls that poll
// internally (channel writes, replies) may run channel callbacks nested; those only record
// state, and all follow-up work happens in Service() once the poll has returned.
//
// libssh marks the ssh_message auth accessors deprecated in favour of server callbacks, but
// callbacks cannot defer a channel-open reply until our connect finishes; the message API is
// the supported way to do that in 0.10, so its deprecation warnings are silenced here only.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include "server/ssh/ssh_server_session.h"

#include <libssh/callbacks.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/auth/address_patterns.h"
#include "server/auth/auth_log.h"
#include "server/auth/fingerprint.h"
#include "server/common/strings.h"
#include "server/forward/forward_policy.h"
#include "server/ssh/libssh_status.h"
#include "server/ssh/rate_rejections.h"

namespace alknet {
namespace {

// ssh_event_dopoll() calls per wake-up of the session socket (see OnFdEvents).
constexpr int kDopollBatch = 64;
// Service passes per wake-up at most (Service()).
constexpr int kServicePasses = 4;

std::string_view AuthMethodName(int subtype) {
  switch (subtype) {
    case SSH_AUTH_METHOD_NONE: return "none";
    case SSH_AUTH_METHOD_PASSWORD: return "password";
    case SSH_AUTH_METHOD_PUBLICKEY: return "publickey";
    case SSH_AUTH_METHOD_HOSTBASED: return "hostbased";
    case SSH_AUTH_METHOD_INTERACTIVE: return "keyboard-interactive";
    case SSH_AUTH_METHOD_GSSAPI_MIC: return "gssapi-with-mic";
    default: return "unknown";
  }
}

AuthMethod MetricMethod(std::string_view name) {
  if (name == "publickey") return AuthMethod::kPublicKey;
  if (name == "password") return AuthMethod::kPassword;
  if (name == "keyboard-interactive") return AuthMethod::kKeyboardInteractive;
  return AuthMethod::kOther;
}

bool IsCertificateType(enum ssh_keytypes_e type) {
  switch (type) {
    case SSH_KEYTYPE_RSA_CERT01:
    case SSH_KEYTYPE_ECDSA_P256_CERT01:
    case SSH_KEYTYPE_ECDSA_P384_CERT01:
    case SSH_KEYTYPE_ECDSA_P521_CERT01:
    case SSH_KEYTYPE_ED25519_CERT01:
    case SSH_KEYTYPE_DSS_CERT01: return true;
    default: return false;
  }
}

// A non-blocking connect to a local Unix stream socket (it completes at once or fails).
absl::StatusOr<UniqueFd> ConnectUnixSocket(const std::string& path) {
  sockaddr_un address{};
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return absl::UnavailableError("no admin socket");
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ResourceExhaustedError("socket failed");
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, path.size());
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return absl::UnavailableError("admin socket connect failed");
  }
  return fd;
}

// A FIDO/U2F security key (sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com and
// their certificates).
bool IsSecurityKeyType(ssh_key key, std::string_view key_type) {
  if (key != nullptr) {
    switch (ssh_key_type(key)) {
      case SSH_KEYTYPE_SK_ECDSA:
      case SSH_KEYTYPE_SK_ECDSA_CERT01:
      case SSH_KEYTYPE_SK_ED25519:
      case SSH_KEYTYPE_SK_ED25519_CERT01:
        return true;
      default:
        break;
    }
  }
  return key_type.substr(0, 3) == "sk-";
}

}  // namespace

SshServerSession::SshServerSession(uint64_t id, SessionEnvironment& env, ConnectedStream stream,
                                   Callbacks callbacks)
    : id_(id), env_(env), info_(std::move(stream.info)), stream_fd_(std::move(stream.fd)),
      callbacks_(std::move(callbacks)),
      remote_forwards_(env.loop, env.logger, env.metrics,
                       {.can_open = [this] {
                          return !shutting_down_ && !closed_ &&
                                 open_channels() < static_cast<size_t>(env_.limits.max_channels);
                        },
                        .opened = [this](ssh_channel channel, UniqueFd fd) {
                          StartRelay(channel, std::move(fd), ChannelKind::kForwardedTcpip);
                        },
                        .after_io = [this] { Service(); }}) {
  transport_label_ = TransportFromName(info_.transport);
  env_.metrics.SessionStarted(transport_label_);
  metrics_started_ = true;
}

SshServerSession::~SshServerSession() { Terminate("destroyed"); }

absl::Status SshServerSession::Start(ssh_bind bind) {
  session_ = ssh_new();
  if (session_ == nullptr) return absl::ResourceExhaustedError("ssh_new failed");
  int rc = ssh_bind_accept_fd(bind, session_, stream_fd_.get());
  if (rc != SSH_OK) return SshStatus(rc, bind, "ssh_bind_accept_fd");
  fd_ = stream_fd_.release();  // libssh owns the descriptor from here on
  ssh_set_blocking(session_, 0);
  ssh_set_counters(session_, nullptr, &packet_counter_);
  ssh_set_auth_methods(session_, SSH_AUTH_METHOD_PUBLICKEY);
  // Sends our banner; the rest of the key exchange runs inside ssh_event_dopoll().
  rc = ssh_handle_key_exchange(session_);
  if (rc == SSH_ERROR) return SshStatus(rc, session_, "key exchange");
  event_ = ssh_event_new();
  if (event_ == nullptr) return absl::ResourceExhaustedError("ssh_event_new failed");
  rc = ssh_event_add_session(event_, session_);
  if (rc != SSH_OK) return SshStatus(rc, session_, "ssh_event_add_session");
  interest_ = EPOLLIN;
  if (absl::Status watched = env_.loop.Watch(fd_, interest_, this); !watched.ok()) return watched;
  grace_timer_ = env_.loop.AddTimer(env_.limits.login_grace_time, [this] {
    grace_timer_ = 0;
    if (authenticated_ || closed_) return;
    grace_expired_ = true;
    env_.metrics.Rejected(RejectReason::kLoginGraceTimeout);
    auth::LogAuthEvent(env_.logger, {.accepted = false, .reason = "login-grace-timeout",
                                     .method = "none", .user = user_, .source_ip = info_.peer.ip,
                                     .source_port = info_.peer.port, .transport = info_.transport});
    Terminate("login grace time exceeded");
  });
  UpdateSocketInterest();
  return absl::OkStatus();
}

void SshServerSession::OnFdEvents(uint32_t events) {
  if (closed_) return;
  // libssh reads at most 4 KiB per poll (one poll() and one recv() each); drain a bounded batch
  // per wake-up: 64 polls move up to 256 KiB, about 8 full-size packets from OpenSSH.
  for (int i = 0; i < kDopollBatch; ++i) {
    int rc = ssh_event_dopoll(event_, 0);
    if (rc != SSH_OK) break;  // SSH_AGAIN: nothing more ready; SSH_ERROR: checked in Service
  }
  if (!authenticated_) {
    // During key exchange we often have nothing to send back, so the kernel would delay its
    // ACK by 40 ms while the client's Nagle holds its next packet: acknowledge at once.
    // A no-op on non-TCP streams (socketpair bridges), where it simply fails.
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
  }
  Service();
}

void SshServerSession::NeedsAttention(ChannelRelay* relay) { relays_.RequestPump(relay); }

void SshServerSession::Service() {
  if (closed_ || in_service_) return;
  in_service_ = true;
  // Pending opens and relays call into libssh, which may decode packets there too: a request
  // queued meanwhile is handled in this pass, not at the next socket event (a client blocked on
  // its reply, e.g. a cancel-tcpip-forward, sends none). Another pass only then, at most a few.
  for (int pass = 0; pass < kServicePasses && !closed_; ++pass) {
    ProcessMessages();
    remote_forwards_.Poll();
    PumpRelays();
    if (packet_counter_.in_packets == packets_seen_) break;
  }
  in_service_ = false;
  if (closed_) return;
  int status = ssh_get_status(session_);
  if ((status & (SSH_CLOSED | SSH_CLOSED_ERROR)) || !ssh_is_connected(session_)) {
    // libssh reports a peer's EOF as an error state; both mean the client went away.
    Terminate(status & SSH_CLOSED ? "client disconnected" : "connection closed");
    return;
  }
  if (shutting_down_ && open_channels() == 0) {
    Terminate("agent shutting down");
    return;
  }
  UpdateSocketInterest();
}

void SshServerSession::ProcessMessages() {
  // Requests are queued only while libssh decodes packets. With an empty queue,
  // ssh_message_get() would spend a poll() finding nothing (once per relay event on bulk
  // downloads), so it is skipped when no packet arrived since the queue was last emptied.
  if (packet_counter_.in_packets == packets_seen_) return;
  // Bounded per service pass; anything left is picked up on the next one.
  for (int i = 0; i < 64 && !closed_; ++i) {
    ssh_message message = ssh_message_get(session_);
    if (message == nullptr) {
      packets_seen_ = packet_counter_.in_packets;
      return;
    }
    HandleMessage(message);
  }
}

void SshServerSession::HandleMessage(ssh_message message) {
  bool kept = false;
  switch (ssh_message_type(message)) {
    case SSH_REQUEST_AUTH:
      kept = HandleAuth(message);
      break;
    case SSH_REQUEST_CHANNEL_OPEN:
      if (!authenticated_) {
        ssh_message_reply_default(message);
      } else if (ssh_message_subtype(message) == SSH_CHANNEL_DIRECT_TCPIP) {
        kept = HandleDirectTcpip(message);
      } else {
        // session, x11, forwarded-tcpip, auth-agent...: we never run shells or commands.
        RefuseChannel(message, "channel-type-not-supported");
      }
      break;
    case SSH_REQUEST_GLOBAL:
      if (authenticated_) {
        HandleGlobalRequest(message);
      } else {
        ssh_message_reply_default(message);
      }
      break;
    default:
      // Service requests get their success; channel and global requests (exec, pty,
      // tcpip-forward, keepalive@openssh.com...) get a failure reply when one is wanted.
      ssh_message_reply_default(message);
      break;
  }
  if (!kept) ssh_message_free(message);
}

bool SshServerSession::HandleAuth(ssh_message message) {
  const char* user = ssh_message_auth_user(message);
  int method = ssh_message_subtype(message);
  if (authenticated_) {
    // Later requests change nothing, not even the user name the session's checks use.
    ssh_message_reply_default(message);
    return false;
  }
  user_ = user != nullptr ? user : "";
  if (method == SSH_AUTH_METHOD_PUBLICKEY) return HandlePublicKeyAuth(message, user_);
  if (method != SSH_AUTH_METHOD_NONE) {
    RecordAuthFailure("method-not-allowed", AuthMethodName(method), user_, "", "");
  }
  ssh_message_auth_set_methods(message, SSH_AUTH_METHOD_PUBLICKEY);
  ssh_message_reply_default(message);
  return false;
}

bool SshServerSession::HandlePublicKeyAuth(ssh_message message, const std::string& user) {
  ssh_key key = ssh_message_auth_pubkey(message);
  int state = ssh_message_auth_publickey_state(message);
  std::string key_type = key != nullptr ? ssh_key_type_to_char(ssh_key_type(key)) : "";
  std::string blob;
  char* base64 = nullptr;
  if (key != nullptr && ssh_pki_export_pubkey_base64(key, &base64) == SSH_OK) {
    if (auto decoded = auth::Base64Decode(base64)) blob = *std::move(decoded);
  }
  ssh_string_free_char(base64);
  std::string fingerprint = blob.empty() ? "" : auth::Sha256Fingerprint(blob);

  std::string_view reason;
  std::shared_ptr<const auth::KeySet> keys = env_.keys.Current();
  const auth::AuthorizedKey* entry = blob.empty() ? nullptr : keys->Find(blob);
  if (IsSecurityKeyType(key, key_type)) {
    // FIDO keys (sk-*, plain or certified): libssh 0.10 verifies their signature but does not
    // give the server the signature's flags, so user presence (and verify-required) cannot be
    // enforced as sshd does. Refused rather than accepted without a touch.
    reason = "sk-key-unsupported";
  } else if (key != nullptr && (IsCertificateType(ssh_key_type(key)) || auth::IsCertificateKeyType(key_type))) {
    return HandleCertificateAuth(message, user, state, blob, key_type);
  } else if (KeyRevokedByList(blob)) {
    reason = "key-revoked-krl";
  } else if (entry == nullptr || entry->options.cert_authority) {
    reason = "unknown-key";
  } else if (entry->options.expiry && *entry->options.expiry <= absl::Now()) {
    reason = "key-expired";
  } else if (!auth::SourceAllowed(entry->options.from, info_.peer.ip)) {
    reason = "from-mismatch";
  } else if (state == SSH_PUBLICKEY_STATE_WRONG || state == SSH_PUBLICKEY_STATE_ERROR) {
    reason = "bad-signature";
  }
  if (!reason.empty()) {
    RecordAuthFailure(reason, "publickey", user, fingerprint, key_type);
    if (!closed_) {
      ssh_message_auth_set_methods(message, SSH_AUTH_METHOD_PUBLICKEY);
      ssh_message_reply_default(message);
    }
    return false;
  }
  if (state == SSH_PUBLICKEY_STATE_NONE) {
    // The client asks whether this key would do; it signs next.
    ssh_message_auth_reply_pk_ok_simple(message);
    return false;
  }
  AcceptAuthentication(message, user, std::move(blob), fingerprint, key_type, nullptr);
  return false;
}

void SshServerSession::AcceptAuthentication(ssh_message message, const std::string& user,
                                            std::string blob, const std::string& fingerprint,
                                            const std::string& key_type,
                                            const auth::CertificateLogInfo* certificate) {
  if (env_.rate_limiter != nullptr) {
    // rate_limits: sessions per key (rate and cap), keyed by the fingerprint that logged in.
    SessionVerdict verdict = env_.rate_limiter->AdmitSession(fingerprint, key_lease_);
    if (verdict != SessionVerdict::kAdmitted) {
      const RateRejection& rejection = verdict == SessionVerdict::kSessionRate ? kSessionRateRejection
                                       : verdict == SessionVerdict::kSessionsPerKey
                                           ? kSessionsPerKeyRejection
                                           : kKeyTableFullRejection;
      RecordRateRejection(env_.logger, env_.metrics, *env_.rate_limiter, rejection, info_, user,
                          fingerprint);
      ssh_message_auth_set_methods(message, SSH_AUTH_METHOD_PUBLICKEY);
      ssh_message_reply_default(message);
      Terminate(rejection.rule);
      return;
    }
  }
  ssh_message_auth_reply_success(message, 0);
  authenticated_ = true;
  key_blob_ = std::move(blob);
  key_fingerprint_ = fingerprint;
  env_.metrics.AuthAttempt(AuthResult::kAccepted, AuthMethod::kPublicKey);
  env_.metrics.HandshakeCompleted(transport_label_, absl::ToDoubleSeconds(absl::Now() - started_));
  env_.metrics.KeySessionDelta(key_fingerprint_, +1);
  env_.keys.NoteUsed(key_fingerprint_, absl::Now());
  if (grace_timer_ != 0) {
    env_.loop.CancelTimer(grace_timer_);
    grace_timer_ = 0;
  }
  auth::LogAuthEvent(env_.logger, {.accepted = true, .method = "publickey", .user = user,
                                   .source_ip = info_.peer.ip, .source_port = info_.peer.port,
                                   .transport = info_.transport, .fingerprint = fingerprint,
                                   .key_type = key_type, .certificate = certificate});
  if (callbacks_.on_authenticated) callbacks_.on_authenticated();
}

const auth::TrustStores& SshServerSession::Trust() const {
  static const auth::TrustStores kNoTrust;
  return env_.trust != nullptr ? *env_.trust : kNoTrust;
}

bool SshServerSession::KeyRevokedByList(std::string_view blob) const {
  if (blob.empty()) return false;
  return Trust().revoked.Current()->IsKeyRevoked(blob);
}

bool SshServerSession::HandleCertificateAuth(ssh_message message, const std::string& user, int state,
                                             const std::string& blob, const std::string& key_type) {
  // libssh verified the user's signature against the key inside the certificate and nothing
  // else: the certificate itself is checked here, for the probe (state NONE) as fully as for
  // the signed request.
  auto refuse = [&](std::string_view reason, std::string_view fingerprint,
                    const auth::CertificateLogInfo* log_info) {
    RecordAuthFailure(reason, "publickey", user, fingerprint, key_type, log_info);
    if (!closed_) {
      ssh_message_auth_set_methods(message, SSH_AUTH_METHOD_PUBLICKEY);
      ssh_message_reply_default(message);
    }
    return false;
  };
  std::shared_ptr<const auth::Certificate> certificate;
  bool verify_signature = false;
  if (probed_certificate_ != nullptr && probed_certificate_->blob == blob) {
    certificate = probed_certificate_;  // parsed and verified for this connection's probe
  } else {
    absl::StatusOr<auth::Certificate> parsed = auth::ParseCertificate(blob);
    if (!parsed.ok()) {
      env_.logger.Debug("auth", "invalid certificate",
                        {{"src", info_.peer.ip}, {"error", std::string(parsed.status().message())}});
      return refuse(auth::cert_reason::kInvalid, blob.empty() ? "" : auth::Sha256Fingerprint(blob), nullptr);
    }
    // The CA signature is checked by EvaluateCertificate, after the CA was found trusted: an
    // unknown CA costs no signature verification (its id, serial and CA still get logged).
    certificate = std::make_shared<const auth::Certificate>(*std::move(parsed));
    verify_signature = true;
  }
  const std::string fingerprint = auth::Sha256Fingerprint(certificate->public_key);
  const std::string ca_fingerprint = auth::Sha256Fingerprint(certificate->ca_key);
  const auth::CertificateLogInfo log_info{certificate->key_id, certificate->serial, ca_fingerprint};

  const auth::TrustStores& trust = Trust();
  std::shared_ptr<const auth::KeySet> keys = env_.keys.Current();
  std::shared_ptr<const auth::TrustedCaSet> cas = trust.cas.Current();
  std::shared_ptr<const auth::RevocationList> revoked = trust.revoked.Current();
  const auth::CertificateVerdict verdict = auth::EvaluateCertificate(
      *certificate, {.user = user, .source_ip = info_.peer.ip, .now = absl::Now(),
                     .clock_skew = trust.clock_skew, .verify_signature = verify_signature,
                     .authorized_keys = keys.get(),
                     .trusted_cas = cas.get(), .revoked = revoked.get()});
  std::string_view reason = verdict.reason;
  if (reason.empty() && (state == SSH_PUBLICKEY_STATE_WRONG || state == SSH_PUBLICKEY_STATE_ERROR)) {
    reason = "bad-signature";
  }
  if (!reason.empty()) {
    if (!verdict.detail.empty()) {
      env_.logger.Debug("auth", "certificate refused",
                        {{"src", info_.peer.ip}, {"reason", std::string(reason)}, {"detail", verdict.detail}});
    }
    return refuse(reason, fingerprint, &log_info);
  }
  if (state == SSH_PUBLICKEY_STATE_NONE) {
    probed_certificate_ = std::move(certificate);
    ssh_message_auth_reply_pk_ok_simple(message);
    return false;
  }
  env_.logger.Debug("auth", "certificate accepted", {{"src", info_.peer.ip}, {"ca_source", verdict.ca_source}});
  certificate_ = certificate;
  probed_certificate_.reset();
  AcceptAuthentication(message, user, certificate->public_key, fingerprint, key_type, &log_info);
  return false;
}

std::string_view SshServerSession::CheckCertificateSession(const auth::KeySet& keys,
                                                           auth::KeyOptions& options) const {
  const auth::TrustStores& trust = Trust();
  std::shared_ptr<const auth::TrustedCaSet> cas = trust.cas.Current();
  std::shared_ptr<const auth::RevocationList> revoked = trust.revoked.Current();
  // The validity window was checked at login; sshd does not cut sessions at valid_before either.
  auth::CertificateVerdict verdict = auth::EvaluateCertificate(
      *certificate_, {.user = user_, .source_ip = info_.peer.ip, .now = absl::Now(),
                      .clock_skew = trust.clock_skew, .check_validity_period = false,
                      .authorized_keys = &keys, .trusted_cas = cas.get(), .revoked = revoked.get()});
  if (!verdict.accepted()) return verdict.reason;
  if (!verdict.permit_port_forwarding) return auth::cert_reason::kNoPortForwarding;
  options = std::move(verdict.options);
  return {};
}

void SshServerSession::RecordAuthFailure(std::string_view reason, std::string_view method,
                                         std::string_view user, std::string_view fingerprint,
                                         std::string_view key_type,
                                         const auth::CertificateLogInfo* certificate) {
  auth::LogAuthEvent(env_.logger, {.accepted = false, .reason = reason, .method = method,
                                   .user = user, .source_ip = info_.peer.ip,
                                   .source_port = info_.peer.port, .transport = info_.transport,
                                   .fingerprint = fingerprint, .key_type = key_type,
                                   .certificate = certificate});
  env_.metrics.AuthAttempt(AuthResult::kRejected, MetricMethod(method));
  if (++auth_failures_ >= env_.limits.max_auth_attempts) {
    env_.metrics.Rejected(RejectReason::kTooManyAuthAttempts);
    auth::LogAuthEvent(env_.logger, {.accepted = false, .reason = "too-many-attempts",
                                     .method = method, .user = user, .source_ip = info_.peer.ip,
                                     .source_port = info_.peer.port, .transport = info_.transport});
    Terminate("too many authentication failures");
  }
}

SessionSnapshot SshServerSession::Snapshot() const {
  SessionSnapshot snapshot;
  snapshot.id = id_;
  snapshot.authenticated = authenticated_;
  snapshot.user = user_;
  snapshot.key_fingerprint = key_fingerprint_;
  snapshot.peer = info_.peer;
  snapshot.transport = info_.transport;
  snapshot.started = started_;
  snapshot.open_channels = static_cast<uint32_t>(open_channels());
  snapshot.channels_opened = channels_opened_;
  snapshot.bytes_upstream = bytes_to_targets_;
  snapshot.bytes_downstream = bytes_from_targets_;
  relays_.ForEach([&](const ChannelRelay& relay) {
    snapshot.bytes_upstream += relay.counters().to_target;
    snapshot.bytes_downstream += relay.counters().from_target;
  });
  return snapshot;
}

SessionResult SshServerSession::Outcome() const {
  if (authenticated_) return SessionResult::kAuthenticated;
  if (grace_expired_) return SessionResult::kLoginTimeout;
  if (auth_failures_ > 0) return SessionResult::kAuthFailed;
  return SessionResult::kClosedBeforeAuth;
}

void SshServerSession::RejectChannel(ssh_message message, RejectReason reason,
                                     std::string_view log_reason) {
  env_.metrics.Rejected(reason);
  env_.metrics.ChannelOpenFinished(ChannelKind::kDirectTcpip, ChannelResult::kProhibited);
  RefuseChannel(message, log_reason);
}

void SshServerSession::RefuseChannel(ssh_message message, std::string_view reason) {
  // Only the reason is logged: tunnel destinations never reach the log.
  env_.logger.Info("session", "channel refused",
                   {{"src", info_.peer.ip}, {"key", key_fingerprint_}, {"reason", std::string(reason)}});
  ssh_message_reply_default(message);
}

bool SshServerSession::HandleDirectTcpip(ssh_message message) {
  const char* destination = ssh_message_channel_request_open_destination(message);
  std::string host = destination != nullptr ? destination : "";
  int port = ssh_message_channel_request_open_destination_port(message);
  if (shutting_down_) {
    RejectChannel(message, RejectReason::kShuttingDown, "shutting-down");
    return false;
  }
  if (open_channels() >= static_cast<size_t>(env_.limits.max_channels)) {
    RejectChannel(message, RejectReason::kTooManyChannels, "too-many-channels");
    return false;
  }
  if (env_.rate_limiter != nullptr) {
    // rate_limits.channels_per_session, as configured now (a change applies to the next open).
    const auto [rate, burst] = env_.rate_limiter->channel_rate();
    const int64_t now = env_.rate_limiter->clock().NowNanos();
    channel_bucket_.Configure(rate, burst, now);
    if (!channel_bucket_.TryTake(now)) {
      RecordRateRejection(env_.logger, env_.metrics, *env_.rate_limiter, kChannelRateRejection,
                          info_, user_, key_fingerprint_);
      env_.metrics.ChannelOpenFinished(ChannelKind::kDirectTcpip, ChannelResult::kProhibited);
      ssh_message_reply_default(message);
      return false;
    }
  }
  // Policy is checked against the key's current entry: a removed key opens nothing more.
  // Certificate sessions have no entry: their certificate is re-checked against the current
  // trusted CAs, cert-authority lines and revocations instead.
  std::shared_ptr<const auth::KeySet> keys = env_.keys.Current();
  const auth::AuthorizedKey* entry = certificate_ != nullptr ? nullptr : keys->Find(key_blob_);
  auth::KeyOptions certificate_options;
  if (certificate_ != nullptr) {
    std::string_view refusal = CheckCertificateSession(*keys, certificate_options);
    if (!refusal.empty()) {
      RejectChannel(message,
                    refusal == auth::cert_reason::kNoPortForwarding ? RejectReason::kPortForwardingDisabled
                                                                    : RejectReason::kKeyRevoked,
                    refusal);
      return false;
    }
  } else if (entry == nullptr) {
    RejectChannel(message, RejectReason::kKeyRevoked, "key-revoked");
    return false;
  } else if (KeyRevokedByList(key_blob_)) {
    RejectChannel(message, RejectReason::kKeyRevoked, "key-revoked-krl");
    return false;
  }
  const auth::KeyOptions& options = entry != nullptr ? entry->options : certificate_options;
  if (host == kAdminDestination && port == 0) {
    // The admin API over SSH: admin-role keys only, connected to the local admin socket.
    if (entry == nullptr || !entry->admin_role) {
      RejectChannel(message, RejectReason::kReservedDestination, "admin-role-required");
      return false;
    }
    absl::StatusOr<UniqueFd> admin = ConnectUnixSocket(env_.admin_socket_path);
    if (!admin.ok()) {
      RejectChannel(message, RejectReason::kReservedDestination, "admin-unavailable");
      return false;
    }
    uint64_t open_id = next_open_id_++;
    PendingOpen& pending = pending_opens_[open_id];
    pending.message = message;
    pending.started = absl::Now();
    OnConnectDone(open_id, std::move(admin));  // answers and frees the message
    return true;
  }
  ForwardVerdict verdict = CheckDirectForward(options, host, static_cast<uint32_t>(port));
  if (verdict != ForwardVerdict::kAllowed) {
    RejectReason reason = verdict == ForwardVerdict::kForwardingDisabled ? RejectReason::kPortForwardingDisabled
                          : verdict == ForwardVerdict::kReservedName     ? RejectReason::kReservedDestination
                                                                          : RejectReason::kPermitOpen;
    RejectChannel(message, reason, ForwardVerdictName(verdict));
    return false;
  }
  uint64_t open_id = next_open_id_++;
  // The forwarding policy on top of permitopen= (ADR 0014). Phase 1 here, by the name as
  // requested (a numeric host is decided completely); phase 2 in the connector, on each
  // resolved address right before connecting to it.
  AddressFilter filter;
  if (env_.forwarding != nullptr) {
    std::shared_ptr<const fwd::CompiledPolicy> policy = env_.forwarding->Current();
    auto query = std::make_shared<const fwd::ForwardQuery>(
        PolicyQuery(entry, host, static_cast<uint16_t>(port), fwd::kLocal));
    fwd::Decision decision = fwd::DecideByName(*policy, query->View());
    if (!decision.allow) {
      RejectByRule(message, decision.RuleName());
      return false;
    }
    if (decision.needs_address) {
      filter = [this, open_id, policy, query](const ResolvedAddress& resolved) {
        std::optional<fwd::IpAddress> address = fwd::IpAddress::FromSockaddr(resolved.storage);
        if (!address.has_value()) return false;
        fwd::Decision verdict = fwd::DecideAddress(*policy, query->View(), *address);
        if (!verdict.allow) {
          auto it = pending_opens_.find(open_id);
          if (it != pending_opens_.end()) it->second.denied_rule = std::string(verdict.RuleName());
        }
        return verdict.allow;
      };
    }
  }
  env_.logger.Debug("session", "channel connecting", {{"src", info_.peer.ip}, {"open", absl::StrCat(open_id)}});
  PendingOpen& pending = pending_opens_[open_id];
  pending.message = message;
  pending.started = absl::Now();
  pending.attempt = env_.connector.Connect(
      host, static_cast<uint16_t>(port), env_.limits.connect_timeout,
      [this, open_id](absl::StatusOr<UniqueFd> result) { OnConnectDone(open_id, std::move(result)); },
      ResolveOwner{id_, key_fingerprint_},  // fair share and quota of the resolver pool
      std::move(filter));
  return true;
}

fwd::ForwardQuery SshServerSession::PolicyQuery(const auth::AuthorizedKey* entry, std::string host,
                                                uint16_t port, uint8_t direction) const {
  fwd::ForwardQuery query{.host = std::move(host), .port = port, .key_fingerprint = key_fingerprint_,
                          .transport = fwd::TransportFromName(info_.transport),
                          .direction = direction};
  // Roles: a certificate's principals; for an authorized_keys entry, each "role:NAME" word of
  // its comment, and "admin" for an admin-role key.
  if (certificate_ != nullptr) {
    query.roles = certificate_->principals;
  } else if (entry != nullptr) {
    for (absl::string_view word : absl::StrSplit(entry->comment, ' ', absl::SkipEmpty())) {
      if (absl::StartsWith(word, "role:") && word.size() > 5) query.roles.emplace_back(word.substr(5));
    }
    if (entry->admin_role) query.roles.emplace_back("admin");
  }
  return query;
}

void SshServerSession::RejectByRule(ssh_message message, std::string_view rule) {
  env_.metrics.ForwardingRuleRejected(rule);
  env_.metrics.ChannelOpenFinished(ChannelKind::kDirectTcpip, ChannelResult::kProhibited);
  RefuseChannel(message, absl::StrCat("forwarding-rule:", Sv(rule)));
}

void SshServerSession::OnConnectDone(uint64_t open_id, absl::StatusOr<UniqueFd> result) {
  auto it = pending_opens_.find(open_id);
  env_.logger.Debug("session", "channel connect done",
                    {{"open", absl::StrCat(open_id)}, {"ok", result.ok() ? "yes" : "no"},
                     {"known", it == pending_opens_.end() ? "no" : "yes"}});
  if (it == pending_opens_.end()) return;
  ssh_message message = it->second.message;
  std::string it_denied_rule = std::move(it->second.denied_rule);
  env_.metrics.OutboundConnect(absl::ToDoubleSeconds(absl::Now() - it->second.started));
  env_.loop.DeleteLater(std::move(it->second.attempt));  // we are inside its callback
  pending_opens_.erase(it);
  if (closed_) {
    ssh_message_free(message);
    return;
  }
  if (!result.ok() && result.status().code() == absl::StatusCode::kPermissionDenied &&
      !it_denied_rule.empty()) {
    RejectByRule(message, it_denied_rule);  // every resolved address denied: none connected
    ssh_message_free(message);
    Service();
    return;
  }
  if (!result.ok()) {
    // libssh 0.10 can only answer "administratively prohibited"; the log keeps the real reason.
    env_.metrics.ChannelOpenFinished(ChannelKind::kDirectTcpip, ChannelResult::kConnectFailed);
    RefuseChannel(message, ConnectFailureName(ClassifyConnectError(result.status())));
    ssh_message_free(message);
    Service();
    return;
  }
  ssh_channel channel = ssh_message_channel_request_open_reply_accept(message);
  ssh_message_free(message);
  if (channel != nullptr) StartRelay(channel, *std::move(result), ChannelKind::kDirectTcpip);
  Service();
}

void SshServerSession::HandleGlobalRequest(ssh_message message) {
  // Policy is checked against the key's current entry, like direct-tcpip.
  std::shared_ptr<const auth::KeySet> keys = env_.keys.Current();
  const auth::AuthorizedKey* entry = certificate_ != nullptr ? nullptr : keys->Find(key_blob_);
  const auth::KeyOptions* options = entry != nullptr ? &entry->options : nullptr;
  auth::KeyOptions certificate_options;
  if (certificate_ != nullptr) {
    // Certificates need permit-port-forwarding for -R too (sshd).
    if (CheckCertificateSession(*keys, certificate_options).empty()) options = &certificate_options;
  } else if (KeyRevokedByList(key_blob_)) {
    options = nullptr;
  }
  remote_forwards_.Bind(session_, info_.peer.ip, key_fingerprint_, env_.limits.connect_timeout);
  remote_forwards_.SetListenPolicy(
      env_.forwarding == nullptr
          ? std::function<std::string(const std::string&, uint16_t)>()
          : [this, query = PolicyQuery(entry, "", 0, fwd::kRemote)](
                const std::string& bind_host, uint16_t port) mutable -> std::string {
              // -R: the rules see the numeric bind address (cidrs) and the listen port.
              std::shared_ptr<const fwd::CompiledPolicy> policy = env_.forwarding->Current();
              query.host = bind_host;
              query.port = port;
              fwd::Decision decision = fwd::DecideByName(*policy, query.View());
              return decision.allow ? std::string() : std::string(decision.RuleName());
            });
  if (key_lease_ == nullptr) {
    remote_forwards_.HandleGlobalRequest(message, options);
    return;
  }
  // rate_limits.max_remote_forwards_per_key: a slot is reserved before the listener is bound
  // (sessions of the key on other workers race for the same count), given back if none was.
  std::atomic<int>& key_count = key_lease_->key().remote_forwards;
  const int cap = env_.rate_limiter->max_remote_forwards_per_key();
  const bool opening = ssh_message_subtype(message) == SSH_GLOBAL_REQUEST_TCPIP_FORWARD;
  if (opening && cap > 0) {
    if (key_count.fetch_add(1, std::memory_order_relaxed) >= cap) {
      key_count.fetch_sub(1, std::memory_order_relaxed);
      RecordRateRejection(env_.logger, env_.metrics, *env_.rate_limiter,
                          kRemoteForwardsPerKeyRejection, info_, user_, key_fingerprint_);
      ssh_message_reply_default(message);
      return;
    }
    counted_remote_forwards_ += 1;
  }
  remote_forwards_.HandleGlobalRequest(message, options);
  const int now_listening = static_cast<int>(remote_forwards_.listeners());
  key_count.fetch_add(now_listening - counted_remote_forwards_, std::memory_order_relaxed);
  counted_remote_forwards_ = now_listening;
}

void SshServerSession::StartRelay(ssh_channel channel, UniqueFd fd, ChannelKind kind) {
  auto relay = std::make_unique<ChannelRelay>(env_.loop, *this, env_.scratch, channel, std::move(fd),
                                              env_.metrics.BytesFor(env_.byte_tally, transport_label_,
                                                                     key_fingerprint_));
  relay->set_kind(kind);
  if (key_lease_ != nullptr) relay->set_throttle(key_lease_->shared(), &env_.rate_limiter->clock());
  if (!relays_.Start(std::move(relay))) {
    env_.metrics.ChannelOpenFinished(kind, ChannelResult::kConnectFailed);
    return;
  }
  ++channels_opened_;
  env_.metrics.ChannelOpenFinished(kind, ChannelResult::kOpened);
}

void SshServerSession::PumpRelays() {
  relays_.Pump([this] { return !closed_; }, [this](const ChannelRelay& relay) { CountClosed(relay); });
}

void SshServerSession::CountClosed(const ChannelRelay& relay) {
  env_.metrics.ChannelClosed(relay.kind());
  bytes_to_targets_ += relay.counters().to_target;
  bytes_from_targets_ += relay.counters().from_target;
}

void SshServerSession::UpdateSocketInterest() {
  uint32_t wanted = EPOLLIN;
  if (ssh_get_poll_flags(session_) & SSH_WRITE_PENDING) wanted |= EPOLLOUT;
  if (wanted != interest_) {
    interest_ = wanted;
    (void)env_.loop.Modify(fd_, wanted);
  }
}

void SshServerSession::BeginShutdown() {
  env_.logger.Debug("session", "shutdown requested",
                    {{"src", info_.peer.ip}, {"relays", absl::StrCat(relays_.size())},
                     {"pending", absl::StrCat(pending_opens_.size())}});
  shutting_down_ = true;
  if (!closed_ && open_channels() == 0) Terminate("agent shutting down");
}

void SshServerSession::Terminate(std::string_view reason) {
  if (closed_) return;
  closed_ = true;
  if (grace_timer_ != 0) {
    env_.loop.CancelTimer(grace_timer_);
    grace_timer_ = 0;
  }
  for (auto& [id, pending] : pending_opens_) {
    ssh_message_free(pending.message);
    env_.loop.DeleteLater(std::move(pending.attempt));
  }
  pending_opens_.clear();
  relays_.CloseAll([this](const ChannelRelay& relay) { CountClosed(relay); });
  remote_forwards_.CloseAll();
  if (key_lease_ != nullptr) {
    key_lease_->key().remote_forwards.fetch_sub(counted_remote_forwards_, std::memory_order_relaxed);
    counted_remote_forwards_ = 0;
    key_lease_.reset();
  }
  if (fd_ >= 0) env_.loop.Unwatch(fd_);
  if (session_ != nullptr) {
    if (event_ != nullptr) ssh_event_remove_session(event_, session_);
    if (ssh_is_connected(session_)) ssh_disconnect(session_);
    ssh_free(session_);  // closes the descriptor
    session_ = nullptr;
    fd_ = -1;
  }
  if (event_ != nullptr) {
    ssh_event_free(event_);
    event_ = nullptr;
  }
  if (authenticated_) {
    env_.logger.Info("session", "closed",
                     {{"src", info_.peer.ip}, {"port", absl::StrCat(info_.peer.port)},
                      {"user", TruncateForLog(user_, kMaxLoggedUserName)},
                      {"key", key_fingerprint_}, {"transport", info_.transport},
                      {"channels", absl::StrCat(channels_opened_)},
                      {"bytes_out", absl::StrCat(bytes_to_targets_)},
                      {"bytes_in", absl::StrCat(bytes_from_targets_)},
                      {"duration", absl::FormatDuration(absl::Trunc(absl::Now() - started_, absl::Milliseconds(1)))},
                      {"reason", std::string(reason)}});
  }
  if (metrics_started_) {
    metrics_started_ = false;
    env_.metrics.SessionEnded(transport_label_, Outcome());
    if (authenticated_) env_.metrics.KeySessionDelta(key_fingerprint_, -1);
  }
  if (callbacks_.on_closed) {
    auto on_closed = std::move(callbacks_.on_closed);
    on_closed(this);
  }
}

}  // namespace alknet
