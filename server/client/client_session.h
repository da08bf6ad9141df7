// One SSH client connection to an upstream server on an event loop, never blocking:
// the stream from the scheme's dialer (stream_dialer.h: TCP, optionally through a proxy, then TLS
// for tls:// servers) -> ssh_connect -> host key check -> public-key auth
// -> -R requests -> ready. Ready, it opens direct-tcpip channels for local connections, accepts
// forwarded-tcpip channels for -R, relays both with ChannelRelay, and sends keepalives.
// docs/adr/0008-client-event-model.md explains the model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <libssh/libssh.h>
#include <libssh/server.h>  // the ssh_message API and ssh_send_keepalive serve clients too

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "server/client/forward.h"
#include "server/client/stream_dialer.h"
#include "server/client/stream_request.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/forward/outbound_connector.h"
#include "server/loop/event_loop.h"
#include "server/metrics/engine_metrics.h"
#include "server/ssh/channel_relay.h"
#include "server/ssh/relay_set.h"

namespace alknet {

// What an upstream lends each of its sessions; outlives them.
struct ClientSessionEnv {
  EventLoop& loop;
  Logger& logger;
  OutboundConnector& connector;
  RelayScratch& scratch;
  EngineMetrics& metrics;
  const config::UpstreamConfig& config;
  const config::SshAlgorithms& algorithms;  // proposed KEX, ciphers, MACs, host key types
  ssh_key identity;   // loaded once per upstream
  std::string user;   // resolved login name
};

// A -R forward handed to a session: the session asks the server for it and keeps its status.
struct RemoteForwardRef {
  std::string id;
  config::ForwardSpec spec;
  std::shared_ptr<ForwardStatus> status;
};

// Why a session ended, for the reconnect policy and the log.
struct SessionLoss {
  std::string reason;      // "connection closed", "host key mismatch", ...
  bool host_key = false;   // the host key check refused the server
};

class ClientSession final : public FdHandler, public RelayOwner {
 public:
  struct Callbacks {
    std::function<void()> on_ready;
    // Runs once when the session is over (never from inside Start()). Requests that were still
    // waiting for their channel come back so the upstream can queue them for the next session.
    std::function<void(SessionLoss, std::vector<std::unique_ptr<StreamRequest>>)> on_lost;
  };

  ClientSession(ClientSessionEnv& env, Callbacks callbacks);
  ~ClientSession() override;

  void Start();
  bool ready() const { return phase_ == Phase::kReady; }
  size_t pending_opens() const { return pending_.size(); }
  size_t open_channels() const { return relays_.size(); }
  // Ready only: opens a direct-tcpip channel for the request and relays it.
  void Open(std::unique_ptr<StreamRequest> request);
  // Asks the server to listen (tcpip-forward). Before ready, every forward is settled before
  // the session reports ready; once ready, at once. Channels it brings are relayed to its target.
  void AddRemoteForward(RemoteForwardRef forward);
  // Cancels it on the server (cancel-tcpip-forward); channels already open keep running.
  void RemoveRemoteForward(const std::string& id);
  // The port the server granted (the requested one, or the one it chose for port 0); 0 if none.
  int RemoteForwardPort(const std::string& id) const;
  // Closes everything now without calling on_lost (agent shutdown).
  void Close();

  void OnFdEvents(uint32_t events) override;
  void NeedsAttention(ChannelRelay* relay) override { relays_.RequestPump(relay); }
  void AfterRelayIo() override { Service(); }

 private:
  enum class Phase { kConnect, kSsh, kAuth, kRemoteForwards, kReady, kDead };
  struct PendingOpen {
    ssh_channel channel = nullptr;
    std::unique_ptr<StreamRequest> request;
  };
  // One -R forward and its global requests. libssh has one global request in flight at a time
  // (keepalives included), so they run one after the other through StepGlobalRequests().
  struct RemoteForward {
    enum class Step { kQueued, kRequesting, kActive, kRefused, kCancelQueued, kCancelling };
    RemoteForwardRef ref;
    Step step = Step::kQueued;
    int bound_port = 0;    // once kActive
    bool removed = false;  // removal asked while its tcpip-forward was in flight
  };
  struct PendingAccept {
    ssh_message message = nullptr;
    std::unique_ptr<ConnectAttempt> attempt;
    std::shared_ptr<ForwardStatus> forward;
  };

  void StartSsh(UniqueFd fd);
  void Step();                 // handshake phases
  bool CheckHostKey();         // false: refused (Fail called)
  // Sends queued tcpip-forward / cancel requests one at a time; true when none is left.
  bool StepGlobalRequests();
  void FinishGlobalRequest(RemoteForward& forward, int rc, int bound);
  // Collects the reply of an outstanding keepalive; true when none is outstanding any more.
  bool ReapKeepalive();
  void EraseRemoteForward(const RemoteForward* forward);
  void EnterReady();
  void Service();              // ready phase
  void ProcessMessages();
  void HandleForwardedOpen(ssh_message message);  // keeps or frees the message
  void OnForwardConnectDone(uint64_t id, absl::StatusOr<UniqueFd> result);
  void PollOpens();
  bool StepOpen(PendingOpen& open);  // true when finished
  void StartRelay(ssh_channel channel, UniqueFd fd, ChannelKind kind, const std::string& early,
                  std::shared_ptr<ForwardStatus> forward);
  void PumpRelays();
  void Keepalive();
  void UpdateInterest();
  void Fail(SessionLoss loss);
  void Teardown(std::vector<std::unique_ptr<StreamRequest>>* unanswered);

  ClientSessionEnv& env_;
  Callbacks callbacks_;
  Phase phase_ = Phase::kConnect;
  std::string server_;  // host:port, for logs

  std::unique_ptr<DialedStream> stream_;  // the dial, then (tls://) the bridge carrying SSH
  EventLoop::TimerId handshake_timer_ = 0;
  EventLoop::TimerId keepalive_timer_ = 0;
  absl::Time last_rx_ = absl::Now();

  ssh_session session_ = nullptr;
  ssh_event event_ = nullptr;
  int fd_ = -1;
  bool watching_ = false;
  uint32_t interest_ = 0;
  bool in_service_ = false;
  ssh_counter_struct packet_counter_{};        // libssh counts the packets it decodes
  uint64_t packets_seen_ = ~uint64_t{0};       // in_packets when the message queue was last empty

  std::vector<std::unique_ptr<RemoteForward>> remote_forwards_;
  RemoteForward* global_ = nullptr;  // whose global request is in flight
  bool keepalive_outstanding_ = false;  // a keepalive's reply has not been collected yet

  std::vector<PendingOpen> pending_;
  uint64_t next_accept_id_ = 1;
  absl::flat_hash_map<uint64_t, PendingAccept> accepts_;
  RelaySet relays_{env_.loop};
};

}  // namespace alknet
