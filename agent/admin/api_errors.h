// How the admin API words a bad field: "field: message", with user text shown escaped and cut.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace alknet::admin {

// INVALID_ARGUMENT "field: message".
absl::Status FieldError(std::string_view field, std::string_view message);
// User-supplied text for a message: C-escaped, at most 80 characters then "...".
std::string Shown(std::string_view text);

}  // namespace alknet::admin
