// The client role's pure pieces: the SOCKS5 server state machine (table-driven, whole and
// byte by byte), reply encoding, SSH open-failure mapping, the outbound proxy parsers and the
// reconnect backoff.
#include "server/client/socks5.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "server/client/backoff.h"
#include "server/client/proxy_handshake.h"

namespace alknet {
namespace {

using socks5::Reply;
using socks5::ServerHandshake;
using Status = ServerHandshake::Status;

std::string B(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out += static_cast<char>(b);
  return out;
}

std::string FailureReply(int code) { return B({5, code, 0, 1, 0, 0, 0, 0, 0, 0}); }

struct Case {
  std::string name;
  std::string input;
  Status status;
  std::string reply;    // everything the server sends, in order
  std::string host;     // kRequest only
  uint16_t port = 0;
  std::string failure;  // kClose only
  bool password = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// Feeds `input` in pieces of `chunk` bytes (0: all at once), like a socket would deliver it.
ServerHandshake::Step FeedAll(ServerHandshake& handshake, const std::string& input, size_t chunk,
                          std::string* replies, std::string* left) {
  std::string buffer;
  ServerHandshake::Step step;
  size_t at = 0;
  do {
    size_t take = chunk == 0 ? input.size() - at : std::min(chunk, input.size() - at);
    buffer.append(input, at, take);
    at += take;
    std::string_view view = buffer;
    step = handshake.Feed(view);
    buffer.erase(0, buffer.size() - view.size());
    *replies += step.reply;
  } while (step.status == Status::kNeedMore && at < input.size());
  *left = buffer;
  return step;
}

const socks5::Credentials kCredentials{"alice", "s3cret"};

class Socks5TableTest : public ::testing::TestWithParam<Case> {};

TEST_P(Socks5TableTest, WholeAndByteByByte) {
  const Case& c = GetParam();
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{3}}) {
    ServerHandshake handshake(c.password ? &kCredentials : nullptr);
    std::string replies, left;
    ServerHandshake::Step step = FeedAll(handshake, c.input, chunk, &replies, &left);
    EXPECT_EQ(step.status, c.status) << "chunk " << chunk;
    EXPECT_EQ(replies, c.reply) << "chunk " << chunk;
    if (c.status == Status::kRequest) {
      EXPECT_EQ(handshake.request().host, c.host);
      EXPECT_EQ(handshake.request().port, c.port);
    }
    if (c.status == Status::kClose) {
      EXPECT_EQ(handshake.failure(), c.failure);
    }
  }
}

const std::string kHello = B({5, 1, 0});
const std::string kOk = B({5, 0});

INSTANTIATE_TEST_SUITE_P(
    Cases, Socks5TableTest,
    ::testing::Values(
        Case{"ConnectIpv4", kHello + B({5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90}), Status::kRequest, kOk,
             "10.1.2.3", 8080},
        Case{"ConnectIpv6",
             kHello + B({5, 1, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22}),
             Status::kRequest, kOk, "2001:db8::1", 22},
        Case{"ConnectDomainPassedAsIs", kHello + B({5, 1, 0, 3, 11}) + "example.org" + B({1, 0xbb}),
             Status::kRequest, kOk, "example.org", 443},
        Case{"SeveralMethodsOffered", B({5, 3, 2, 1, 0}) + B({5, 1, 0, 1, 127, 0, 0, 1, 0, 80}),
             Status::kRequest, kOk, "127.0.0.1", 80},
        Case{"NoAcceptableMethod", B({5, 2, 1, 2}), Status::kClose, B({5, 0xff}), "", 0,
             "no-acceptable-method"},
        Case{"ZeroMethods", B({5, 0}), Status::kClose, B({5, 0xff}), "", 0, "no-acceptable-method"},
        Case{"Socks4Greeting", B({4, 1, 0, 80, 127, 0, 0, 1, 0}), Status::kClose, "", "", 0,
             "bad-version"},
        Case{"Bind", kHello + B({5, 2, 0, 1, 0, 0, 0, 0, 0, 0}), Status::kClose,
             kOk + FailureReply(7), "", 0, "command-not-supported"},
        Case{"UdpAssociate", kHello + B({5, 3, 0, 1, 0, 0, 0, 0, 0, 0}), Status::kClose,
             kOk + FailureReply(7), "", 0, "command-not-supported"},
        Case{"UnknownCommand", kHello + B({5, 9, 0, 1, 0, 0, 0, 0, 0, 0}), Status::kClose,
             kOk + FailureReply(7), "", 0, "command-not-supported"},
        Case{"UnknownAddressType", kHello + B({5, 1, 0, 2, 1, 2, 3}), Status::kClose,
             kOk + FailureReply(8), "", 0, "address-type-not-supported"},
        Case{"EmptyDomain", kHello + B({5, 1, 0, 3, 0, 0, 80}), Status::kClose,
             kOk + FailureReply(1), "", 0, "empty-domain"},
        Case{"DomainWithNul", kHello + B({5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80}), Status::kClose,
             kOk + FailureReply(1), "", 0, "bad-domain"},
        Case{"DomainWithSpace", kHello + B({5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80}), Status::kClose,
             kOk + FailureReply(1), "", 0, "bad-domain"},
        Case{"RequestBadVersion", kHello + B({4, 1, 0, 1, 1, 2, 3, 4, 0, 80}), Status::kClose,
             kOk + FailureReply(1), "", 0, "bad-version"},
        Case{"TruncatedGreeting", B({5, 3, 0}), Status::kNeedMore, ""},
        Case{"TruncatedRequest", kHello + B({5, 1, 0, 1, 127, 0}), Status::kNeedMore, kOk},
        Case{"TruncatedDomain", kHello + B({5, 1, 0, 3, 20, 'a', 'b'}), Status::kNeedMore, kOk},
        Case{"PasswordAccepted",
             B({5, 1, 2}) + B({1, 5}) + "alice" + B({6}) + "s3cret" + B({5, 1, 0, 1, 1, 1, 1, 1, 0, 80}),
             Status::kRequest, B({5, 2, 1, 0}), "1.1.1.1", 80, "", true},
        Case{"PasswordWrong", B({5, 1, 2}) + B({1, 5}) + "alice" + B({5}) + "wrong", Status::kClose,
             B({5, 2, 1, 1}), "", 0, "bad-credentials", true},
        Case{"PasswordWrongUser", B({5, 1, 2}) + B({1, 3}) + "bob" + B({6}) + "s3cret", Status::kClose,
             B({5, 2, 1, 1}), "", 0, "bad-credentials", true},
        Case{"PasswordRequiredButNotOffered", kHello, Status::kClose, B({5, 0xff}), "", 0,
             "no-acceptable-method", true},
        Case{"PasswordBadSubnegotiationVersion", B({5, 1, 2}) + B({2, 1, 'a', 1, 'b'}), Status::kClose,
             B({5, 2, 1, 1}), "", 0, "bad-auth-version", true},
        Case{"NoAuthClientWhenPasswordNotRequired", B({5, 1, 2}), Status::kClose, B({5, 0xff}), "", 0,
             "no-acceptable-method"}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// Security round, item 2: a local program must never reach the far agent's own services
// ("alknet-admin" port 0 is the admin API) through the SOCKS5 listener, in any letter case,
// nor port 0 anywhere: reply 02 (not allowed) and close.
TEST(SecurityRound, Item2Socks5RefusesReservedAdminDestination) {
  for (const std::string& name : {std::string("alknet-admin"), std::string("ALKNET-Admin"),
                                  std::string("alknet-anything")}) {
    for (int port : {0, 22}) {
      ServerHandshake handshake;
      std::string input = kHello + B({5, 1, 0, 3, static_cast<int>(name.size())}) + name +
                          B({port >> 8, port & 0xff});
      std::string replies, left;
      ServerHandshake::Step step = FeedAll(handshake, input, 0, &replies, &left);
      EXPECT_EQ(step.status, Status::kClose) << name << ":" << port;
      EXPECT_EQ(replies, kOk + FailureReply(2)) << name << ":" << port;
      EXPECT_EQ(handshake.failure(), "reserved-destination") << name << ":" << port;
    }
  }
}

TEST(SecurityRound, Item2Socks5RefusesPortZero) {
  for (const std::string& request :
       {B({5, 1, 0, 1, 127, 0, 0, 1, 0, 0}), B({5, 1, 0, 3, 4}) + "host" + B({0, 0})}) {
    ServerHandshake handshake;
    std::string replies, left;
    ServerHandshake::Step step = FeedAll(handshake, kHello + request, 1, &replies, &left);
    EXPECT_EQ(step.status, Status::kClose);
    EXPECT_EQ(replies, kOk + FailureReply(2));
    EXPECT_EQ(handshake.failure(), "port-zero");
  }
}

TEST(Socks5Test, EarlyDataAfterTheRequestIsLeftInTheInput) {
  ServerHandshake handshake;
  std::string input = kHello + B({5, 1, 0, 1, 127, 0, 0, 1, 0, 80}) + "GET / HTTP/1.0\r\n\r\n";
  std::string_view view = input;
  ServerHandshake::Step step = handshake.Feed(view);
  EXPECT_EQ(step.status, Status::kRequest);
  EXPECT_EQ(view, "GET / HTTP/1.0\r\n\r\n");
}

TEST(Socks5Test, FeedingAfterTheEndCloses) {
  ServerHandshake handshake;
  std::string input = kHello + B({5, 1, 0, 1, 127, 0, 0, 1, 0, 80});
  std::string_view view = input;
  ASSERT_EQ(handshake.Feed(view).status, Status::kRequest);
  std::string_view more = "x";
  EXPECT_EQ(handshake.Feed(more).status, Status::kClose);
}

TEST(Socks5Test, LongestMessagesFitTheBound) {
  std::string user(255, 'u'), pass(255, 'p');
  socks5::Credentials credentials{user, pass};
  std::string auth = B({1, 255}) + user + B({255}) + pass;
  EXPECT_EQ(auth.size(), socks5::kMaxHandshakeMessage);
  ServerHandshake handshake(&credentials);
  std::string input = B({5, 1, 2}) + auth + B({5, 1, 0, 3, 255}) + std::string(255, 'h') + B({0, 1});
  std::string replies, left;
  EXPECT_EQ(FeedAll(handshake, input, 7, &replies, &left).status, Status::kRequest);
  EXPECT_EQ(handshake.request().host, std::string(255, 'h'));
}

TEST(Socks5Test, BuildReplyCarriesTheBoundAddress) {
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = htons(1080);
  inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
  EXPECT_EQ(socks5::BuildReply(Reply::kSucceeded, reinterpret_cast<sockaddr*>(&v4)),
            B({5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38}));
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(22);
  inet_pton(AF_INET6, "::1", &v6.sin6_addr);
  EXPECT_EQ(socks5::BuildReply(Reply::kSucceeded, reinterpret_cast<sockaddr*>(&v6)),
            B({5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22}));
  inet_pton(AF_INET6, "::ffff:10.0.0.1", &v6.sin6_addr);
  EXPECT_EQ(socks5::BuildReply(Reply::kSucceeded, reinterpret_cast<sockaddr*>(&v6)),
            B({5, 0, 0, 1, 10, 0, 0, 1, 0, 22}));
  EXPECT_EQ(socks5::BuildReply(Reply::kConnectionRefused), FailureReply(5));
}

TEST(Socks5Test, OpenFailureMapping) {
  // libssh's text after SSH_MSG_CHANNEL_OPEN_FAILURE; OpenSSH's descriptions.
  EXPECT_EQ(socks5::ReplyForOpenFailure("Channel opening failure: channel 3 error (2) Connection refused"),
            Reply::kConnectionRefused);
  EXPECT_EQ(socks5::ReplyForOpenFailure("Channel opening failure: channel 3 error (2) connect failed: "
                                        "Name or service not known"),
            Reply::kHostUnreachable);
  EXPECT_EQ(socks5::ReplyForOpenFailure("Channel opening failure: channel 0 error (2) Network is unreachable"),
            Reply::kNetworkUnreachable);
  EXPECT_EQ(socks5::ReplyForOpenFailure("Channel opening failure: channel 1 error (1) "), Reply::kNotAllowed);
  EXPECT_EQ(socks5::ReplyForOpenFailure("Channel opening failure: channel 1 error (4) resource shortage"),
            Reply::kGeneralFailure);
  EXPECT_EQ(socks5::ReplyForOpenFailure("Socket error: disconnected"), Reply::kGeneralFailure);
  EXPECT_EQ(socks5::ReplyForOpenFailure(""), Reply::kGeneralFailure);
  EXPECT_EQ(socks5::ReplyForOpenFailure("error ("), Reply::kGeneralFailure);
}

// ---- outbound proxy protocol pieces ----

TEST(ProxyTest, Socks5Requests) {
  EXPECT_EQ(proxy::Socks5Greeting(), B({5, 1, 0}));
  EXPECT_EQ(proxy::Socks5Connect("127.0.0.1", 2222), B({5, 1, 0, 1, 127, 0, 0, 1, 0x08, 0xae}));
  EXPECT_EQ(proxy::Socks5Connect("::1", 22), B({5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22}));
  EXPECT_EQ(proxy::Socks5Connect("ssh.example", 22), B({5, 1, 0, 3, 11}) + "ssh.example" + B({0, 22}));
}

TEST(ProxyTest, Socks5Replies) {
  EXPECT_FALSE(proxy::ParseSocks5MethodReply(B({5})).complete);
  EXPECT_TRUE(proxy::ParseSocks5MethodReply(B({5, 0})).status.ok());
  EXPECT_FALSE(proxy::ParseSocks5MethodReply(B({5, 0xff})).status.ok());
  EXPECT_FALSE(proxy::ParseSocks5ConnectReply(B({5, 0, 0, 1, 1, 2, 3, 4, 0})).complete);
  proxy::Parsed ok = proxy::ParseSocks5ConnectReply(B({5, 0, 0, 1, 1, 2, 3, 4, 0, 80, 'S', 'S', 'H'}));
  EXPECT_TRUE(ok.complete);
  EXPECT_EQ(ok.length, 10u);  // the SSH banner after it is not consumed
  EXPECT_TRUE(ok.status.ok());
  proxy::Parsed domain = proxy::ParseSocks5ConnectReply(B({5, 0, 0, 3, 2, 'a', 'b', 0, 80}));
  EXPECT_EQ(domain.length, 9u);
  proxy::Parsed refused = proxy::ParseSocks5ConnectReply(B({5, 5, 0, 1, 0, 0, 0, 0, 0, 0}));
  EXPECT_TRUE(refused.complete);
  EXPECT_FALSE(refused.status.ok());
}

TEST(ProxyTest, HttpConnect) {
  EXPECT_EQ(proxy::HttpConnect("ssh.example", 22),
            "CONNECT ssh.example:22 HTTP/1.1\r\nHost: ssh.example:22\r\n\r\n");
  EXPECT_EQ(proxy::HttpConnect("::1", 22), "CONNECT [::1]:22 HTTP/1.1\r\nHost: [::1]:22\r\n\r\n");
  EXPECT_FALSE(proxy::ParseHttpConnectReply("HTTP/1.1 200 Connection established\r\n").complete);
  std::string reply = "HTTP/1.1 200 Connection established\r\nProxy-agent: x\r\n\r\nSSH-2.0-x\r\n";
  proxy::Parsed ok = proxy::ParseHttpConnectReply(reply);
  EXPECT_TRUE(ok.complete);
  EXPECT_TRUE(ok.status.ok());
  EXPECT_EQ(reply.substr(ok.length), "SSH-2.0-x\r\n");
  proxy::Parsed denied = proxy::ParseHttpConnectReply("HTTP/1.0 403 Forbidden\r\n\r\n");
  EXPECT_TRUE(denied.complete);
  EXPECT_FALSE(denied.status.ok());
  EXPECT_NE(std::string(denied.status.message()).find("403"), std::string::npos);
  EXPECT_FALSE(proxy::ParseHttpConnectReply("garbage\r\n\r\n").status.ok());
}

// ---- reconnect backoff ----

TEST(BackoffTest, DoublesToTheCapWithJitterAndResets) {
  Backoff backoff;
  auto middle = [] { return 0.5; };
  std::vector<absl::Duration> bases;
  for (int i = 0; i < 8; ++i) {
    Backoff::Delay delay = backoff.Next(middle);
    EXPECT_EQ(delay.actual, delay.base);  // 0.5 = no jitter
    bases.push_back(delay.base);
  }
  EXPECT_EQ(bases, (std::vector<absl::Duration>{absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                                                 absl::Seconds(8), absl::Seconds(16), absl::Seconds(30),
                                                 absl::Seconds(30), absl::Seconds(30)}));
  backoff.Reset();
  EXPECT_EQ(backoff.Next(middle).base, absl::Seconds(1));
  Backoff::Delay low = backoff.Next([] { return 0.0; });
  EXPECT_EQ(low.actual, absl::Milliseconds(1600));  // 2 s x 0.8
  Backoff::Delay high = backoff.Next([] { return 0.9999; });
  EXPECT_GT(high.actual, absl::Milliseconds(4790));  // 4 s x ~1.2
  for (int i = 0; i < 100; ++i) {
    Backoff::Delay random = backoff.Next();
    EXPECT_GE(random.actual, random.base * 0.8);
    EXPECT_LE(random.actual, random.base * 1.2);
  }
}

}  // namespace
}  // namespace alknet
