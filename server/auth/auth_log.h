// The one-line auth event, stable for fail2ban: never contains a tunnel destination.
//
//   <time> INFO auth: result=accepted method=publickey user=alice src=192.0.2.7 port=50122
//        transport=tcp key=SHA256:... key_type=ssh-ed25519
//   <time> WARN auth: result=rejected reason=unknown-key method=publickey user=bob src=...
//
// fail2ban: failregex = ^.* auth: result=rejected .* src=<HOST> port=\d+
#pragma once

#include <string>
#include <string_view>

#include "server/common/log.h"

namespace alknet::auth {

struct AuthEvent {
  bool accepted = false;
  std::string_view reason;     // rejected only: unknown-key, expired, from-mismatch, ...
  std::string_view method;     // "publickey", "none", "password", "keyboard-interactive"
  std::string_view user;
  std::string_view source_ip;
  uint16_t source_port = 0;
  std::string_view transport;  // "tcp"
  std::string_view fingerprint;  // may be empty (no key offered)
  std::string_view key_type;
};

void LogAuthEvent(Logger& logger, const AuthEvent& event);

}  // namespace alknet::auth
