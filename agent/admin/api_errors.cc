// How the admin API words a bad field.
#include "agent/admin/api_errors.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet::admin {

absl::Status FieldError(std::string_view field, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(field), ": ", Sv(message)));
}

std::string Shown(std::string_view text) {
  constexpr size_t kMax = 80;
  if (text.size() > kMax) return absl::StrCat(absl::CHexEscape(Sv(text.substr(0, kMax))), "...");
  return absl::CHexEscape(Sv(text));
}

}  // namespace alknet::admin
