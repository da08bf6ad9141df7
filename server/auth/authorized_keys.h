// Parses OpenSSH authorized_keys text (sshd(8) "AUTHORIZED_KEYS FILE FORMAT") into key entries.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace alknet::auth {

// One permitopen="host:port" / permitlisten="[host:]port" entry. host "*" and port 0 with
// any_port mean wildcards, as in sshd.
struct HostPortPattern {
  std::string host;      // literal host or "*"; IPv6 without brackets
  uint16_t port = 0;
  bool any_port = false; // port was "*"
  bool operator==(const HostPortPattern&) const = default;
};

// The options that precede a key. Defaults are sshd's (everything allowed) unless `restrict`.
struct KeyOptions {
  std::vector<std::string> from;               // from="pattern-list" split on ','
  std::vector<HostPortPattern> permit_open;    // empty = any destination
  std::vector<HostPortPattern> permit_listen;  // empty = policy default
  std::optional<absl::Time> expiry;            // expiry-time="YYYYMMDD[HHMM[SS]][Z]"
  std::optional<std::string> command;          // command="..." (we never run commands)
  std::vector<std::string> principals;         // principals="a,b" (cert-authority lines)
  bool cert_authority = false;
  bool restrict = false;
  bool port_forwarding = true;    // no-port-forwarding / restrict turn it off; port-forwarding on
  bool pty = true;
  bool agent_forwarding = true;
  bool x11_forwarding = true;
  bool user_rc = true;
  bool operator==(const KeyOptions&) const = default;
};

struct AuthorizedKey {
  std::string key_type;     // "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", ...
  std::string blob;         // decoded key blob (binary)
  std::string comment;
  std::string fingerprint;  // "SHA256:<base64 without padding>", as ssh-keygen -l prints
  KeyOptions options;
  std::string source;       // "file:line"
  // Set by the admin API (never by a file): the key may open the reserved "alknet-admin"
  // destination, i.e. reach the admin API over SSH.
  bool admin_role = false;
};

struct ParseProblem {
  std::string source;   // "file:line"
  std::string message;  // what is wrong with the line
};

struct ParsedKeys {
  std::vector<AuthorizedKey> keys;
  std::vector<ParseProblem> problems;  // bad lines: reported and skipped, never fatal
};

// Parses one non-empty, non-comment line. The key blob is checked (type inside the blob
// matches the type field, lengths consistent, RSA >= 1024 bits as sshd), options validated.
absl::StatusOr<AuthorizedKey> ParseAuthorizedKeyLine(std::string_view line);

// Parses a whole file's text; `file_name` goes into ParseProblem/AuthorizedKey sources.
ParsedKeys ParseAuthorizedKeys(std::string_view text, std::string_view file_name);

// Reads and parses a file. A missing file is an empty set, not an error; unreadable is an error.
absl::StatusOr<ParsedKeys> LoadAuthorizedKeysFile(const std::string& path);

// Checks a plain (not certificate) public key blob as a line's key is checked: supported type,
// consistent lengths, RSA size limits, ECDSA point on its curve, no trailing bytes.
absl::Status ValidatePublicKeyBlob(std::string_view blob);

}  // namespace alknet::auth
