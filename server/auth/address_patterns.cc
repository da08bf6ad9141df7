// Matches source addresses against from= pattern lists and destinations against permitopen=.
//
// from= entries are only ever matched against the client's numeric address: CIDR entries and
// plain addresses compare numerically, anything else is a case-insensitive wildcard match
// against the canonical text form of the address (inet_ntop, v4-mapped IPv6 shown as IPv4).
// Host-name patterns such as "*.example.com" are accepted by the parser, as sshd accepts them,
// but since we never do reverse DNS they can never match (a negated one never denies).
#include "server/auth/address_patterns.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/strings.h"

namespace alknet::auth {
namespace {

constexpr size_t kMaxPatternLength = 255;
// "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" is 45 characters.
constexpr size_t kMaxAddressTextLength = 45;

// A numeric IPv4 or IPv6 address in network byte order (IPv4 uses the first 4 bytes).
struct IpAddress {
  int family = AF_UNSPEC;
  std::array<uint8_t, 16> bytes{};

  size_t bit_count() const { return family == AF_INET ? 32 : 128; }
};

// Parses a numeric address; v4-mapped IPv6 ("::ffff:a.b.c.d") becomes the IPv4 address, as
// sshd does for the client address before matching.
std::optional<IpAddress> ParseIpAddress(std::string_view text) {
  if (text.empty() || text.size() > kMaxAddressTextLength) return std::nullopt;
  const std::string terminated(text);
  IpAddress address;
  if (inet_pton(AF_INET, terminated.c_str(), address.bytes.data()) == 1) {
    address.family = AF_INET;
    return address;
  }
  if (inet_pton(AF_INET6, terminated.c_str(), address.bytes.data()) != 1) return std::nullopt;
  address.family = AF_INET6;
  static constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0,    0,
                                                              0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(address.bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0) {
    IpAddress v4;
    v4.family = AF_INET;
    std::memcpy(v4.bytes.data(), address.bytes.data() + 12, 4);
    return v4;
  }
  return address;
}

std::string FormatIpAddress(const IpAddress& address) {
  std::array<char, INET6_ADDRSTRLEN> buffer{};
  if (inet_ntop(address.family, address.bytes.data(), buffer.data(), buffer.size()) == nullptr) {
    return "";
  }
  return buffer.data();
}

// True when the first `prefix_length` bits of both addresses (same family) are equal.
bool PrefixEqual(const IpAddress& a, const IpAddress& b, size_t prefix_length) {
  if (a.family != b.family || prefix_length > a.bit_count()) return false;
  const size_t whole_bytes = prefix_length / 8;
  if (std::memcmp(a.bytes.data(), b.bytes.data(), whole_bytes) != 0) return false;
  const size_t remaining_bits = prefix_length % 8;
  if (remaining_bits == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - remaining_bits));
  return (a.bytes[whole_bytes] & mask) == (b.bytes[whole_bytes] & mask);
}

// The address with every bit after `prefix_length` cleared.
IpAddress NetworkOf(const IpAddress& address, size_t prefix_length) {
  IpAddress network = address;
  for (size_t bit = prefix_length; bit < address.bit_count(); ++bit) {
    network.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  return network;
}

struct Cidr {
  IpAddress network;
  size_t prefix_length = 0;
};

// Parses "address/prefix" strictly: numeric address, decimal prefix within the family's width,
// no host bits set (sshd: "inconsistent mask length").
absl::StatusOr<Cidr> ParseCidr(std::string_view text) {
  const size_t slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  const std::string_view prefix_text =
      slash == std::string_view::npos ? std::string_view() : text.substr(slash + 1);
  std::optional<IpAddress> address;
  // A v4-mapped network would silently turn into IPv4 here; CIDRs take the address as written.
  if (address_text.find(':') != std::string_view::npos) {
    IpAddress v6;
    const std::string terminated(address_text);
    if (address_text.size() <= kMaxAddressTextLength &&
        inet_pton(AF_INET6, terminated.c_str(), v6.bytes.data()) == 1) {
      v6.family = AF_INET6;
      address = v6;
    }
  } else {
    address = ParseIpAddress(address_text);
  }
  if (!address.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", absl::CHexEscape(Sv(address_text)), "' is not an IPv4 or IPv6 address"));
  }
  if (prefix_text.empty() || prefix_text.size() > 3 ||
      !std::all_of(prefix_text.begin(), prefix_text.end(), absl::ascii_isdigit)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid prefix length '", absl::CHexEscape(Sv(prefix_text)), "'"));
  }
  size_t prefix_length = 0;
  for (char digit : prefix_text) prefix_length = prefix_length * 10 + (digit - '0');
  if (prefix_length > address->bit_count()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("prefix length %d is too long for %s (at most %d)", prefix_length,
                        address->family == AF_INET ? "IPv4" : "IPv6", address->bit_count()));
  }
  const IpAddress network = NetworkOf(*address, prefix_length);
  if (network.bytes != address->bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("host bits are set (inconsistent mask length; the network is '",
                     FormatIpAddress(network), "/", prefix_length, "')"));
  }
  return Cidr{*address, prefix_length};
}

bool IsHostPatternChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
         c == ':' || c == '*' || c == '?';
}

// Whether one (non-negated) from= entry matches the client address.
bool EntryMatches(std::string_view entry, const IpAddress& client, const std::string& client_text) {
  if (entry.find('/') != std::string_view::npos) {
    absl::StatusOr<Cidr> cidr = ParseCidr(entry);
    // A malformed CIDR (only possible in hand-built lists) matches nothing.
    if (!cidr.ok()) return false;
    return PrefixEqual(cidr->network, client, cidr->prefix_length);
  }
  if (std::optional<IpAddress> literal = ParseIpAddress(entry); literal.has_value()) {
    return literal->family == client.family && literal->bytes == client.bytes;
  }
  return WildcardMatch(entry, client_text);
}

}  // namespace

bool WildcardMatch(std::string_view pattern, std::string_view text) {
  size_t p = 0;
  size_t t = 0;
  size_t star = std::string_view::npos;  // position of the last '*' seen in the pattern
  size_t star_text = 0;                  // text position that '*' currently extends to
  while (t < text.size()) {
    if (p < pattern.size() &&
        (pattern[p] == '?' ||
         (pattern[p] != '*' && absl::ascii_tolower(static_cast<unsigned char>(pattern[p])) ==
                                   absl::ascii_tolower(static_cast<unsigned char>(text[t]))))) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_text = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_text;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

absl::Status CheckSourcePattern(std::string_view entry) {
  std::string_view body = entry;
  if (!body.empty() && body.front() == '!') body.remove_prefix(1);
  if (body.empty()) return absl::InvalidArgumentError("empty pattern");
  if (body.size() > kMaxPatternLength) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "pattern is too long (%d characters, at most %d)", body.size(), kMaxPatternLength));
  }
  if (body.find('/') != std::string_view::npos) return ParseCidr(body).status();
  for (char c : body) {
    if (!IsHostPatternChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid character '", absl::CHexEscape(absl::string_view(&c, 1)), "'"));
    }
  }
  return absl::OkStatus();
}

bool IsValidSourcePattern(std::string_view entry) { return CheckSourcePattern(entry).ok(); }

bool SourceAllowed(const std::vector<std::string>& patterns, std::string_view ip) {
  if (patterns.empty()) return true;
  // The address always comes from the socket; if it does not parse, fail closed.
  const std::optional<IpAddress> client = ParseIpAddress(ip);
  if (!client.has_value()) return false;
  const std::string client_text = FormatIpAddress(*client);
  bool positive_match = false;
  for (const std::string& pattern : patterns) {
    std::string_view entry = pattern;
    const bool negated = !entry.empty() && entry.front() == '!';
    if (negated) entry.remove_prefix(1);
    if (entry.empty() || !EntryMatches(entry, *client, client_text)) continue;
    if (negated) return false;
    positive_match = true;
  }
  return positive_match;
}

bool DestinationAllowed(const std::vector<HostPortPattern>& patterns, std::string_view host,
                        uint16_t port) {
  if (patterns.empty()) return true;
  for (const HostPortPattern& pattern : patterns) {
    const bool host_matches = pattern.host == "*" || absl::EqualsIgnoreCase(pattern.host, Sv(host));
    const bool port_matches = pattern.any_port || pattern.port == port;
    if (host_matches && port_matches) return true;
  }
  return false;
}

}  // namespace alknet::auth
