// libFuzzer entry: the SOCKS5 server state machine, the outbound proxy reply parsers and the
// SSH open-failure mapping must never crash, read out of bounds or consume what they were not
// given. The first byte picks credentials and the chunk size, like a socket splitting input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/client/proxy_handshake.h"
#include "server/client/socks5.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  alknet::socks5::Credentials credentials{"user", "pass"};
  alknet::socks5::ServerHandshake handshake((control & 1) ? &credentials : nullptr);
  size_t chunk = (control >> 1) == 0 ? input.size() : (control >> 1);
  std::string buffer;
  size_t at = 0;
  while (at < input.size()) {
    size_t take = std::min(chunk, input.size() - at);
    buffer.append(input.substr(at, take));
    at += take;
    std::string_view view = buffer;
    size_t before = view.size();
    alknet::socks5::ServerHandshake::Step step = handshake.Feed(view);
    if (view.size() > before) __builtin_trap();
    if (step.reply.size() > 64) __builtin_trap();  // replies are a few bytes
    buffer.erase(0, before - view.size());
    if (step.status != alknet::socks5::ServerHandshake::Status::kNeedMore) break;
    if (buffer.size() > alknet::socks5::kMaxHandshakeMessage + chunk) __builtin_trap();
  }
  for (auto parse : {alknet::proxy::ParseSocks5MethodReply, alknet::proxy::ParseSocks5ConnectReply,
                     alknet::proxy::ParseHttpConnectReply}) {
    alknet::proxy::Parsed parsed = parse(input);
    if (parsed.complete && parsed.length > input.size()) __builtin_trap();
  }
  (void)alknet::socks5::ReplyForOpenFailure(input);
  return 0;
}
