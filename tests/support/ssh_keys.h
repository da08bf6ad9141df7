// Keys made by the real ssh-keygen, and the argv prefix for the stock OpenSSH client.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"

namespace alknet::testing {

struct TestKey {
  std::string private_path;
  std::string public_line;   // "ssh-ed25519 AAAA... comment"
  std::string fingerprint;   // "SHA256:..." as ssh-keygen -l prints it
};

// ssh-keygen -t <type> in `dir`; type "ed25519", "rsa", "ecdsa".
TestKey MakeKey(const TempDir& dir, const std::string& name, const std::string& type = "ed25519");

// ssh with host-key checking off (the agent's host key is fresh per test), batch mode, no
// config files, our key only: {"ssh", "-F", "/dev/null", ..., "-p", port, "-i", key}.
std::vector<std::string> SshArgs(uint16_t port, const TestKey& key);

}  // namespace alknet::testing
