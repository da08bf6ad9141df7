// libFuzzer entry: the HTTP request-head parser must never crash or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/http/http_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  alknet::http::ParseResult result = alknet::http::ParseRequestHead(input);
  if (result.state == alknet::http::ParseState::kComplete && result.head.head_size > size) {
    __builtin_trap();
  }
  return 0;
}
