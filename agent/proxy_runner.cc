// The proxy command: one event loop on the main thread; the scheme's dialer, then StdioBridge.
#include "agent/proxy_runner.h"

#include <unistd.h>

#include <iostream>
#include <memory>

#include "server/client/stdio_bridge.h"
#include "server/client/stream_dialer.h"
#include "server/forward/outbound_connector.h"
#include "server/forward/resolver.h"
#include "server/loop/event_loop.h"

namespace alknet::agent {

int RunProxy(const config::UpstreamConfig& target, Logger& logger) {
  const std::string server = target.server.address.ToString();
  const StreamDialer* dialer = FindStreamDialer(target.server.scheme);
  auto loop = EventLoop::Create();
  if (dialer == nullptr || !loop.ok()) {
    std::cerr << "alknet-agent proxy: "
              << (dialer == nullptr ? "no transport for " + target.server.scheme + "://"
                                    : std::string(loop.status().message()))
              << "\n";
    return 1;
  }
  Resolver resolver(1);
  OutboundConnector connector(**loop, resolver);
  int exit_code = 1;
  std::unique_ptr<StdioBridge> bridge;
  UniqueFd stream_fd;
  auto end = [&](absl::Status status) {
    if (!status.ok()) std::cerr << "alknet-agent proxy: " << server << ": " << status.message() << "\n";
    exit_code = status.ok() ? 0 : 1;
    (*loop)->Stop();
  };
  // The dialer's own deadline (handshake_timeout) covers connect, proxy and the handshake.
  std::unique_ptr<DialedStream> stream = dialer->Dial(
      {**loop, logger, connector}, target, "proxy", [&](absl::StatusOr<UniqueFd> fd) {
        if (!fd.ok()) {
          end(fd.status());
          return;
        }
        stream_fd = *std::move(fd);
        bridge = std::make_unique<StdioBridge>(**loop, STDIN_FILENO, STDOUT_FILENO,
                                               stream_fd.get(), end);
        bridge->Start();
      });
  (*loop)->Run();
  bridge.reset();
  stream->Close();
  stream.reset();
  return exit_code;
}

}  // namespace alknet::agent
