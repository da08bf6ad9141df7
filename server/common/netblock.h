// IP addresses as netblock keys (IPv4 /N, IPv6 /M) and CIDR lists: the parser and matcher
// behind per-source penalties (server/engine/source_penalties.h) and their exempt list.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace alknet {

// An IP address; an IPv4-mapped IPv6 address is its IPv4 address. Bytes in network order,
// IPv4 in bytes[0..3].
struct IpAddress {
  bool v6 = false;
  uint8_t bytes[16] = {};
};

// A numeric IPv4 or IPv6 literal (no brackets, no zone), nothing else.
absl::StatusOr<IpAddress> ParseIpAddress(std::string_view text);

// The netblock containing an address: family, prefix length and the masked address.
struct Netblock {
  bool v6 = false;
  int bits = 0;
  uint64_t hi = 0;  // IPv4: the address in the low 32 bits of hi
  uint64_t lo = 0;

  bool operator==(const Netblock& o) const {
    return v6 == o.v6 && bits == o.bits && hi == o.hi && lo == o.lo;
  }
  template <typename H>
  friend H AbslHashValue(H h, const Netblock& n) {
    return H::combine(std::move(h), n.v6, n.bits, n.hi, n.lo);
  }
  bool Contains(const IpAddress& ip) const;
  IpAddress base() const;        // the first address of the block
  std::string ToString() const;  // "192.0.2.7/32", "2001:db8::/64"
};

// `ip` masked to `v4_bits` (IPv4) or `v6_bits` (IPv6).
Netblock NetblockOf(const IpAddress& ip, int v4_bits, int v6_bits);

// "ADDRESS" (a host) or "ADDRESS/BITS" (0..32 for IPv4, 0..128 for IPv6). Host bits below
// the prefix must be zero ("10.0.0.1/8" is refused: it is almost always a typo).
absl::StatusOr<Netblock> ParseCidr(std::string_view text);

}  // namespace alknet
