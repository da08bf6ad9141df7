// The field table of AgentConfig: each field's YAML path, flag name, kind and setter.
// The YAML loader and the flag parser both go through this table, so they cannot drift apart.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "server/config/config.h"

namespace alknet::config {

enum class FieldKind { kScalar, kList };

struct FieldSpec {
  std::string_view yaml_path;  // dotted: "limits.login_grace_time"
  std::string_view flag;       // "--login-grace-time"
  FieldKind kind;
  std::string_view help;       // one line, with the default
};

const std::vector<FieldSpec>& Fields();
const FieldSpec* FindFieldByYamlPath(std::string_view path);
const FieldSpec* FindFieldByFlag(std::string_view flag);

// Sets one scalar field, or appends one element to a list field, from its text form.
// Errors name the field and the bad value, never crash.
absl::Status SetField(AgentConfig& config, const FieldSpec& field, std::string_view value);

// A field's value in its text form (one element per list entry; one for a scalar), the form
// SetField reads back.
std::vector<std::string> FieldValues(const AgentConfig& config, const FieldSpec& field);

// Clears a list field (a YAML list or the first repeated flag replaces the earlier source).
void ClearListField(AgentConfig& config, const FieldSpec& field);

// Renders the whole config as YAML in the same schema (for --print-config and docs).
std::string ToYaml(const AgentConfig& config);

}  // namespace alknet::config
