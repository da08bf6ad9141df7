// OpenSSL's error queue and SSL_get_error codes turned into text and absl::Status, in one place
// for every TLS piece (server context, server transport, client transport).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace alknet {

// Drains OpenSSL's thread-local error queue into "error:...; error:..." ("unknown OpenSSL
// error" when it is empty).
std::string OpenSslErrorText();

// `what` + ": " + the drained error queue, with `code`.
absl::Status OpenSslStatus(absl::StatusCode code, std::string_view what);

// The reason behind an SSL_get_error() result: the last queued error, or errno for
// SSL_ERROR_SYSCALL ("connection closed" when errno is 0). Clears the queue.
std::string SslErrorText(int ssl_error);

// The same reason in words only, for messages people read: "wrong version number",
// "tlsv1 alert internal error", "connection closed", an errno text. Clears the queue.
std::string SslFailureReason(int ssl_error);

}  // namespace alknet
