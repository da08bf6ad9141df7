// The stream an upstream's SSH session runs over, dialled by the server URL's scheme: each
// transport registers a StreamDialer (stream_dialer.cc's table: tcp://, tls://), and the SSH
// client session and `alknet-agent proxy` ask the table, so neither knows a transport.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/common/log.h"
#include "server/common/unique_fd.h"
#include "server/config/upstream_schema.h"
#include "server/forward/outbound_connector.h"
#include "server/loop/event_loop.h"

namespace alknet {

// What a dialer borrows; outlives every stream it dials.
struct DialEnv {
  EventLoop& loop;
  Logger& logger;
  OutboundConnector& connector;
};

// The plain fd of the stream (what SSH reads and writes as if it were the TCP socket), or why
// there is none ("cannot connect: ...", "proxy: ...", "tls: ...").
using DialDone = std::function<void(absl::StatusOr<UniqueFd>)>;

// One dialled stream. Destroying it before `done` ran cancels the dial (`done` never runs);
// afterwards it holds whatever carries the stream (the TLS bridge) until Close().
class DialedStream {
 public:
  virtual ~DialedStream() = default;
  // Ends the carrier: what the plain side already wrote goes out (best effort), then the
  // transport's own close (TLS close_notify). Nothing is called back afterwards.
  virtual void Close() = 0;
};

class StreamDialer {
 public:
  virtual ~StreamDialer() = default;
  virtual std::string_view scheme() const = 0;
  // Connects to upstream.server (through upstream.proxy where the transport allows one) and
  // runs the transport's handshake; `done` runs once on env.loop, never from inside Dial.
  // `label` names the upstream in log lines.
  virtual std::unique_ptr<DialedStream> Dial(const DialEnv& env,
                                             const config::UpstreamConfig& upstream,
                                             std::string label, DialDone done) const = 0;
};

// The dialer registered for `scheme`; null when no transport has that scheme.
const StreamDialer* FindStreamDialer(std::string_view scheme);

}  // namespace alknet
