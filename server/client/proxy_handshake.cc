// The client's outbound proxy handshake (SOCKS5 no-auth, HTTP CONNECT).
#include "server/client/proxy_handshake.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"

namespace alknet {
namespace proxy {
namespace {

std::string Bracketed(const std::string& host) {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]") : host;
}

}  // namespace

std::string Socks5Greeting() { return std::string("\x05\x01\x00", 3); }

std::string Socks5Connect(const std::string& host, uint16_t port) {
  std::string request("\x05\x01\x00", 3);
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    request += '\x01';
    request.append(reinterpret_cast<const char*>(&v4), 4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    request += '\x04';
    request.append(reinterpret_cast<const char*>(&v6), 16);
  } else {
    request += '\x03';
    request += static_cast<char>(host.size() > 255 ? 255 : host.size());
    request.append(host, 0, 255);
  }
  request += static_cast<char>(port >> 8);
  request += static_cast<char>(port & 0xff);
  return request;
}

std::string HttpConnect(const std::string& host, uint16_t port) {
  std::string target = absl::StrCat(Bracketed(host), ":", port);
  return absl::StrCat("CONNECT ", target, " HTTP/1.1\r\nHost: ", target, "\r\n\r\n");
}

Parsed ParseSocks5MethodReply(std::string_view bytes) {
  Parsed parsed;
  if (bytes.size() < 2) return parsed;
  parsed.complete = true;
  parsed.length = 2;
  if (bytes[0] != 0x05) {
    parsed.status = absl::UnavailableError("the proxy does not speak SOCKS5");
  } else if (bytes[1] != 0x00) {
    parsed.status = absl::PermissionDeniedError("the SOCKS5 proxy requires authentication");
  }
  return parsed;
}

Parsed ParseSocks5ConnectReply(std::string_view bytes) {
  Parsed parsed;
  if (bytes.size() < 5) return parsed;
  size_t address_len;
  switch (static_cast<uint8_t>(bytes[3])) {
    case 0x01: address_len = 4; break;
    case 0x04: address_len = 16; break;
    case 0x03: address_len = 1 + static_cast<uint8_t>(bytes[4]); break;
    default:
      parsed.complete = true;
      parsed.length = bytes.size();
      parsed.status = absl::UnavailableError("bad SOCKS5 reply from the proxy");
      return parsed;
  }
  size_t total = 4 + address_len + 2;
  if (bytes.size() < total) return parsed;
  parsed.complete = true;
  parsed.length = total;
  if (bytes[0] != 0x05) {
    parsed.status = absl::UnavailableError("bad SOCKS5 reply from the proxy");
  } else if (bytes[1] != 0x00) {
    parsed.status = absl::UnavailableError(
        absl::StrCat("the SOCKS5 proxy could not connect (reply ", static_cast<int>(bytes[1]), ")"));
  }
  return parsed;
}

Parsed ParseHttpConnectReply(std::string_view bytes) {
  Parsed parsed;
  size_t end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) return parsed;
  parsed.complete = true;
  parsed.length = end + 4;
  std::string_view status_line = bytes.substr(0, bytes.find("\r\n"));
  // "HTTP/1.1 200 Connection established"
  if (status_line.substr(0, 5) != "HTTP/" || status_line.size() < 12 ||
      status_line.find(' ') == std::string_view::npos) {
    parsed.status = absl::UnavailableError("bad HTTP reply from the proxy");
    return parsed;
  }
  std::string_view code = status_line.substr(status_line.find(' ') + 1, 3);
  if (code != "200") {
    std::string_view shown = status_line.substr(0, 80);
    parsed.status = absl::UnavailableError(
        absl::StrCat("the HTTP proxy refused CONNECT: ", std::string(shown)));
  }
  return parsed;
}

}  // namespace proxy

namespace {
constexpr size_t kMaxReply = 8192;
}  // namespace

ProxyHandshake::ProxyHandshake(EventLoop& loop, ProxyKind kind, UniqueFd fd, std::string host,
                               uint16_t port, absl::Duration timeout, Done done)
    : loop_(loop), kind_(kind), fd_(std::move(fd)), host_(std::move(host)), port_(port),
      done_(std::move(done)) {
  timer_ = loop_.AddTimer(timeout, [this] {
    timer_ = 0;
    Finish(absl::DeadlineExceededError("the proxy did not answer in time"));
  });
}

ProxyHandshake::~ProxyHandshake() {
  if (timer_ != 0) loop_.CancelTimer(timer_);
  if (watching_) loop_.Unwatch(fd_.get());
}

void ProxyHandshake::Start() {
  if (kind_ == ProxyKind::kSocks5) {
    phase_ = Phase::kMethod;
    Send(proxy::Socks5Greeting());
  } else {
    phase_ = Phase::kConnect;
    Send(proxy::HttpConnect(host_, port_));
  }
  watching_ = loop_.Watch(fd_.get(), EPOLLIN | (out_.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT)), this).ok();
  if (!watching_) Finish(absl::InternalError("cannot watch the proxy socket"));
}

void ProxyHandshake::Send(std::string bytes) {
  out_ += bytes;
  while (!out_.empty()) {
    ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EAGAIN: EPOLLOUT finishes it; an error shows up as EPOLLERR
  }
  if (watching_) (void)loop_.Modify(fd_.get(), EPOLLIN | (out_.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT)));
}

void ProxyHandshake::OnFdEvents(uint32_t events) {
  if (phase_ == Phase::kDone) return;
  if (events & EPOLLOUT) Send("");
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) Step();
}

void ProxyHandshake::Step() {
  // Peek at what is there, then consume only bytes that belong to the proxy's reply: while the
  // reply is incomplete that is everything (kept in `reply_`, at most kMaxReply bytes); once it
  // is complete, exactly its rest. What follows belongs to SSH and stays in the socket. Peeking
  // without consuming would leave a level-triggered socket readable forever: a proxy that sends
  // half a reply and stalls would spin this loop at 100 % CPU until the timeout.
  char buffer[kMaxReply];
  size_t room = kMaxReply - reply_.size();
  ssize_t n = ::recv(fd_.get(), buffer, room, MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    Finish(n == 0 ? absl::UnavailableError("the proxy closed the connection")
                  : ErrnoStatus("proxy", errno));
    return;
  }
  size_t before = reply_.size();
  reply_.append(buffer, static_cast<size_t>(n));
  std::string_view bytes = reply_;
  proxy::Parsed parsed = phase_ == Phase::kMethod          ? proxy::ParseSocks5MethodReply(bytes)
                         : kind_ == ProxyKind::kSocks5      ? proxy::ParseSocks5ConnectReply(bytes)
                                                            : proxy::ParseHttpConnectReply(bytes);
  // The bytes of this read that are part of the reply; the parsers never report a reply that
  // ends inside what an earlier, incomplete read already held.
  size_t take = parsed.complete ? std::max(parsed.length, before) - before : static_cast<size_t>(n);
  if (take > 0 && ::recv(fd_.get(), buffer, take, 0) != static_cast<ssize_t>(take)) {
    Finish(ErrnoStatus("proxy", errno));
    return;
  }
  if (!parsed.complete) {
    if (reply_.size() >= kMaxReply) Finish(absl::UnavailableError("proxy reply too long"));
    return;  // the socket is drained: the next readiness means new bytes
  }
  reply_.clear();
  if (!parsed.status.ok()) {
    Finish(parsed.status);
    return;
  }
  if (phase_ == Phase::kMethod) {
    phase_ = Phase::kConnect;
    Send(proxy::Socks5Connect(host_, port_));
    return;
  }
  Finish(std::move(fd_));
}

void ProxyHandshake::Finish(absl::StatusOr<UniqueFd> result) {
  if (phase_ == Phase::kDone) return;
  phase_ = Phase::kDone;
  if (timer_ != 0) {
    loop_.CancelTimer(timer_);
    timer_ = 0;
  }
  if (watching_) {
    loop_.Unwatch(result.ok() ? result->get() : fd_.get());
    watching_ = false;
  }
  Done done = std::move(done_);
  done(std::move(result));
}

}  // namespace alknet
