// The embedded default configuration (agent/default_config.yaml, compiled in).
#pragma once

#include <string_view>

namespace alknet::agent {

std::string_view DefaultConfigYaml();

}  // namespace alknet::agent
