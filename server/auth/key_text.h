// authorized_keys lines rendered from parsed keys (the inverse of authorized_keys.h for what it
// keeps), and the RSA key size read from a key blob.
#pragma once

#include <string>
#include <string_view>

#include "server/auth/authorized_keys.h"

namespace alknet::auth {

// Bits of the RSA modulus in an "ssh-rsa" key blob (string type, mpint e, mpint n); 0 when the
// blob is truncated or the modulus is empty. The type string is not checked.
int RsaModulusBits(std::string_view blob);

// The options text of an authorized_keys line as written (everything before the key type, blanks
// around it stripped), "" if none. `key` is the line's parsed key: the key type followed by its
// blob's base64 marks where the options end.
std::string OptionsText(std::string_view line, const AuthorizedKey& key);

// A permitopen=/permitlisten= pattern as "host:port" ("[v6]:port", "*" for any port).
std::string RenderHostPort(const HostPortPattern& pattern);

// An option value in double quotes. Only '"' is escaped (\"): the one escape sshd's opt_dequote
// and ParseAuthorizedKeyLine know, where a backslash before anything else is itself. So every
// value they produce renders back to itself (escaping '\' too doubled it at each round).
std::string QuoteOptionValue(std::string_view value);

// The options of a parsed key in authorized_keys syntax, in a fixed order (restrict,
// cert-authority, from, permitopen, permitlisten, expiry-time in UTC, principals, command, the
// flags that differ from the default). Parsing the result gives the same KeyOptions.
std::string RenderOptions(const KeyOptions& options);

// "[options ]type base64[ comment]".
std::string KeyLine(std::string_view options, const AuthorizedKey& key);

}  // namespace alknet::auth
