// The client's outbound proxy: on a TCP connection to a SOCKS5 (no authentication) or HTTP
// CONNECT proxy, asks for a tunnel to the SSH server, then hands the socket on untouched (no
// byte past the proxy's reply is read, so the server's SSH banner stays in the socket).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/unique_fd.h"
#include "server/loop/event_loop.h"

namespace alknet {

enum class ProxyKind { kSocks5, kHttpConnect };

// Pure protocol pieces (unit-tested).
namespace proxy {
// SOCKS5 greeting offering "no authentication" only.
std::string Socks5Greeting();
// CONNECT request; IP literals go as IPv4/IPv6 addresses, names as a domain (resolved by the proxy).
std::string Socks5Connect(const std::string& host, uint16_t port);
// "CONNECT host:port HTTP/1.1" with a Host header.
std::string HttpConnect(const std::string& host, uint16_t port);

struct Parsed {
  bool complete = false;  // false: need more bytes
  size_t length = 0;      // bytes of the reply when complete
  absl::Status status;    // the proxy's verdict when complete
};
Parsed ParseSocks5MethodReply(std::string_view bytes);
Parsed ParseSocks5ConnectReply(std::string_view bytes);
Parsed ParseHttpConnectReply(std::string_view bytes);  // up to and including the blank line
}  // namespace proxy

// Runs the handshake on `fd` (connected to the proxy) on `loop`; `done` runs once, on the
// loop, with the socket or the error. Destroying the object cancels.
class ProxyHandshake final : public FdHandler {
 public:
  using Done = std::function<void(absl::StatusOr<UniqueFd>)>;
  ProxyHandshake(EventLoop& loop, ProxyKind kind, UniqueFd fd, std::string host, uint16_t port,
                 absl::Duration timeout, Done done);
  ~ProxyHandshake() override;
  void Start();
  void OnFdEvents(uint32_t events) override;

 private:
  enum class Phase { kMethod, kConnect, kDone };
  void Send(std::string bytes);
  void Step();
  void Finish(absl::StatusOr<UniqueFd> result);

  EventLoop& loop_;
  ProxyKind kind_;
  UniqueFd fd_;
  std::string host_;
  uint16_t port_;
  Done done_;
  Phase phase_ = Phase::kMethod;
  std::string out_;
  std::string reply_;  // the current reply's bytes read so far (bounded by the reply limit)
  EventLoop::TimerId timer_ = 0;
  bool watching_ = false;
};

}  // namespace alknet
