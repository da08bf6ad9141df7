// Remote (-R) forwards of one server session: tcpip-forward / cancel-tcpip-forward global
// requests, the listening sockets they bind on the session's worker loop, and the
// forwarded-tcpip channel opens for each accepted connection (non-blocking, polled).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <libssh/libssh.h>
#include <libssh/server.h>

#include "absl/time/time.h"
#include "server/auth/authorized_keys.h"
#include "server/common/log.h"
#include "server/common/unique_fd.h"
#include "server/loop/event_loop.h"
#include "server/metrics/engine_metrics.h"

namespace alknet {

class RemoteForwards {
 public:
  struct Hooks {
    std::function<bool()> can_open;                     // false: shutting down or at the channel cap
    std::function<void(ssh_channel, UniqueFd)> opened;  // the session relays this pair
    std::function<void()> after_io;                     // libssh state changed outside a poll
    std::function<absl::Time()> now;                    // clock for open deadlines (empty: absl::Now)
    // The forwarding policy on the numeric bind address and port (after permitlisten=): the
    // name of the denying rule, or empty when allowed (empty function: no policy).
    std::function<std::string(const std::string& bind_host, uint16_t port)> listen_policy;
  };
  // The three libssh calls behind a forwarded-tcpip open. The server uses libssh on the bound
  // session; the stateful fuzzer (tests/fuzz/remote_forward_fuzzer.cc) scripts the client's
  // answers in-process.
  class ChannelOps {
   public:
    virtual ~ChannelOps() = default;
    virtual ssh_channel New(ssh_session session) = 0;
    // ssh_channel_open_reverse_forward: the first call sends the open, later ones poll for the
    // client's answer. SSH_OK, SSH_AGAIN or SSH_ERROR.
    virtual int OpenReverse(ssh_channel channel, const char* listen_address, int listen_port,
                            const char* originator, int originator_port) = 0;
    virtual void Free(ssh_channel channel) = 0;
  };
  // A tcpip-forward (or, with `cancel`, cancel-tcpip-forward) request as the client sent it.
  struct Request {
    bool cancel = false;
    std::string address;
    uint32_t port = 0;
  };
  struct Answer {
    bool ok = false;
    uint16_t bound_port = 0;   // tcpip-forward: the port actually bound
    uint64_t listener_id = 0;  // tcpip-forward: the new listener
  };
  // At most this many listeners per session and channel opens waiting for the client.
  static constexpr size_t kMaxListeners = 64;
  static constexpr size_t kMaxPendingOpens = 64;

  // `ops` (not owned) replaces libssh for the channel opens; nullptr: libssh.
  RemoteForwards(EventLoop& loop, Logger& logger, EngineMetrics& metrics, Hooks hooks,
                 ChannelOps* ops = nullptr);
  ~RemoteForwards();
  RemoteForwards(const RemoteForwards&) = delete;
  RemoteForwards& operator=(const RemoteForwards&) = delete;

  // Identity of the session for logs; `open_timeout` bounds a forwarded-tcpip open.
  void Bind(ssh_session session, std::string source_ip, std::string key_fingerprint,
            absl::Duration open_timeout);

  // The forwarding policy for the next requests (see Hooks::listen_policy).
  void SetListenPolicy(std::function<std::string(const std::string&, uint16_t)> policy) {
    hooks_.listen_policy = std::move(policy);
  }

  // Answers a tcpip-forward / cancel-tcpip-forward request. `options` is the key's current
  // entry (nullptr: revoked). Does not free the message.
  void HandleGlobalRequest(ssh_message message, const auth::KeyOptions* options);
  // The same without libssh's message: decides, binds or closes, logs; the caller replies.
  Answer HandleRequest(const Request& request, const auth::KeyOptions* options);

  // A connection accepted on listener `listener_id` (unknown ids: the connection is closed).
  // Starts its forwarded-tcpip open.
  void OnAccepted(uint64_t listener_id, UniqueFd fd);

  // Drives pending forwarded-tcpip opens; call after each session poll.
  void Poll();

  size_t pending_opens() const { return pending_.size(); }
  size_t listeners() const { return listeners_.size(); }
  // Closes every listener and abandons pending opens (session end).
  void CloseAll();

 private:
  class ListenSocket;
  class LibsshChannelOps;
  // An open waiting for the client. It carries its own copy of what the open names (the
  // listen address as requested and the bound port), never a pointer to its listener:
  // cancel-tcpip-forward closes the listener while opens it started may still be waiting, and
  // those go on to their end as in sshd.
  struct PendingOpen {
    ssh_channel channel = nullptr;
    UniqueFd fd;
    std::string listen_address;
    uint16_t listen_port = 0;
    std::string originator;
    uint16_t originator_port = 0;
    absl::Time deadline;
  };

  // One step of an open: true when finished (opened or failed).
  bool Step(PendingOpen& open);
  Answer Refuse(RejectReason reason, std::string_view log_reason, uint32_t port);
  absl::Time Now() const { return hooks_.now ? hooks_.now() : absl::Now(); }

  EventLoop& loop_;
  Logger& logger_;
  EngineMetrics& metrics_;
  Hooks hooks_;
  std::unique_ptr<LibsshChannelOps> libssh_ops_;
  ChannelOps& ops_;
  bool bound_ = false;
  ssh_session session_ = nullptr;
  std::string source_ip_;
  std::string key_fingerprint_;
  absl::Duration open_timeout_ = absl::Seconds(10);
  uint64_t next_listener_id_ = 1;
  std::vector<std::unique_ptr<ListenSocket>> listeners_;
  std::vector<PendingOpen> pending_;
  bool polling_ = false;
};

}  // namespace alknet
