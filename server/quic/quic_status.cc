// ngtcp2 and GnuTLS error codes mapped to absl status codes.
#include "server/quic/quic_status.h"

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>

#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet::quic {

absl::Status Ngtcp2Status(std::string_view what, int code) {
  std::string message = absl::StrCat(Sv(what), ": ", ngtcp2_strerror(code));
  switch (code) {
    case 0: return absl::OkStatus();
    case NGTCP2_ERR_NOMEM: return absl::ResourceExhaustedError(message);
    case NGTCP2_ERR_INVALID_ARGUMENT: return absl::InvalidArgumentError(message);
    case NGTCP2_ERR_IDLE_CLOSE:
    case NGTCP2_ERR_HANDSHAKE_TIMEOUT: return absl::DeadlineExceededError(message);
    case NGTCP2_ERR_DRAINING:
    case NGTCP2_ERR_CLOSING:
    case NGTCP2_ERR_DROP_CONN: return absl::AbortedError(message);
    case NGTCP2_ERR_CRYPTO:
    case NGTCP2_ERR_DECRYPT: return absl::PermissionDeniedError(message);
    default:
      return ngtcp2_err_is_fatal(code) ? absl::InternalError(message)
                                       : absl::FailedPreconditionError(message);
  }
}

absl::Status GnutlsStatus(std::string_view what, int code) {
  if (code >= 0) return absl::OkStatus();
  std::string message = absl::StrCat(Sv(what), ": ", gnutls_strerror(code));
  switch (code) {
    case GNUTLS_E_FILE_ERROR: return absl::NotFoundError(message);
    case GNUTLS_E_MEMORY_ERROR: return absl::ResourceExhaustedError(message);
    case GNUTLS_E_NO_APPLICATION_PROTOCOL:
    case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
    case GNUTLS_E_CERTIFICATE_ERROR: return absl::PermissionDeniedError(message);
    default: return absl::InvalidArgumentError(message);
  }
}

}  // namespace alknet::quic
