// The proxy command: one event loop on the main thread; the scheme's dialer, then StdioBridge.
#include "agent/proxy_runner.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <functional>
#include <iostream>
#include <memory>

#include "server/client/stdio_bridge.h"
#include "server/client/stream_dialer.h"
#include "server/forward/outbound_connector.h"
#include "server/forward/resolver.h"
#include "server/loop/event_loop.h"

namespace alknet::agent {
namespace {

// SIGHUP (ssh ends its ProxyCommand so), SIGTERM and SIGINT, read on the loop: the proxy then
// ends like at EOF, closing the transport cleanly (QUIC: CONNECTION_CLOSE), so the server
// ends the session at once instead of at its idle timeout.
class StopSignals final : public FdHandler {
 public:
  // Blocks them in the calling thread and every thread it starts afterwards.
  StopSignals() {
    sigset_t set;
    sigemptyset(&set);
    for (int signal_number : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&set, signal_number);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    fd_ = UniqueFd(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  }
  void Watch(EventLoop& loop, std::function<void()> on_signal) {
    on_signal_ = std::move(on_signal);
    if (fd_.valid()) loop.SetInterest(fd_.get(), events_, EPOLLIN, this);
  }
  void Unwatch(EventLoop& loop) {
    if (fd_.valid() && events_ != 0) loop.Unwatch(fd_.get());
    events_ = 0;
  }
  void OnFdEvents(uint32_t) override {
    signalfd_siginfo info;
    while (read(fd_.get(), &info, sizeof(info)) == sizeof(info)) {
    }
    on_signal_();
  }

 private:
  std::function<void()> on_signal_;
  UniqueFd fd_;
  uint32_t events_ = 0;
};

}  // namespace

int RunProxy(const config::UpstreamConfig& target, Logger& logger) {
  // Before any thread starts (the resolver's), so that none of them takes the signal.
  StopSignals stop_signals;
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
  stop_signals.Watch(**loop, [&] { end(absl::OkStatus()); });
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
  stop_signals.Unwatch(**loop);
  bridge.reset();
  stream->Close();
  stream.reset();
  return exit_code;
}

}  // namespace alknet::agent
