// IP address and CIDR parsing, netblock masking and matching.
#include "server/common/netblock.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet {
namespace {

uint64_t Load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

uint64_t MaskOf(int bits) {  // the top `bits` (0..64) of a 64-bit word
  if (bits <= 0) return 0;
  if (bits >= 64) return ~uint64_t{0};
  return ~uint64_t{0} << (64 - bits);
}

Netblock Mask(const IpAddress& ip, int bits) {
  Netblock n;
  n.v6 = ip.v6;
  n.bits = bits;
  if (!ip.v6) {
    uint64_t v = (uint64_t{ip.bytes[0]} << 24) | (uint64_t{ip.bytes[1]} << 16) |
                 (uint64_t{ip.bytes[2]} << 8) | ip.bytes[3];
    n.hi = v & (MaskOf(32 + bits) & 0xffffffffu);
    return n;
  }
  n.hi = Load64(ip.bytes) & MaskOf(bits);
  n.lo = Load64(ip.bytes + 8) & MaskOf(bits - 64);
  return n;
}

}  // namespace

absl::StatusOr<IpAddress> ParseIpAddress(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) {
    return absl::InvalidArgumentError("not an IP address");
  }
  std::string copy(text);
  IpAddress ip;
  if (inet_pton(AF_INET, copy.c_str(), ip.bytes) == 1) return ip;
  uint8_t v6[16];
  if (inet_pton(AF_INET6, copy.c_str(), v6) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("'", copy, "' is not an IP address"));
  }
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6, kMapped, sizeof kMapped) == 0) {
    std::memcpy(ip.bytes, v6 + 12, 4);
    return ip;
  }
  ip.v6 = true;
  std::memcpy(ip.bytes, v6, 16);
  return ip;
}

Netblock NetblockOf(const IpAddress& ip, int v4_bits, int v6_bits) {
  return Mask(ip, ip.v6 ? v6_bits : v4_bits);
}

bool Netblock::Contains(const IpAddress& ip) const {
  if (ip.v6 != v6) return false;
  Netblock masked = Mask(ip, bits);
  return masked.hi == hi && masked.lo == lo;
}

IpAddress Netblock::base() const {
  IpAddress ip;
  ip.v6 = v6;
  if (!v6) {
    for (int i = 0; i < 4; ++i) ip.bytes[i] = static_cast<uint8_t>(hi >> (24 - 8 * i));
    return ip;
  }
  for (int i = 0; i < 8; ++i) {
    ip.bytes[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    ip.bytes[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
  return ip;
}

std::string Netblock::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  IpAddress ip = base();
  inet_ntop(v6 ? AF_INET6 : AF_INET, ip.bytes, text, sizeof text);
  return absl::StrCat(text, "/", bits);
}

absl::StatusOr<Netblock> ParseCidr(std::string_view text) {
  std::string_view address = text;
  std::string_view length;
  size_t slash = text.find('/');
  if (slash != std::string_view::npos) {
    address = text.substr(0, slash);
    length = text.substr(slash + 1);
  }
  absl::StatusOr<IpAddress> ip = ParseIpAddress(address);
  if (!ip.ok()) return ip.status();
  int max_bits = ip->v6 ? 128 : 32;
  int bits = max_bits;
  if (slash != std::string_view::npos) {
    bool digits = !length.empty() && length.size() <= 3;
    for (char c : length) digits = digits && c >= '0' && c <= '9';
    if (!digits || !absl::SimpleAtoi(Sv(length), &bits) || bits > max_bits) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", Sv(text), "': prefix length must be 0..", max_bits));
    }
  }
  Netblock block = Mask(*ip, bits);
  Netblock full = Mask(*ip, max_bits);
  if (full.hi != block.hi || full.lo != block.lo) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", Sv(text), "': address has bits set below the prefix (did you mean ",
                     block.ToString(), "?)"));
  }
  return block;
}

}  // namespace alknet
