// Security round, item 8: a proxy that sends half of its reply and then stalls must not make the
// client role spin. The agent's CPU time is read from /proc/<pid>/stat over two seconds.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/sshd_process.h"

namespace alknet::testing {
namespace {

// utime + stime of `pid`, in seconds.
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name "(...)": state is field 3, utime 14, stime 15.
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Accepts one connection, reads the client's first request, answers `partial` and stalls.
class StallingProxy {
 public:
  explicit StallingProxy(std::string partial) : partial_(std::move(partial)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(address);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), len);
    listen(listen_fd_, 4);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &len);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      char request[1024];
      if (read(fd, request, sizeof(request)) > 0 &&
          send(fd, partial_.data(), partial_.size(), MSG_NOSIGNAL) ==
              static_cast<ssize_t>(partial_.size())) {
        sent_ = true;
      }
      while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      close(fd);
    });
  }
  ~StallingProxy() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);  // unblocks accept if nobody came
    thread_.join();
    close(listen_fd_);
  }
  uint16_t port() const { return port_; }
  bool WaitUntilSent() {
    for (int i = 0; i < 500 && !sent_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return sent_;
  }

 private:
  std::string partial_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> sent_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

void ExpectNoSpinOnPartialReply(const std::string& scheme, const std::string& partial) {
  TempDir dir;
  TestKey key = MakeKey(dir, "client_key");
  StallingProxy proxy(partial);
  // The SSH server is never reached: the proxy holds the connection in its handshake.
  ClientProcess client(dir, {"--server", "tcp://127.0.0.1:9", "--identity", key.private_path,
                             "--insecure-accept-any-host-key", "--socks5", "127.0.0.1:0",
                             "--handshake-timeout", "60s", "--proxy",
                             scheme + "://127.0.0.1:" + std::to_string(proxy.port())});
  ASSERT_TRUE(proxy.WaitUntilSent()) << client.Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the partial reply is read
  pid_t pid = client.process().pid();
  double before = ProcessCpuSeconds(pid);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  double used = ProcessCpuSeconds(pid) - before;
  // A spinning loop burns about 2 s here; an idle one next to nothing.
  EXPECT_LT(used, 0.5) << "CPU seconds in 2 s with a stalled " << scheme << " proxy\n" << client.Log();
  EXPECT_TRUE(client.process().running()) << client.Log();
}

TEST(SecurityRound, Item8PartialHttpProxyReplyDoesNotSpin) {
  ExpectNoSpinOnPartialReply("http", "HTTP/1.1 200 Connection est");
}

TEST(SecurityRound, Item8PartialSocks5ProxyReplyDoesNotSpin) {
  ExpectNoSpinOnPartialReply("socks5", std::string("\x05", 1));
}

}  // namespace
}  // namespace alknet::testing
