// Key fingerprints and base64 coding in OpenSSH's forms.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace alknet::auth {

// "SHA256:" + unpadded base64 of SHA-256(blob), exactly as `ssh-keygen -l` prints.
std::string Sha256Fingerprint(std::string_view blob);

std::string Base64Encode(std::string_view data, bool pad = true);
// Strict decode: rejects characters outside the alphabet and bad padding.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace alknet::auth
