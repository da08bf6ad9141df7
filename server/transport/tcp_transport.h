// Plain TCP: the accepted socket is the stream; nothing to establish.
#pragma once

#include "server/transport/transport.h"

namespace alknet {

class TcpTransport final : public ServerTransport {
 public:
  std::string_view name() const override { return "tcp"; }
  void Establish(EventLoop& loop, UniqueFd accepted, StreamInfo info,
                 std::function<void(absl::StatusOr<ConnectedStream>)> done) override;
};

}  // namespace alknet
