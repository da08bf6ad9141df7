// Decoded key blobs of OpenSSH public key and certificate lines, for the auth unit tests.
#pragma once

#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "server/auth/fingerprint.h"
#include "tests/support/ssh_keys.h"

namespace alknet::auth {

// The blob of a "type base64 comment" line (a .pub or -cert.pub file's contents).
inline std::string LineBlob(const std::string& line) {
  const size_t start = line.find(' ') + 1;
  const size_t end = line.find_first_of(" \n", start);
  std::optional<std::string> blob = Base64Decode(line.substr(start, end - start));
  EXPECT_TRUE(blob.has_value()) << line;
  return blob.value_or("");
}

inline std::string KeyBlob(const ::alknet::testing::TestKey& key) { return LineBlob(key.public_line); }

}  // namespace alknet::auth
