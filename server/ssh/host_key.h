// Loads the server's host keys and creates a missing one as Ed25519 with mode 0600.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace alknet {

struct HostKeyInfo {
  std::string path;
  std::string type;         // "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"
  std::string fingerprint;  // "SHA256:..."
  bool generated = false;   // created by this call
};

// For each path: load it, or generate an Ed25519 key there if the file does not exist (and write
// "<path>.pub"). A key readable by group or others is refused, as sshd refuses it.
absl::StatusOr<std::vector<HostKeyInfo>> LoadOrCreateHostKeys(const std::vector<std::string>& paths);

}  // namespace alknet
