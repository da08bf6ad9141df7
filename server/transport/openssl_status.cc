// OpenSSL errors as text and absl::Status.
#include "server/transport/openssl_status.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet {

std::string OpenSslErrorText() {
  std::string text;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "unknown OpenSSL error" : text;
}

absl::Status OpenSslStatus(absl::StatusCode code, std::string_view what) {
  return absl::Status(code, absl::StrCat(Sv(what), ": ", OpenSslErrorText()));
}

std::string SslErrorText(int ssl_error) {
  int saved_errno = errno;
  unsigned long code = ERR_peek_last_error();
  std::string detail;
  if (code != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    detail = buffer;
  } else if (ssl_error == SSL_ERROR_SYSCALL) {
    detail = saved_errno != 0 ? std::strerror(saved_errno) : "connection closed";
  }
  ERR_clear_error();
  return absl::StrCat("ssl error ", ssl_error, detail.empty() ? "" : ": ", detail);
}

std::string SslFailureReason(int ssl_error) {
  int saved_errno = errno;
  unsigned long code = ERR_peek_last_error();
  std::string reason;
  if (code != 0) {
    const char* text = ERR_reason_error_string(code);
    if (text != nullptr) {
      reason = text;
    } else {
      char buffer[256];
      ERR_error_string_n(code, buffer, sizeof(buffer));
      reason = buffer;
    }
  } else if (ssl_error == SSL_ERROR_SYSCALL && saved_errno != 0) {
    reason = std::strerror(saved_errno);
  } else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
    reason = "connection closed";
  } else {
    reason = absl::StrCat("ssl error ", ssl_error);
  }
  ERR_clear_error();
  return reason;
}

}  // namespace alknet
