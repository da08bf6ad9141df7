// ngtcp2 and GnuTLS int codes as absl::Status: the one place either library's codes are read.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace alknet::quic {

// `what` failed with ngtcp2's `code` (a negative NGTCP2_ERR_*): "what: <ngtcp2_strerror>".
absl::Status Ngtcp2Status(std::string_view what, int code);
// `what` failed with GnuTLS's `code` (a negative GNUTLS_E_*): "what: <gnutls_strerror>".
absl::Status GnutlsStatus(std::string_view what, int code);

}  // namespace alknet::quic
