// SOCKS5 (RFC 1928 / RFC 1929) server handshake as a pure state machine.
#include "server/client/socks5.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "server/common/reserved_names.h"

namespace alknet::socks5 {
namespace {

constexpr uint8_t kVersion = 0x05;
constexpr uint8_t kAuthVersion = 0x01;
constexpr uint8_t kMethodNone = 0x00;
constexpr uint8_t kMethodPassword = 0x02;
constexpr uint8_t kNoAcceptableMethod = 0xFF;
constexpr uint8_t kCommandConnect = 0x01;

uint8_t At(std::string_view input, size_t i) { return static_cast<uint8_t>(input[i]); }

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  size_t n = a.size() < b.size() ? a.size() : b.size();
  for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string Bytes(std::initializer_list<uint8_t> bytes) {
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

ServerHandshake::ServerHandshake(const Credentials* credentials)
    : credentials_(credentials != nullptr && !credentials->username.empty() ? credentials : nullptr) {}

ServerHandshake::Step ServerHandshake::Close(std::string_view why, std::string reply) {
  phase_ = Phase::kDone;
  failure_ = why;
  return Step{Status::kClose, std::move(reply)};
}

ServerHandshake::Step ServerHandshake::Feed(std::string_view& input) {
  Step step;
  for (;;) {
    switch (phase_) {
      case Phase::kDone:
        return Close(failure_.empty() ? "fed-after-end" : failure_);

      case Phase::kGreeting: {
        // VER NMETHODS METHODS...
        if (input.empty()) return step;
        if (At(input, 0) != kVersion) return Close("bad-version");
        if (input.size() < 2) return step;
        size_t methods = At(input, 1);
        if (methods == 0) return Close("no-acceptable-method", Bytes({kVersion, kNoAcceptableMethod}));
        if (input.size() < 2 + methods) return step;
        uint8_t wanted = credentials_ != nullptr ? kMethodPassword : kMethodNone;
        bool offered = false;
        for (size_t i = 0; i < methods; ++i) offered |= At(input, 2 + i) == wanted;
        input.remove_prefix(2 + methods);
        if (!offered) return Close("no-acceptable-method", Bytes({kVersion, kNoAcceptableMethod}));
        step.reply += Bytes({kVersion, wanted});
        phase_ = credentials_ != nullptr ? Phase::kAuth : Phase::kRequest;
        break;
      }

      case Phase::kAuth: {
        // VER ULEN UNAME PLEN PASSWD
        if (input.empty()) return step;
        if (At(input, 0) != kAuthVersion) {
          step.reply += Bytes({kAuthVersion, 0x01});
          return Close("bad-auth-version", std::move(step.reply));
        }
        if (input.size() < 2) return step;
        size_t user_len = At(input, 1);
        if (input.size() < 3 + user_len) return step;
        size_t pass_len = At(input, 2 + user_len);
        if (input.size() < 3 + user_len + pass_len) return step;
        std::string_view user = input.substr(2, user_len);
        std::string_view pass = input.substr(3 + user_len, pass_len);
        // Both compared in full, whatever the first says.
        const bool user_ok = ConstantTimeEquals(user, credentials_->username);
        const bool pass_ok = ConstantTimeEquals(pass, credentials_->password);
        const bool ok = user_ok && pass_ok;
        input.remove_prefix(3 + user_len + pass_len);
        if (!ok) {
          step.reply += Bytes({kAuthVersion, 0x01});
          return Close("bad-credentials", std::move(step.reply));
        }
        step.reply += Bytes({kAuthVersion, 0x00});
        phase_ = Phase::kRequest;
        break;
      }

      case Phase::kRequest: {
        // VER CMD RSV ATYP DST.ADDR DST.PORT
        if (input.empty()) return step;
        if (At(input, 0) != kVersion) {
          step.reply += BuildReply(Reply::kGeneralFailure);
          return Close("bad-version", std::move(step.reply));
        }
        if (input.size() < 4) return step;
        uint8_t command = At(input, 1);
        if (command != kCommandConnect) {
          step.reply += BuildReply(Reply::kCommandNotSupported);
          return Close("command-not-supported", std::move(step.reply));
        }
        uint8_t type = At(input, 3);
        size_t address_len;
        size_t address_at = 4;
        if (type == static_cast<uint8_t>(AddressType::kIpv4)) {
          address_len = 4;
        } else if (type == static_cast<uint8_t>(AddressType::kIpv6)) {
          address_len = 16;
        } else if (type == static_cast<uint8_t>(AddressType::kDomain)) {
          if (input.size() < 5) return step;
          address_len = At(input, 4);
          address_at = 5;
          if (address_len == 0) {
            step.reply += BuildReply(Reply::kGeneralFailure);
            return Close("empty-domain", std::move(step.reply));
          }
        } else {
          step.reply += BuildReply(Reply::kAddressTypeNotSupported);
          return Close("address-type-not-supported", std::move(step.reply));
        }
        size_t total = address_at + address_len + 2;
        if (input.size() < total) return step;
        std::string_view address = input.substr(address_at, address_len);
        Request request;
        request.type = static_cast<AddressType>(type);
        request.port = static_cast<uint16_t>((At(input, total - 2) << 8) | At(input, total - 1));
        char text[INET6_ADDRSTRLEN] = {};
        if (request.type == AddressType::kIpv4) {
          inet_ntop(AF_INET, address.data(), text, sizeof(text));
          request.host = text;
        } else if (request.type == AddressType::kIpv6) {
          inet_ntop(AF_INET6, address.data(), text, sizeof(text));
          request.host = text;
        } else {
          for (char c : address) {
            if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
              step.reply += BuildReply(Reply::kGeneralFailure);
              return Close("bad-domain", std::move(step.reply));
            }
          }
          request.host = std::string(address);
        }
        input.remove_prefix(total);
        // The agent's own services ("alknet-admin" is the admin API) are never asked for on
        // behalf of a local program, whatever the far side's policy; nor is port 0.
        if (request.type == AddressType::kDomain && IsReservedDestination(request.host)) {
          step.reply += BuildReply(Reply::kNotAllowed);
          return Close("reserved-destination", std::move(step.reply));
        }
        if (request.port == 0) {
          step.reply += BuildReply(Reply::kNotAllowed);
          return Close("port-zero", std::move(step.reply));
        }
        request_ = std::move(request);
        phase_ = Phase::kDone;
        step.status = Status::kRequest;
        return step;
      }
    }
  }
}

std::string BuildReply(Reply code, const sockaddr* bound) {
  std::string reply = Bytes({kVersion, static_cast<uint8_t>(code), 0x00});
  if (bound != nullptr && bound->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(bound);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      reply += static_cast<char>(AddressType::kIpv4);
      reply.append(reinterpret_cast<const char*>(&v6->sin6_addr) + 12, 4);
    } else {
      reply += static_cast<char>(AddressType::kIpv6);
      reply.append(reinterpret_cast<const char*>(&v6->sin6_addr), 16);
    }
    reply.append(reinterpret_cast<const char*>(&v6->sin6_port), 2);
    return reply;
  }
  reply += static_cast<char>(AddressType::kIpv4);
  if (bound != nullptr && bound->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(bound);
    reply.append(reinterpret_cast<const char*>(&v4->sin_addr), 4);
    reply.append(reinterpret_cast<const char*>(&v4->sin_port), 2);
  } else {
    reply.append(6, '\0');
  }
  return reply;
}

Reply ReplyForOpenFailure(std::string_view error) {
  constexpr std::string_view kMarker = "error (";
  size_t at = error.find(kMarker);
  if (at == std::string_view::npos) return Reply::kGeneralFailure;
  size_t digit = at + kMarker.size();
  if (digit + 1 >= error.size() || error[digit + 1] != ')') return Reply::kGeneralFailure;
  std::string_view text = error.substr(digit + 2);
  auto contains = [&](std::string_view needle) {
    for (size_t i = 0; i + needle.size() <= text.size(); ++i) {
      bool match = true;
      for (size_t k = 0; k < needle.size() && match; ++k) {
        char a = text[i + k], b = needle[k];
        if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
        match = a == b;
      }
      if (match) return true;
    }
    return false;
  };
  switch (error[digit]) {
    case '1': return Reply::kNotAllowed;  // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
    case '2':                             // SSH_OPEN_CONNECT_FAILED
      if (contains("refused")) return Reply::kConnectionRefused;
      if (contains("network is unreachable")) return Reply::kNetworkUnreachable;
      return Reply::kHostUnreachable;
    default: return Reply::kGeneralFailure;
  }
}

std::string_view ReplyName(Reply reply) {
  switch (reply) {
    case Reply::kSucceeded: return "succeeded";
    case Reply::kGeneralFailure: return "general-failure";
    case Reply::kNotAllowed: return "not-allowed";
    case Reply::kNetworkUnreachable: return "network-unreachable";
    case Reply::kHostUnreachable: return "host-unreachable";
    case Reply::kConnectionRefused: return "connection-refused";
    case Reply::kTtlExpired: return "ttl-expired";
    case Reply::kCommandNotSupported: return "command-not-supported";
    case Reply::kAddressTypeNotSupported: return "address-type-not-supported";
  }
  return "general-failure";
}

}  // namespace alknet::socks5
