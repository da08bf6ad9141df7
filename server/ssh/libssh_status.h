// The one place libssh's int return codes and error strings become absl::Status values.
#pragma once

#include <string_view>

#include <libssh/libssh.h>
#include <libssh/server.h>

#include "absl/status/status.h"

namespace alknet {

// `rc` is a libssh return code (SSH_OK, SSH_ERROR, SSH_AGAIN, SSH_EOF); `handle` is the session,
// bind or channel whose ssh_get_error() explains it (may be null).
absl::Status SshStatus(int rc, void* handle, std::string_view what);

}  // namespace alknet
