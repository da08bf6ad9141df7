// The SSH algorithm lists (KEX, ciphers, MACs, host keys): defaults, known names, sshd-style edits.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace alknet::config {

enum class AlgorithmKind { kKex, kCiphers, kMacs, kHostKeys };

// The lists the agent offers (server) and proposes (client). Defaults: curve25519 KEX only,
// AEAD and CTR ciphers, ETM MACs only, Ed25519 and RSA-SHA2 host keys (no SHA-1, no NIST curves).
struct SshAlgorithms {
  std::vector<std::string> kex;
  std::vector<std::string> ciphers;
  std::vector<std::string> macs;
  std::vector<std::string> host_key_algorithms;
  SshAlgorithms();
  bool operator==(const SshAlgorithms&) const = default;
};

const std::vector<std::string>& DefaultAlgorithms(AlgorithmKind kind);
// Every name of this kind that libssh 0.10 implements (the names a config may use).
const std::vector<std::string>& KnownAlgorithms(AlgorithmKind kind);
std::string_view AlgorithmKindName(AlgorithmKind kind);  // "KEX algorithm", "cipher", ...

// Applies one sshd-style value to `list`: "a,b,c" replaces it, "+a,b" appends the names not yet
// present, "-a,b" removes them, "^a,b" moves/puts them first. Unknown names, empty elements,
// names listed twice and an empty result are errors; `list` is unchanged on error.
absl::Status ApplyAlgorithmSpec(AlgorithmKind kind, std::string_view spec,
                                std::vector<std::string>& list);

// "a,b,c": the form libssh's options take and the config prints.
std::string JoinAlgorithms(const std::vector<std::string>& list);

}  // namespace alknet::config
