// Bridges std::string_view to Debian's Abseil, which is built with its own absl::string_view
// (ABSL_OPTION_USE_STD_STRING_VIEW 0): our interfaces use std::string_view, absl calls get Sv().
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace alknet {

inline absl::string_view Sv(std::string_view text) { return {text.data(), text.size()}; }
inline std::string_view StdSv(absl::string_view text) { return {text.data(), text.size()}; }

}  // namespace alknet
