// One SSH server session on one worker loop: key exchange, public-key auth, direct-tcpip
// channels answered after the outbound connect, and the relays that carry them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <libssh/libssh.h>
#include <libssh/server.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/auth/auth_log.h"
#include "server/auth/certificate.h"
#include "server/auth/certificate_policy.h"
#include "server/auth/key_set.h"
#include "server/common/log.h"
#include "server/common/rate_limiter.h"
#include "server/forward/forwarding_rules.h"
#include "server/forward/outbound_connector.h"
#include "server/loop/event_loop.h"
#include "server/metrics/engine_metrics.h"
#include "server/ssh/channel_relay.h"
#include "server/ssh/relay_set.h"
#include "server/ssh/remote_forwards.h"
#include "server/transport/transport.h"

namespace alknet {

// What the admin API may see of a live session: never a tunnel destination.
struct SessionSnapshot {
  uint64_t id = 0;
  bool authenticated = false;
  std::string user;
  std::string key_fingerprint;
  SocketEndpoint peer;
  std::string transport;
  absl::Time started;
  uint32_t open_channels = 0;
  uint64_t channels_opened = 0;
  uint64_t bytes_upstream = 0;    // client -> targets
  uint64_t bytes_downstream = 0;  // targets -> client
};

// Limits a session enforces itself (a snapshot of the engine's configuration).
struct SessionLimits {
  absl::Duration login_grace_time = absl::Seconds(30);
  int max_channels = 1024;
  int max_auth_attempts = 6;  // sshd's MaxAuthTries default
  absl::Duration connect_timeout = absl::Seconds(10);
};

// What a worker lends each of its sessions; outlives them.
struct SessionEnvironment {
  EventLoop& loop;
  Logger& logger;
  auth::KeyStore& keys;
  OutboundConnector& connector;
  RelayScratch& scratch;
  EngineMetrics& metrics;
  ByteTally& byte_tally;  // the worker's: its relays count their bytes here
  SessionLimits limits;
  // The admin API's Unix socket: "alknet-admin" channels of admin-role keys connect here
  // (empty: no admin API, such channels are refused).
  std::string admin_socket_path;
  // Trusted user CAs, revoked keys/certificates and the certificate clock skew (the agent owns
  // and reloads them). nullptr: no trusted_user_ca_keys and no revocation list.
  const auth::TrustStores* trust = nullptr;
  // rate_limits (issue 15), shared by every worker; nullptr: no rate limits at all.
  RateLimiter* rate_limiter = nullptr;
  // The forwarding policy (ADR 0014), read at each channel open and -R request; nullptr: none.
  const fwd::ForwardingPolicyStore* forwarding = nullptr;
};

class SshServerSession final : public FdHandler, public RelayOwner {
 public:
  struct Callbacks {
    std::function<void()> on_authenticated;                // e.g. release the pre-auth slot
    std::function<void(SshServerSession*)> on_closed;       // owner removes and deletes later
  };

  SshServerSession(uint64_t id, SessionEnvironment& env, ConnectedStream stream, Callbacks callbacks);
  ~SshServerSession() override;

  // Hands the stream to libssh (which takes ownership of the fd) and starts the key exchange.
  absl::Status Start(ssh_bind bind);

  // Refuses new channels and disconnects once the open ones are done.
  void BeginShutdown();
  // Sends SSH disconnect and closes everything now. `reason` goes to the log.
  void Terminate(std::string_view reason);

  bool authenticated() const { return authenticated_; }
  // How far the session got (authenticated, auth failed, grace time over, closed before auth).
  SessionResult outcome() const { return Outcome(); }
  size_t open_channels() const {
    return relays_.size() + pending_opens_.size() + remote_forwards_.pending_opens();
  }
  const StreamInfo& info() const { return info_; }
  uint64_t id() const { return id_; }
  SessionSnapshot Snapshot() const;

  void OnFdEvents(uint32_t events) override;
  void NeedsAttention(ChannelRelay* relay) override;
  void AfterRelayIo() override { Service(); }

 private:
  struct PendingOpen {
    ssh_message message = nullptr;
    std::unique_ptr<ConnectAttempt> attempt;
    absl::Time started;
    std::string denied_rule;  // the forwarding rule that denied a resolved address, if any
  };

  void Service();
  void ProcessMessages();
  void HandleMessage(ssh_message message);  // frees the message unless it keeps it
  bool HandleAuth(ssh_message message);
  bool HandlePublicKeyAuth(ssh_message message, const std::string& user);
  // An offered OpenSSH certificate: libssh checked the user's signature, we check the rest.
  bool HandleCertificateAuth(ssh_message message, const std::string& user, int state,
                             const std::string& blob, const std::string& key_type);
  void AcceptAuthentication(ssh_message message, const std::string& user, std::string blob,
                            const std::string& fingerprint, const std::string& key_type,
                            const auth::CertificateLogInfo* certificate);
  const auth::TrustStores& Trust() const;
  bool KeyRevokedByList(std::string_view blob) const;
  // Certificate sessions, per channel or forward: the certificate re-evaluated against the
  // current trusted CAs, cert-authority lines and revocations. Empty: allowed, `options` are
  // the session's (the CA line's); otherwise the refusal reason for the log.
  std::string_view CheckCertificateSession(const auth::KeySet& keys, auth::KeyOptions& options) const;
  bool HandleDirectTcpip(ssh_message message);  // true: message kept for an async reply
  void OnConnectDone(uint64_t open_id, absl::StatusOr<UniqueFd> result);
  void HandleGlobalRequest(ssh_message message);  // tcpip-forward / cancel-tcpip-forward
  void StartRelay(ssh_channel channel, UniqueFd fd, ChannelKind kind);
  void PumpRelays();
  void CountClosed(const ChannelRelay& relay);  // metrics and the session's byte totals
  void UpdateSocketInterest();
  void RecordAuthFailure(std::string_view reason, std::string_view method, std::string_view user,
                         std::string_view fingerprint, std::string_view key_type,
                         const auth::CertificateLogInfo* certificate = nullptr);
  void RefuseChannel(ssh_message message, std::string_view reason);
  // The session's forwarding-policy query for `host`/`port` (roles from the key or certificate).
  fwd::ForwardQuery PolicyQuery(const auth::AuthorizedKey* entry, std::string host, uint16_t port,
                                uint8_t direction) const;
  void RejectByRule(ssh_message message, std::string_view rule);
  void RejectChannel(ssh_message message, RejectReason reason, std::string_view log_reason);
  SessionResult Outcome() const;

  uint64_t id_;
  SessionEnvironment& env_;
  StreamInfo info_;
  int fd_ = -1;
  UniqueFd stream_fd_;  // owned until libssh takes it in Start()
  Callbacks callbacks_;

  ssh_session session_ = nullptr;
  ssh_event event_ = nullptr;
  uint32_t interest_ = 0;
  // libssh counts the packets it decodes here; ssh_message_get() (which polls the socket when
  // its queue is empty) is only called when packets arrived since the queue was last emptied.
  ssh_counter_struct packet_counter_{};
  uint64_t packets_seen_ = ~uint64_t{0};
  EventLoop::TimerId grace_timer_ = 0;
  absl::Time started_ = absl::Now();

  bool authenticated_ = false;
  bool shutting_down_ = false;
  bool closed_ = false;
  bool in_service_ = false;
  int auth_failures_ = 0;
  bool grace_expired_ = false;
  bool metrics_started_ = false;
  TransportLabel transport_label_ = TransportLabel::kOther;
  std::string user_;
  std::string key_blob_;
  std::string key_fingerprint_;
  // Certificate sessions: the certificate they logged in with (parsed, CA signature checked).
  std::shared_ptr<const auth::Certificate> certificate_;
  // The certificate of the last accepted probe, so the signed request does not verify it again.
  std::shared_ptr<const auth::Certificate> probed_certificate_;

  uint64_t next_open_id_ = 1;
  absl::flat_hash_map<uint64_t, PendingOpen> pending_opens_;
  RelaySet relays_{env_.loop};
  uint64_t channels_opened_ = 0;
  uint64_t bytes_to_targets_ = 0;
  uint64_t bytes_from_targets_ = 0;
  // rate_limits: this session's count in its key's shared state (after authentication), the
  // -R listeners it counts there, and its own channel-open bucket.
  std::unique_ptr<KeySessionLease> key_lease_;
  int counted_remote_forwards_ = 0;
  TokenBucket channel_bucket_;
  RemoteForwards remote_forwards_;  // -R listeners of this session (declared last: closed first)
};

}  // namespace alknet
