// The proxy command: one event loop on the main thread; connect, transport, StdioBridge.
#include "agent/proxy_runner.h"

#include <unistd.h>

#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/client/proxy_handshake.h"
#include "server/client/stdio_bridge.h"
#include "server/forward/outbound_connector.h"
#include "server/forward/resolver.h"
#include "server/loop/event_loop.h"
#include "server/transport/tls_client.h"

namespace alknet::agent {

int RunProxy(const config::UpstreamConfig& target, Logger& logger) {
  auto loop = EventLoop::Create();
  if (!loop.ok()) {
    std::cerr << "alknet-agent proxy: " << loop.status().message() << "\n";
    return 1;
  }
  Resolver resolver(1);
  OutboundConnector connector(**loop, resolver);
  const std::string server = target.server.address.ToString();
  int exit_code = 1;
  std::unique_ptr<ConnectAttempt> connecting;
  std::unique_ptr<ProxyHandshake> proxying;
  std::unique_ptr<TlsClientStream> tls;
  UniqueFd stream;
  std::unique_ptr<StdioBridge> bridge;

  auto fail = [&](absl::string_view why) {
    std::cerr << "alknet-agent proxy: " << server << ": " << why << "\n";
    exit_code = 1;
    (*loop)->Stop();
  };
  auto relay = [&](UniqueFd fd) {
    stream = std::move(fd);
    bridge = std::make_unique<StdioBridge>(**loop, STDIN_FILENO, STDOUT_FILENO, stream.get(),
                                           [&](absl::Status ended) {
                                             if (!ended.ok()) {
                                               fail(ended.message());
                                               return;
                                             }
                                             exit_code = 0;
                                             (*loop)->Stop();
                                           });
    bridge->Start();
  };
  // tls://: the handshake, then the plain end of the bridge; tcp://: the socket itself.
  auto transport = [&](UniqueFd fd) {
    if (target.server.scheme != "tls") {
      relay(std::move(fd));
      return;
    }
    TlsClientOptions options{target.server.address.host, target.tls_server_name,
                             target.tls_ca_file, target.tls_fingerprint, target.tls_insecure};
    tls = std::make_unique<TlsClientStream>(
        **loop, logger, "proxy", std::move(fd), std::move(options),
        [&](absl::StatusOr<UniqueFd> plain) {
          if (!plain.ok()) {
            fail(plain.status().message());
            return;
          }
          if (target.tls_insecure) {
            logger.Warn("proxy", "tls certificate not checked (--tls-insecure)",
                        {{"presented", tls->presented_fingerprint()}});
          }
          relay(*std::move(plain));
        });
    tls->Start();
  };
  const HostPort& first_hop = target.proxy ? target.proxy->address : target.server.address;
  // The handshake timeout covers connecting, any outbound proxy and the transport's handshake.
  EventLoop::TimerId deadline = (*loop)->AddTimer(target.handshake_timeout, [&] {
    deadline = 0;
    if (!bridge) fail("no connection within the handshake timeout");
  });
  connecting = connector.Connect(
      first_hop.host, first_hop.port, target.handshake_timeout, [&](absl::StatusOr<UniqueFd> fd) {
        (*loop)->DeleteLater(std::move(connecting));
        if (!fd.ok()) {
          fail(absl::StrCat(target.proxy ? "cannot connect to the proxy: " : "cannot connect: ",
                            fd.status().message()));
          return;
        }
        if (!target.proxy) {
          transport(*std::move(fd));
          return;
        }
        ProxyKind kind =
            target.proxy->scheme == "socks5" ? ProxyKind::kSocks5 : ProxyKind::kHttpConnect;
        proxying = std::make_unique<ProxyHandshake>(
            **loop, kind, *std::move(fd), target.server.address.host, target.server.address.port,
            target.handshake_timeout, [&](absl::StatusOr<UniqueFd> tunnel) {
              (*loop)->DeleteLater(std::move(proxying));
              if (!tunnel.ok()) {
                fail(absl::StrCat("proxy: ", tunnel.status().message()));
                return;
              }
              transport(*std::move(tunnel));
            });
        proxying->Start();
      });
  (*loop)->Run();
  if (deadline != 0) (*loop)->CancelTimer(deadline);
  bridge.reset();
  if (tls) tls->Close();
  tls.reset();
  connecting.reset();
  proxying.reset();
  return exit_code;
}

}  // namespace alknet::agent
