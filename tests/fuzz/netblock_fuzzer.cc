// libFuzzer entry: the CIDR/address parser of per-source penalties (penalties.exempt, the
// admin API's clear filter) and the penalty table fed by it. Properties: never crash; a parsed
// CIDR prints to text that parses back to the same netblock and contains its own base address;
// a parsed address is inside its own /32 or /128 and every netblock of it; the table driven by
// random events and clock steps never holds more than max_sources entries.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/common/netblock.h"
#include "server/engine/source_penalties.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alknet;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Netblock> block = ParseCidr(text);
  if (block.ok()) {
    absl::StatusOr<Netblock> again = ParseCidr(block->ToString());
    if (!again.ok() || !(*again == *block)) __builtin_trap();
    if (!block->Contains(block->base())) __builtin_trap();
  }
  absl::StatusOr<IpAddress> ip = ParseIpAddress(text);
  if (ip.ok()) {
    for (int bits : {8, 16, 24, 32, 48, 64, 128}) {
      if (!NetblockOf(*ip, bits > 32 ? 32 : bits, bits).Contains(*ip)) __builtin_trap();
    }
  }
  // The table: each byte is an event on one of 8 sources, or a clock step.
  absl::Time now = absl::FromUnixSeconds(1000);
  SourcePenaltyOptions options;
  options.max_sources = 3;
  options.overflow = size % 2 ? PenaltyOverflow::kDenyAll : PenaltyOverflow::kPermissive;
  SourcePenalties table(options, [&now] { return now; });
  for (size_t i = 0; i < size && i < 256; ++i) {
    uint8_t b = data[i];
    std::string source = (b & 0x40) ? "2001:db8:" + std::to_string(b & 7) + "::1"
                                    : "192.0.2." + std::to_string(b & 7);
    switch (b >> 6) {
      case 0: table.Penalise(source, static_cast<PenaltyEvent>((b >> 3) & 3)); break;
      case 1: table.Check(source); break;
      case 2: now += absl::Seconds(b & 0x3f); break;
      default: table.Penalise(source, PenaltyEvent::kGraceExceeded); break;
    }
    if (table.size() > 3) __builtin_trap();
  }
  return 0;
}
