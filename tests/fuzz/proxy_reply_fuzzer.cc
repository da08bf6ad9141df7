// libFuzzer entry: the client's outbound proxy reply parsers (SOCKS5 method and CONNECT replies,
// HTTP CONNECT reply). Properties: never read past the input, a complete reply's length fits
// the input, and the verdict is prefix-stable: once a prefix is complete, every longer input
// gives the same status, and for a success the same length (a socket may deliver the bytes in
// any split; after a refusal the connection is closed, so its length does not matter).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/client/proxy_handshake.h"

namespace {

using Parser = alknet::proxy::Parsed (*)(std::string_view);

void Check(Parser parse, std::string_view input, size_t split) {
  const alknet::proxy::Parsed full = parse(input);
  if (full.complete && full.length > input.size()) __builtin_trap();
  if (full.complete && full.length == 0) __builtin_trap();
  // Parsing the reply alone (what the handshake consumes) gives the same verdict.
  if (full.complete && full.status.ok()) {
    const alknet::proxy::Parsed alone = parse(input.substr(0, full.length));
    if (!alone.complete || alone.length != full.length || !alone.status.ok()) __builtin_trap();
  }
  const alknet::proxy::Parsed prefix = parse(input.substr(0, split));
  if (prefix.complete) {
    if (!full.complete || full.status.code() != prefix.status.code() ||
        (full.status.ok() && full.length != prefix.length)) {
      __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte splits the rest, like a socket delivering a partial reply.
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t split = input.empty() ? 0 : data[0] % (input.size() + 1);
  Check(alknet::proxy::ParseSocks5MethodReply, input, split);
  Check(alknet::proxy::ParseSocks5ConnectReply, input, split);
  Check(alknet::proxy::ParseHttpConnectReply, input, split);
  return 0;
}
