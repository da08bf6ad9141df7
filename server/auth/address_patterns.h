// Matches source addresses against from= pattern lists and destinations against permitopen=.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "server/auth/authorized_keys.h"

namespace alknet::auth {

// sshd semantics for from="...": entries are IP wildcards ("192.168.*", "10.0.0.?"), CIDRs
// ("10.0.0.0/8", "2001:db8::/32") or host-name wildcards (matched against the numeric address
// only: we never do reverse DNS, like sshd's default UseDNS no). A "!" prefix negates: a
// matching negated entry denies outright. An empty list allows everything.
bool SourceAllowed(const std::vector<std::string>& patterns, std::string_view ip);

// True when `text` is a syntactically valid from= entry (used by the parser to reject lines).
bool IsValidSourcePattern(std::string_view entry);

// Like IsValidSourcePattern, but says what is wrong (for the parser's error messages).
absl::Status CheckSourcePattern(std::string_view entry);

// sshd semantics for permitopen: host compared case-insensitively as a literal ("*" any),
// port equal or any_port. An empty list allows everything.
bool DestinationAllowed(const std::vector<HostPortPattern>& patterns, std::string_view host,
                        uint16_t port);

// Shell-style wildcard match ('*' and '?'), case-insensitive.
bool WildcardMatch(std::string_view pattern, std::string_view text);

}  // namespace alknet::auth
