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
  };
  // At most this many listeners per session and channel opens waiting for the client.
  static constexpr size_t kMaxListeners = 64;
  static constexpr size_t kMaxPendingOpens = 64;

  RemoteForwards(EventLoop& loop, Logger& logger, EngineMetrics& metrics, Hooks hooks);
  ~RemoteForwards();
  RemoteForwards(const RemoteForwards&) = delete;
  RemoteForwards& operator=(const RemoteForwards&) = delete;

  // Identity of the session for logs; `open_timeout` bounds a forwarded-tcpip open.
  void Bind(ssh_session session, std::string source_ip, std::string key_fingerprint,
            absl::Duration open_timeout);

  // Answers a tcpip-forward / cancel-tcpip-forward request. `options` is the key's current
  // entry (nullptr: revoked). Does not free the message.
  void HandleGlobalRequest(ssh_message message, const auth::KeyOptions* options);

  // Drives pending forwarded-tcpip opens; call after each session poll.
  void Poll();

  size_t pending_opens() const { return pending_.size(); }
  size_t listeners() const { return listeners_.size(); }
  // Closes every listener and abandons pending opens (session end).
  void CloseAll();

 private:
  class ListenSocket;
  struct PendingOpen {
    ssh_channel channel = nullptr;
    UniqueFd fd;
    const ListenSocket* listener = nullptr;
    std::string originator;
    uint16_t originator_port = 0;
    absl::Time deadline;
  };

  void OnAccepted(ListenSocket& listener, UniqueFd fd);
  // One step of an open: true when finished (opened or failed).
  bool Step(PendingOpen& open);
  void Refuse(ssh_message message, RejectReason reason, std::string_view log_reason,
              uint32_t port);

  EventLoop& loop_;
  Logger& logger_;
  EngineMetrics& metrics_;
  Hooks hooks_;
  ssh_session session_ = nullptr;
  std::string source_ip_;
  std::string key_fingerprint_;
  absl::Duration open_timeout_ = absl::Seconds(10);
  std::vector<std::unique_ptr<ListenSocket>> listeners_;
  std::vector<PendingOpen> pending_;
  bool polling_ = false;
};

}  // namespace alknet
