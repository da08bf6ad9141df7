// In-process loopback servers that tunnels in tests reach: echo, HTTP, endless source, blackhole.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace alknet::testing {

// Accepts on 127.0.0.1:<ephemeral> and runs `Serve(fd)` on a thread per connection.
class LoopbackServer {
 public:
  LoopbackServer();
  virtual ~LoopbackServer();
  uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }

 protected:
  void StartAccepting();
  virtual void Serve(int fd) = 0;
  void StopAccepting();

 private:
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> handlers_;
  std::vector<int> open_fds_;
};

// Echoes every byte back; half-closes its write side after reading EOF.
class EchoServer final : public LoopbackServer {
 public:
  EchoServer() { StartAccepting(); }
  ~EchoServer() override { StopAccepting(); }

 protected:
  void Serve(int fd) override;
};

// Answers any request with "200 OK" and `body`, then closes.
class HttpServer final : public LoopbackServer {
 public:
  explicit HttpServer(std::string body) : body_(std::move(body)) { StartAccepting(); }
  ~HttpServer() override { StopAccepting(); }

 protected:
  void Serve(int fd) override;

 private:
  std::string body_;
};

// Writes bytes as fast as the peer takes them, forever; counts what the kernel accepted.
class SourceServer final : public LoopbackServer {
 public:
  SourceServer() { StartAccepting(); }
  ~SourceServer() override { StopAccepting(); }
  uint64_t bytes_sent() const { return bytes_sent_.load(); }

 protected:
  void Serve(int fd) override;

 private:
  std::atomic<uint64_t> bytes_sent_{0};
};

// A loopback port whose connects hang: a listener with backlog 0 whose one accept-queue slot is
// taken by a connection never accepted, so the kernel drops every later SYN (no RST). The caller's
// connect gets no answer until its own timeout (or the kernel's SYN retries, about two minutes).
class BlackholeServer {
 public:
  BlackholeServer();
  ~BlackholeServer();
  uint16_t port() const { return port_; }
  // True when a fresh connect really hangs here (checked once by the constructor).
  bool ok() const { return ok_; }

 private:
  int listen_fd_ = -1;
  int filler_fd_ = -1;
  uint16_t port_ = 0;
  bool ok_ = false;
};

// Deterministic pseudo-random bytes for byte-exact checks.
std::string PatternBytes(size_t size, uint32_t seed);

// Sends `payload` on fd while reading the same amount back; true when the echo is identical.
bool EchoRoundTrip(int fd, const std::string& payload);
// Sends `payload` and reads the same number of bytes back (10 s at most) without closing
// anything: the connection (a channel, through a tunnel) stays open. True when they match.
bool EchoOnce(int fd, const std::string& payload);
// Reads until the peer closes or `timeout` passes; what arrived and whether it closed.
std::pair<std::string, bool> ReadUntilClosed(int fd, std::chrono::milliseconds timeout);
// The same round trip; empty if the echo was byte-exact, else what went wrong (short send,
// short read and why, first differing offset).
std::string EchoRoundTripProblem(int fd, const std::string& payload);

}  // namespace alknet::testing
