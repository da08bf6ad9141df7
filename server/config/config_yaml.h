// Loads AgentConfig from YAML text; every error carries file:line:column.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "server/config/config.h"

namespace alknet::config {

// Applies the YAML document on top of `config`. `source_name` is used in error messages
// ("agent.yaml:12:3: unknown key 'listn' under 'root'"). Unknown keys, wrong types and bad
// values are errors; on error `config` is left unchanged.
absl::Status ApplyYaml(std::string_view yaml_text, std::string_view source_name,
                       AgentConfig& config);

// Reads the file and applies it (error messages name the path).
absl::Status ApplyYamlFile(const std::string& path, AgentConfig& config);

}  // namespace alknet::config
