// Turns errno values from system calls into absl::Status values.
#include "server/common/errno_status.h"
#include "server/common/strings.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace alknet {

absl::Status ErrnoStatus(std::string_view what, int err) {
  std::string message = absl::StrCat(Sv(what), ": ", std::strerror(err));
  switch (err) {
    case ENOENT: return absl::NotFoundError(message);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(message);
    case EEXIST:
    case EADDRINUSE: return absl::AlreadyExistsError(message);
    case EINVAL: return absl::InvalidArgumentError(message);
    case EMFILE:
    case ENFILE:
    case ENOMEM: return absl::ResourceExhaustedError(message);
    case ETIMEDOUT: return absl::DeadlineExceededError(message);
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH: return absl::UnavailableError(message);
    default: return absl::InternalError(message);
  }
}

}  // namespace alknet
