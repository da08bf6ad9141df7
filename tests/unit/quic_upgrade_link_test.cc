// Two QUIC endpoints in one process, as the old and the new agent of a binary upgrade: one UDP
// socket (dup'd), their upgrade link between them, a real ngtcp2 client. A handshake the old
// endpoint began, and the connection it made, carry on after the new one took the socket.
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "server/common/log.h"
#include "server/loop/event_loop.h"
#include "server/quic/quic_connection.h"
#include "server/quic/quic_endpoint.h"
#include "server/quic/quic_tls.h"
#include "server/quic/udp_socket.h"
#include "server/quic/upgrade_relay.h"
#include "server/transport/tls_context.h"

namespace alknet::quic {
namespace {

// The client's side: its own connected UDP socket, read on the loop.
class TestClient final : public PacketSink, public FdHandler {
 public:
  TestClient(EventLoop& loop, const SockAddr& server) : loop_(loop) {
    auto socket = ConnectUdp({"127.0.0.1", Port(server)}, &remote_);
    if (!socket.ok()) std::abort();
    socket_ = *std::move(socket);
    local_ = LocalAddress(socket_.get());
    verify_.name = "localhost";
    verify_.insecure = true;
    QuicConnection::Events events;
    events.on_stream = [this](QuicConnection&, UniqueFd plain) { plain_ = std::move(plain); };
    events.on_closed = [this](QuicConnection&, const absl::Status&) { closed_ = true; };
    auto conn = QuicConnection::Connect(loop_, *this, verify_, local_, remote_, QuicSettings{}, std::move(events));
    if (!conn.ok()) std::abort();
    conn_ = *std::move(conn);
    loop_.SetInterest(socket_.get(), socket_events_, EPOLLIN, this);
    conn_->Flush();  // the first Initial
  }
  ~TestClient() override {
    loop_.Unwatch(socket_.get());
    conn_.reset();
  }
  void OnFdEvents(uint32_t) override {
    ReceiveDatagrams(socket_.get(), loop_.Scratch(), 256, [this](const Datagram& d) {
      if (!conn_->closed()) conn_->OnPacket(local_, *d.remote, d.ecn, d.data, /*flush=*/false);
    });
    if (!conn_->closed()) conn_->Flush();
  }
  SendResult Send(const ngtcp2_addr&, std::span<const uint8_t> data, size_t segment, uint8_t ecn,
                  size_t* sent) override {
    return SendPackets(socket_.get(), nullptr, data, segment, ecn, sent);
  }
  void NotifyWritable(QuicConnection*) override {}
  int plain() const { return plain_.get(); }
  bool closed() const { return closed_; }

 private:
  static uint16_t Port(const SockAddr& address) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_port);
  }

  EventLoop& loop_;
  UniqueFd socket_;
  uint32_t socket_events_ = 0;
  SockAddr local_;
  SockAddr remote_;
  ClientVerify verify_;
  std::unique_ptr<QuicConnection> conn_;
  UniqueFd plain_;
  bool closed_ = false;
};

// One endpoint of the two, with what it did.
struct Side {
  std::unique_ptr<QuicEndpoint> endpoint;
  int admitted = 0;
  int relayed = 0;
  UniqueFd stream;  // the server end of the SSH stream, once delivered
};

class QuicUpgradeLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/alknet-quic-link.XXXXXX";
    dir_ = mkdtemp(dir_template);
    ASSERT_TRUE(GenerateSelfSignedCertificate(dir_ + "/cert.pem", dir_ + "/key.pem", "localhost").ok());
    auto credentials = LoadServerCredentials(dir_ + "/cert.pem", dir_ + "/key.pem");
    ASSERT_TRUE(credentials.ok()) << credentials.status();
    credentials_ = *std::move(credentials);
    loop_ = *EventLoop::Create();
    secret_.fill(9);
  }
  void TearDown() override {
    old_.endpoint.reset();
    new_.endpoint.reset();
    std::system(("rm -rf " + dir_).c_str());
  }

  std::unique_ptr<QuicEndpoint> MakeEndpoint(Side& side, UniqueFd socket, uint32_t epoch, UpgradeLinks links) {
    EndpointOptions options;
    options.credentials = credentials_.get();
    options.secret = secret_;
    options.epoch = epoch;
    options.retry = RetryMode::kNever;
    EndpointHooks hooks;
    hooks.admit = [&side](const StreamInfo&) {
      ++side.admitted;
      return std::make_shared<int>(0);
    };
    hooks.deliver = [&side](ConnectedStream stream, std::shared_ptr<void>) { side.stream = std::move(stream.fd); };
    hooks.count = [&side](std::string_view event) {
      if (event == "upgrade_relayed") ++side.relayed;
    };
    return std::make_unique<QuicEndpoint>(*loop_, std::move(socket), options, std::move(hooks), logger_,
                                          std::move(links));
  }

  // Runs the loop until `done` or 10 s.
  bool RunUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < deadline) loop_->RunOnce(absl::Milliseconds(10));
    return done();
  }
  // Runs the loop until `size` bytes came out of fd() (-1 until it exists: a server stream is
  // delivered with its first bytes); what came, or less after 10 s.
  std::string ReceiveOnLoop(const std::function<int()>& fd, size_t size) {
    std::string got;
    RunUntil([&] {
      char buffer[64];
      ssize_t n = fd() < 0 ? -1 : recv(fd(), buffer, sizeof(buffer), MSG_DONTWAIT);
      if (n > 0) got.append(buffer, static_cast<size_t>(n));
      return got.size() >= size;
    });
    return got;
  }

  std::string dir_;
  Logger logger_{LogLevel::kError, LogFormat::kText};
  Credentials credentials_;
  std::unique_ptr<EventLoop> loop_;
  std::array<uint8_t, 32> secret_{};
  Side old_;
  Side new_;
};

TEST_F(QuicUpgradeLinkTest, AHandshakeAndAStreamTheOldEndpointBeganGoOnThroughTheNewOne) {
  auto socket = BindUdp({"127.0.0.1", 0}, "test");
  ASSERT_TRUE(socket.ok()) << socket.status();
  SockAddr server = LocalAddress(socket->get());
  UniqueFd shared(dup(socket->get()));  // the new process's copy of the same socket
  auto link = MakeRelayPair();
  ASSERT_TRUE(link.ok());
  old_.endpoint = MakeEndpoint(old_, *std::move(socket), 0x0a0a0a0a, {std::move((*link)[0]), UniqueFd()});
  new_.endpoint = MakeEndpoint(new_, std::move(shared), 0x0b0b0b0b,
                               {UniqueFd(), std::move((*link)[1]), 0x0a0a0a0a});
  old_.endpoint->Start();

  // The client's first Initial reaches the old endpoint, which answers it...
  TestClient client(*loop_, server);
  ASSERT_TRUE(RunUntil([&] { return old_.endpoint->connection_count() == 1; }));
  EXPECT_EQ(old_.admitted, 1);
  // ...and before the client reads that answer, the new endpoint takes the socket over.
  old_.endpoint->StopReading();
  new_.endpoint->Start();

  // The client's next datagram (an Initial acknowledging the server's, and its Handshake
  // packet) names the old endpoint's connection ID: passed back, not a new connection here.
  ASSERT_TRUE(RunUntil([&] { return client.plain() >= 0; }))
      << "old connections " << old_.endpoint->connection_count() << ", new "
      << new_.endpoint->connection_count() << ", relayed " << new_.relayed;

  // Bytes each way over the connection the old endpoint owns, every packet through the new
  // one; the first bytes open the stream on the server's side.
  const std::string hello = "SSH-2.0-test\r\n";
  ASSERT_EQ(send(client.plain(), hello.data(), hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(hello.size()));
  ASSERT_EQ(ReceiveOnLoop([&] { return old_.stream.get(); }, hello.size()), hello);
  const std::string answer = "SSH-2.0-server\r\n";
  ASSERT_EQ(send(old_.stream.get(), answer.data(), answer.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(answer.size()));
  EXPECT_EQ(ReceiveOnLoop([&] { return client.plain(); }, answer.size()), answer);
  EXPECT_FALSE(client.closed());
  EXPECT_EQ(new_.admitted, 0);
  EXPECT_EQ(new_.endpoint->connection_count(), 0u);
  EXPECT_GT(new_.relayed, 2);
}

// The other way: until the old process stops reading the socket, it can read packets of the new
// one's connections. They go forward, even when the new one's hello still waits on the link.
TEST_F(QuicUpgradeLinkTest, TheNewEndpointsPacketsReadByTheOldOneGoForward) {
  auto socket = BindUdp({"127.0.0.1", 0}, "test");
  ASSERT_TRUE(socket.ok()) << socket.status();
  SockAddr server = LocalAddress(socket->get());
  UniqueFd shared(dup(socket->get()));
  auto link = MakeRelayPair();
  ASSERT_TRUE(link.ok());
  old_.endpoint = MakeEndpoint(old_, *std::move(socket), 0x0a0a0a0a, {std::move((*link)[0]), UniqueFd()});
  new_.endpoint = MakeEndpoint(new_, std::move(shared), 0x0b0b0b0b,
                               {UniqueFd(), std::move((*link)[1]), 0x0a0a0a0a});
  new_.endpoint->Start();  // its hello waits on the link: the old endpoint is not reading yet
  TestClient client(*loop_, server);
  ASSERT_TRUE(RunUntil([&] { return client.plain() >= 0; }));
  EXPECT_EQ(new_.admitted, 1);

  // Now only the old endpoint reads the socket.
  new_.endpoint->StopReading();
  old_.endpoint->Start();
  const std::string hello = "SSH-2.0-test\r\n";
  ASSERT_EQ(send(client.plain(), hello.data(), hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(hello.size()));
  EXPECT_EQ(ReceiveOnLoop([&] { return new_.stream.get(); }, hello.size()), hello)
      << "relayed by the old endpoint: " << old_.relayed;
  EXPECT_GT(old_.relayed, 0);
  EXPECT_EQ(old_.admitted, 0);
  EXPECT_FALSE(client.closed());  // no stateless reset from the old endpoint
}

}  // namespace
}  // namespace alknet::quic
