// libFuzzer entry: state.store ("file", etcd[s]://host:port,.../prefix). Properties: never crash;
// a parsed URL prints to text that parses back to the same URL, with at most 16 endpoints, every
// port non-zero and a prefix that starts with '/' and does not end with one.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/config/state_store_url.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<alknet::config::StateStoreUrl> parsed = alknet::config::ParseStateStoreUrl(text);
  if (!parsed.ok()) return 0;
  if (parsed->kind == alknet::config::StateStoreUrl::Kind::kEtcd) {
    if (parsed->endpoints.empty() || parsed->endpoints.size() > 16) __builtin_trap();
    for (const auto& endpoint : parsed->endpoints) {
      if (endpoint.port == 0) __builtin_trap();
    }
    if (parsed->prefix.size() < 2 || parsed->prefix.front() != '/' || parsed->prefix.back() == '/') {
      __builtin_trap();
    }
  }
  absl::StatusOr<alknet::config::StateStoreUrl> again =
      alknet::config::ParseStateStoreUrl(parsed->ToString());
  if (!again.ok() || !(*again == *parsed)) __builtin_trap();
  return 0;
}
