// The one place libssh's int return codes and error strings become absl::Status values.
#include "server/ssh/libssh_status.h"
#include "server/common/strings.h"

#include "absl/strings/str_cat.h"

namespace alknet {

absl::Status SshStatus(int rc, void* handle, std::string_view what) {
  if (rc == SSH_OK) return absl::OkStatus();
  std::string detail = handle != nullptr ? ssh_get_error(handle) : "";
  if (detail.empty()) detail = "libssh error";
  switch (rc) {
    case SSH_AGAIN: return absl::UnavailableError(absl::StrCat(Sv(what), ": would block"));
    case SSH_EOF: return absl::AbortedError(absl::StrCat(Sv(what), ": end of stream"));
    default: return absl::InternalError(absl::StrCat(Sv(what), ": ", detail));
  }
}

}  // namespace alknet
