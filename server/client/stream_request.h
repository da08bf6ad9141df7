// A local connection (SOCKS5 or -L) waiting for its SSH channel, and how it is answered.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "server/client/forward.h"
#include "server/client/socks5.h"
#include "server/common/unique_fd.h"
#include "server/metrics/engine_metrics.h"

namespace alknet {

struct StreamRequest {
  enum class Kind { kSocks, kLocalForward };
  Kind kind = Kind::kLocalForward;
  UniqueFd fd;                 // the local client's socket (non-blocking)
  std::string host;            // destination, passed as-is to the server (resolved remotely)
  uint16_t port = 0;
  std::string originator_ip;   // the local client, for the direct-tcpip request
  uint16_t originator_port = 0;
  std::string early_data;      // bytes the client sent after its SOCKS request (bounded)
  absl::Time deadline;         // fail the request if no channel by then
  std::shared_ptr<ForwardStatus> forward;  // the forward it came through (counts and errors)

  ChannelKind metric_kind() const {
    return kind == Kind::kSocks ? ChannelKind::kSocks : ChannelKind::kDirectTcpip;
  }
};

// Success: SOCKS clients get "succeeded" with the address of their own connection's local end
// (the far side's bound address is not known through SSH); -L needs no answer. Returns false
// if the reply could not be written.
bool AnswerSuccess(StreamRequest& request);
// Failure: SOCKS clients get the reply code, then the connection closes; -L just closes. The
// reply's name becomes the forward's last error (never the destination).
void AnswerFailure(StreamRequest& request, socks5::Reply reply);

}  // namespace alknet
