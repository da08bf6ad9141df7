// StatusServer's connection budget (security round item 6): one source's flood only evicts its
// own connections waiting for their request, so /healthz is answered.
#include "server/http/status_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace alknet::http {
namespace {

int Connect(uint16_t port, const char* source) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, source, &from.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
    close(fd);
    return -1;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    close(fd);
    return -1;
  }
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return fd;
}

void SendAll(int fd, const std::string& data) {
  ASSERT_EQ(send(fd, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size()));
}

// The whole answer (the server closes after it), or what came before an error.
std::string Ask(uint16_t port, const char* source, const std::string& path) {
  int fd = Connect(port, source);
  if (fd < 0) return "connect failed";
  SendAll(fd, "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string answer;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) answer.append(buffer, static_cast<size_t>(n));
  close(fd);
  return answer;
}

// True when the server has closed `fd` (EOF or reset), without waiting.
bool ClosedByServer(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 1000) <= 0) return false;
  char byte;
  return recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
}

class StatusServerTest : public ::testing::Test {
 protected:
  void Start() {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = *std::move(loop);
    auto server = StatusServer::Bind(HostPort{"127.0.0.1", 0});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    port_ = static_cast<uint16_t>(std::atoi(server_->bound_url().c_str() + 17));  // http://127.0.0.1:
    ASSERT_TRUE(server_->Start(*loop_, {.metrics = [] { return std::string("m 1\n"); },
                                        .healthy = [] { return true; },
                                        .ready = [] { return true; }})
                    .ok());
    thread_ = std::thread([this] { loop_->Run(); });
  }
  void TearDown() override {
    if (thread_.joinable()) {
      loop_->Post([this] { server_->Close(); });
      loop_->Stop();
      thread_.join();
    }
    for (int fd : fds_) close(fd);
  }
  int Keep(int fd) {
    fds_.push_back(fd);
    return fd;
  }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<StatusServer> server_;
  std::thread thread_;
  uint16_t port_ = 0;
  std::vector<int> fds_;
};

// Past 8 connections from one source, a newcomer from that source closes the oldest of them
// that is still waiting for its request; another source's connection is left alone.
TEST_F(StatusServerTest, Item6OneSourceOnlyEvictsItsOwnConnections) {
  Start();
  int other = Keep(Connect(port_, "127.0.0.9"));
  ASSERT_GE(other, 0);
  std::vector<int> flood;
  for (int i = 0; i < 8; ++i) {  // the per-source cap, all silent
    flood.push_back(Keep(Connect(port_, "127.0.0.2")));
    ASSERT_GE(flood.back(), 0);
  }
  std::string answer = Ask(port_, "127.0.0.2", "/healthz");  // same source as the flood
  EXPECT_NE(answer.find("HTTP/1.1 200 OK"), std::string::npos) << answer;
  EXPECT_TRUE(ClosedByServer(flood[0]));
  EXPECT_FALSE(ClosedByServer(flood[1]));
  EXPECT_FALSE(ClosedByServer(other));
}

}  // namespace
}  // namespace alknet::http
