// The one-line auth event, stable for fail2ban: never contains a tunnel destination.
#include "server/auth/auth_log.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace alknet::auth {
namespace {

constexpr std::string_view kComponent = "auth";

// Writes the line at Info (accepted) or Warn (rejected); the message is empty, all content
// is in the fields.
template <typename... Fields>
void Emit(Logger& logger, bool accepted, Fields&&... fields) {
  if (accepted) {
    logger.Info(kComponent, "", {std::forward<Fields>(fields)...});
  } else {
    logger.Warn(kComponent, "", {std::forward<Fields>(fields)...});
  }
}

// Appends the optional key and key_type fields (each left out when empty) after `leading`.
template <typename... Fields>
void EmitWithKey(Logger& logger, const AuthEvent& event, Fields&&... leading) {
  const bool has_key = !event.fingerprint.empty();
  const bool has_key_type = !event.key_type.empty();
  if (has_key && has_key_type) {
    Emit(logger, event.accepted, std::forward<Fields>(leading)...,
         LogField{"key", std::string(event.fingerprint)},
         LogField{"key_type", std::string(event.key_type)});
  } else if (has_key) {
    Emit(logger, event.accepted, std::forward<Fields>(leading)...,
         LogField{"key", std::string(event.fingerprint)});
  } else if (has_key_type) {
    Emit(logger, event.accepted, std::forward<Fields>(leading)...,
         LogField{"key_type", std::string(event.key_type)});
  } else {
    Emit(logger, event.accepted, std::forward<Fields>(leading)...);
  }
}

// Certificate logins: every field is always present.
void EmitCertificate(Logger& logger, const AuthEvent& event, LogField method, LogField user,
                     LogField source, LogField port, LogField transport) {
  const CertificateLogInfo& cert = *event.certificate;
  LogField key{"key", std::string(event.fingerprint)};
  LogField key_type{"key_type", std::string(event.key_type)};
  // The key id is the CA's free text (and, before the CA is trusted, anyone's): bounded
  // before its %XX escaping can triple it.
  LogField cert_id{"cert_id", EscapeCertificateKeyId(TruncateForLog(cert.key_id, kMaxLoggedKeyId)),
                   /*always_quote=*/true};
  LogField serial{"serial", absl::StrCat(cert.serial)};
  LogField ca{"ca", std::string(cert.ca_fingerprint)};
  if (event.accepted) {
    Emit(logger, true, LogField{"result", "accepted"}, std::move(method), std::move(user),
         std::move(source), std::move(port), std::move(transport), std::move(key),
         std::move(key_type), std::move(cert_id), std::move(serial), std::move(ca));
  } else {
    Emit(logger, false, LogField{"result", "rejected"}, LogField{"reason", std::string(event.reason)},
         std::move(method), std::move(user), std::move(source), std::move(port),
         std::move(transport), std::move(key), std::move(key_type), std::move(cert_id),
         std::move(serial), std::move(ca));
  }
}

}  // namespace

std::string EscapeCertificateKeyId(std::string_view key_id) {
  std::string out;
  out.reserve(key_id.size());
  for (char c : key_id) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte > 0x7e || c == '=' || c == '"' || c == '\\' || c == '%') {
      absl::StrAppendFormat(&out, "%%%02X", byte);
    } else {
      out += c;
    }
  }
  return out;
}

void LogAuthEvent(Logger& logger, const AuthEvent& event) {
  const LogLevel level = event.accepted ? LogLevel::kInfo : LogLevel::kWarning;
  if (!logger.Enabled(level)) return;
  LogField method{"method", std::string(event.method)};
  // Client-chosen before authentication: cut to sshd's 100 characters.
  LogField user{"user", TruncateForLog(event.user, kMaxLoggedUserName)};
  LogField source{"src", std::string(event.source_ip)};
  LogField port{"port", absl::StrCat(event.source_port)};
  LogField transport{"transport", std::string(event.transport)};
  if (event.certificate != nullptr) {
    EmitCertificate(logger, event, std::move(method), std::move(user), std::move(source),
                    std::move(port), std::move(transport));
    return;
  }
  if (event.accepted) {
    EmitWithKey(logger, event, LogField{"result", "accepted"}, std::move(method), std::move(user),
                std::move(source), std::move(port), std::move(transport));
  } else {
    EmitWithKey(logger, event, LogField{"result", "rejected"},
                LogField{"reason", std::string(event.reason)}, std::move(method), std::move(user),
                std::move(source), std::move(port), std::move(transport));
  }
}

}  // namespace alknet::auth
