// libFuzzer target: arbitrary bytes into ApplyYaml; accepted configs must round-trip via ToYaml.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/config/config.h"
#include "server/config/config_schema.h"
#include "server/config/config_yaml.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alknet::config;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  AgentConfig config;
  const AgentConfig before = config;
  absl::Status status = ApplyYaml(text, "fuzz.yaml", config);
  if (!status.ok()) {
    // Errors name the source and leave the config untouched.
    Check(status.message().substr(0, 9) == "fuzz.yaml");
    Check(config == before);
    return 0;
  }

  // Whatever was accepted prints as YAML that loads back to the same config, from any start.
  const std::string printed = ToYaml(config);
  AgentConfig reloaded;
  reloaded.workers = 3;
  reloaded.host_keys = {"/other"};
  absl::Status again = ApplyYaml(printed, "printed", reloaded);
  Check(again.ok());
  Check(reloaded == config);

  ResolveDefaults(config);
  (void)Validate(config);
  return 0;
}
