// Plain TCP: the accepted socket is the stream; nothing to establish.
#include "server/transport/tcp_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace alknet {

void TcpTransport::Establish(EventLoop& loop, UniqueFd accepted, StreamInfo info,
                             std::function<void(absl::StatusOr<ConnectedStream>)> done) {
  int one = 1;
  setsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(accepted.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  done(ConnectedStream{std::move(accepted), std::move(info)});
}

}  // namespace alknet
