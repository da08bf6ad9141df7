// The one-line auth event, stable for fail2ban: never contains a tunnel destination.
//
//   <time> INFO auth: result=accepted method=publickey user=alice src=192.0.2.7 port=50122
//        transport=tcp key=SHA256:... key_type=ssh-ed25519
//   <time> WARN auth: result=rejected reason=unknown-key method=publickey user=bob src=...
//
// fail2ban: failregex = ^.* auth: result=rejected .* src=<HOST> port=\d+
// (deploy/fail2ban/filter.d/alknet.conf)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "server/common/log.h"

namespace alknet::auth {

// Certificate logins add `cert_id="<key id>" serial=<n> ca=SHA256:...` after key_type; key= is
// then the certified key's fingerprint. The key id is the CA's free text: bytes outside
// printable ASCII and the characters = " \\ % are written as %XX, so it can never fake a
// src= field for fail2ban.
// The user name is cut to kMaxLoggedUserName (100, as sshd) and the key id to
// kMaxLoggedKeyId bytes, "..." marking the cut.
inline constexpr size_t kMaxLoggedKeyId = 256;

struct CertificateLogInfo {
  std::string_view key_id;
  uint64_t serial = 0;
  std::string_view ca_fingerprint;
};

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
  const CertificateLogInfo* certificate = nullptr;  // certificate logins only
};

// The key id as written in the cert_id field (see CertificateLogInfo).
std::string EscapeCertificateKeyId(std::string_view key_id);

void LogAuthEvent(Logger& logger, const AuthEvent& event);

}  // namespace alknet::auth
