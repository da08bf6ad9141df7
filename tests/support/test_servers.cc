// In-process loopback servers that tunnels in tests reach: echo, HTTP, endless source, blackhole.
#include "tests/support/test_servers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace alknet::testing {

LoopbackServer::LoopbackServer() {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  listen(listen_fd_, 512);
  socklen_t len = sizeof(address);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &len);
  port_ = ntohs(address.sin_port);
}

LoopbackServer::~LoopbackServer() = default;

void LoopbackServer::StartAccepting() {
  acceptor_ = std::thread([this] {
    while (!stopping_) {
      pollfd pfd{listen_fd_, POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      connections_.fetch_add(1);
      std::lock_guard<std::mutex> lock(mu_);
      open_fds_.push_back(fd);
      handlers_.emplace_back([this, fd] { Serve(fd); });
    }
  });
}

void LoopbackServer::StopAccepting() {
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);  // unblock handlers
  }
  for (auto& handler : handlers_) handler.join();
  for (int fd : open_fds_) close(fd);
  close(listen_fd_);
}

void EchoServer::Serve(int fd) {
  char buffer[65536];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = send(fd, buffer + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
      if (w <= 0) return;
      off += w;
    }
  }
  shutdown(fd, SHUT_WR);
}

void HttpServer::Serve(int fd) {
  std::string request;
  char buffer[4096];
  while (request.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) return;
    request.append(buffer, static_cast<size_t>(n));
  }
  std::string response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                         std::to_string(body_.size()) + "\r\nConnection: close\r\n\r\n" + body_;
  for (size_t off = 0; off < response.size();) {
    ssize_t w = send(fd, response.data() + off, response.size() - off, MSG_NOSIGNAL);
    if (w <= 0) return;
    off += static_cast<size_t>(w);
  }
  shutdown(fd, SHUT_WR);
}

void SourceServer::Serve(int fd) {
  static const std::string chunk(65536, 'x');
  for (;;) {
    ssize_t w = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (w <= 0) return;
    bytes_sent_.fetch_add(static_cast<uint64_t>(w));
  }
}

BlackholeServer::BlackholeServer() {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(address);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listen_fd_, 0) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &len) != 0) {
    return;
  }
  port_ = ntohs(address.sin_port);
  // Backlog 0 still queues one connection: this one, never accepted, fills the queue.
  filler_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(filler_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) return;
  // A probe: a non-blocking connect must still be in progress after a moment.
  int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (connect(probe, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 &&
      errno == EINPROGRESS) {
    pollfd pfd{probe, POLLOUT, 0};
    ok_ = poll(&pfd, 1, 300) == 0;
  }
  close(probe);
}

BlackholeServer::~BlackholeServer() {
  if (filler_fd_ >= 0) close(filler_fd_);
  if (listen_fd_ >= 0) close(listen_fd_);
}

std::string PatternBytes(size_t size, uint32_t seed) {
  std::string bytes(size, '\0');
  uint32_t state = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    bytes[i] = static_cast<char>(state & 0xff);
  }
  return bytes;
}

std::string EchoRoundTripProblem(int fd, const std::string& payload) {
  // A lost byte must not hang the test: a read that waits this long is reported as such.
  timeval read_timeout{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &read_timeout, sizeof(read_timeout));
  std::string received;
  received.reserve(payload.size());
  size_t sent = 0;
  int send_errno = 0;
  std::thread writer([fd, &payload, &sent, &send_errno] {
    while (sent < payload.size()) {
      ssize_t w = send(fd, payload.data() + sent, std::min<size_t>(payload.size() - sent, 1 << 20),
                       MSG_NOSIGNAL);
      if (w <= 0) {
        send_errno = w < 0 ? errno : 0;
        return;
      }
      sent += static_cast<size_t>(w);
    }
    shutdown(fd, SHUT_WR);
  });
  char buffer[65536];
  std::string read_end = "EOF";
  while (received.size() < payload.size()) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      read_end = errno == EAGAIN ? "no byte for 30 s" : std::string("read: ") + strerror(errno);
      break;
    }
    if (n == 0) break;
    received.append(buffer, static_cast<size_t>(n));
  }
  writer.join();
  std::string problem;
  if (sent < payload.size()) {
    problem += "sent " + std::to_string(sent) + " of " + std::to_string(payload.size()) + " bytes (" +
               (send_errno != 0 ? strerror(send_errno) : "connection closed") + "); ";
  }
  size_t common = std::min(received.size(), payload.size());
  size_t mismatch = std::mismatch(received.begin(), received.begin() + common, payload.begin()).first -
                    received.begin();
  if (mismatch < common) problem += "bytes differ from offset " + std::to_string(mismatch) + "; ";
  if (received.size() < payload.size()) {
    problem += "received " + std::to_string(received.size()) + " of " +
               std::to_string(payload.size()) + " bytes (" + read_end + ")";
  } else if (received.size() > payload.size()) {
    problem += "received " + std::to_string(received.size() - payload.size()) + " bytes too many";
  }
  return problem;
}

bool EchoRoundTrip(int fd, const std::string& payload) {
  return EchoRoundTripProblem(fd, payload).empty();
}

bool EchoOnce(int fd, const std::string& payload) {
  if (send(fd, payload.data(), payload.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(payload.size())) {
    return false;
  }
  std::string received;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  char buffer[4096];
  while (received.size() < payload.size() && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    ssize_t n = read(fd, buffer, std::min(sizeof(buffer), payload.size() - received.size()));
    if (n <= 0) return false;
    received.append(buffer, static_cast<size_t>(n));
  }
  return received == payload;
}

std::pair<std::string, bool> ReadUntilClosed(int fd, std::chrono::milliseconds timeout) {
  std::string received;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buffer[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) return {received, true};
    received.append(buffer, static_cast<size_t>(n));
  }
  return {received, false};
}

}  // namespace alknet::testing
