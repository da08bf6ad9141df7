// SOCKS5 (RFC 1928) server side as a pure state machine, with optional username/password
// authentication (RFC 1929). No I/O: the caller feeds received bytes and sends the replies.
// Only CONNECT is supported; BIND and UDP ASSOCIATE are answered "command not supported".
// Reserved "alknet-*" names (the agent's own services) and port 0 are answered "not allowed".
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace alknet::socks5 {

// REP codes of RFC 1928 section 6.
enum class Reply : uint8_t {
  kSucceeded = 0x00,
  kGeneralFailure = 0x01,
  kNotAllowed = 0x02,
  kNetworkUnreachable = 0x03,
  kHostUnreachable = 0x04,
  kConnectionRefused = 0x05,
  kTtlExpired = 0x06,
  kCommandNotSupported = 0x07,
  kAddressTypeNotSupported = 0x08,
};

enum class AddressType : uint8_t { kIpv4 = 0x01, kDomain = 0x03, kIpv6 = 0x04 };

// The largest message a client sends before the request is complete (an RFC 1929
// sub-negotiation: 1 + 1 + 255 + 1 + 255 bytes). A receive buffer of this size always suffices.
inline constexpr size_t kMaxHandshakeMessage = 513;

struct Credentials {
  std::string username;  // empty: no authentication (method 0x00)
  std::string password;
};

struct Request {
  AddressType type = AddressType::kIpv4;
  std::string host;  // dotted IPv4, IPv6 text (no brackets) or the domain name as sent
  uint16_t port = 0;
};

class ServerHandshake {
 public:
  enum class Status {
    kNeedMore,  // send `reply` (if any) and feed more bytes
    kRequest,   // a complete CONNECT request: see request(); answer with BuildReply()
    kClose,     // send `reply` (if any), then close the connection
  };
  struct Step {
    Status status = Status::kNeedMore;
    std::string reply;
  };

  // `credentials` may be null or have an empty username: then only "no authentication" is
  // accepted. With a username, only username/password (0x02) is accepted.
  explicit ServerHandshake(const Credentials* credentials = nullptr);

  // Consumes complete messages from the front of `input` (advancing it past them) and returns
  // what to do. Bytes after a complete request are left in `input` (early client data).
  Step Feed(std::string_view& input);

  const Request& request() const { return request_; }
  // Why the handshake closed ("bad-version", "no-acceptable-method", ...), for logs.
  std::string_view failure() const { return failure_; }

 private:
  enum class Phase { kGreeting, kAuth, kRequest, kDone };
  Step Close(std::string_view why, std::string reply = {});

  const Credentials* credentials_;
  Phase phase_ = Phase::kGreeting;
  Request request_;
  std::string_view failure_;
};

// A reply to a request: VER REP RSV ATYP BND.ADDR BND.PORT. `bound` (AF_INET / AF_INET6) is
// reported when given, 0.0.0.0:0 otherwise.
std::string BuildReply(Reply code, const sockaddr* bound = nullptr);

// Maps libssh's error text after a failed direct-tcpip open ("Channel opening failure: channel
// 3 error (2) Connection refused") to a reply: reason 1 (administratively prohibited) -> 02,
// reason 2 (connect failed) -> 05 when the text says the connection was refused, 03 for an
// unreachable network, 04 otherwise; anything else -> 01.
Reply ReplyForOpenFailure(std::string_view ssh_error);

std::string_view ReplyName(Reply reply);

}  // namespace alknet::socks5
