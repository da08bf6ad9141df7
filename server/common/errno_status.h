// Turns errno values from system calls into absl::Status values.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace alknet {

// Status for a failed system call: `what` names the operation, `err` is errno.
absl::Status ErrnoStatus(std::string_view what, int err);

}  // namespace alknet
