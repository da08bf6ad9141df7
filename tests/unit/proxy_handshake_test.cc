// ProxyHandshake on a socketpair: replies split across reads are assembled, and nothing past the
// proxy's reply is consumed (the SSH banner that follows stays in the socket).
#include "server/client/proxy_handshake.h"

#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace alknet {
namespace {

struct Outcome {
  std::optional<absl::StatusOr<UniqueFd>> result;
  std::string left_in_socket;
};

// The proxy side writes each of `pieces` after the handshake has seen the previous one.
Outcome Drive(ProxyKind kind, const std::vector<std::string>& pieces) {
  Outcome run;
  auto loop = EventLoop::Create();
  EXPECT_TRUE(loop.ok());
  int pair[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd proxy_end(pair[1]);
  ProxyHandshake handshake(**loop, kind, UniqueFd(pair[0]), "ssh.example", 22, absl::Seconds(30),
                           [&](absl::StatusOr<UniqueFd> result) { run.result = std::move(result); });
  handshake.Start();
  for (const std::string& piece : pieces) {
    char sink[4096];
    while (read(proxy_end.get(), sink, sizeof(sink)) > 0) {
    }  // the client's requests
    EXPECT_EQ(write(proxy_end.get(), piece.data(), piece.size()), static_cast<ssize_t>(piece.size()));
    for (int i = 0; i < 5 && !run.result; ++i) (*loop)->RunOnce(absl::Milliseconds(10));
  }
  if (run.result && run.result->ok()) {
    char rest[256];
    ssize_t n = read((*run.result)->get(), rest, sizeof(rest));
    if (n > 0) run.left_in_socket.assign(rest, static_cast<size_t>(n));
  }
  return run;
}

TEST(SecurityRound, Item8HttpProxyReplyInPiecesLeavesSshBytes) {
  Outcome run = Drive(ProxyKind::kHttpConnect,
                  {"HTTP/1.1 200 Conn", "ection established\r", "\n\r", "\nSSH-2.0-server\r\n"});
  ASSERT_TRUE(run.result.has_value());
  ASSERT_TRUE(run.result->ok()) << run.result->status();
  EXPECT_EQ(run.left_in_socket, "SSH-2.0-server\r\n");
}

TEST(SecurityRound, Item8Socks5ProxyReplyInPiecesLeavesSshBytes) {
  Outcome run = Drive(ProxyKind::kSocks5, {std::string("\x05", 1), std::string("\x00", 1),
                                       std::string("\x05\x00\x00\x01\x7f\x00", 6),
                                       std::string("\x00\x01\x00\x16SSH-2.0-s\r\n", 15)});
  ASSERT_TRUE(run.result.has_value());
  ASSERT_TRUE(run.result->ok()) << run.result->status();
  EXPECT_EQ(run.left_in_socket, "SSH-2.0-s\r\n");
}

TEST(SecurityRound, Item8ProxyReplyTooLongFails) {
  Outcome run = Drive(ProxyKind::kHttpConnect, {"HTTP/1.1 200 OK\r\n" + std::string(5000, 'x'),
                                            std::string(5000, 'y')});
  ASSERT_TRUE(run.result.has_value());
  EXPECT_FALSE(run.result->ok());
}

}  // namespace
}  // namespace alknet
