// The policy's sections (limits, penalties, rate_limits, forwarding) in the admin API and the
// state file: conversion to and from the configuration, and the config-file merge.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "alknet/admin/v1/policy.pb.h"
#include "alknet/state/v1/state.pb.h"
#include "server/common/log.h"
#include "server/config/config.h"

namespace alknet::admin {

// The sections whose messages mirror a YAML section field for field (same names; a YAML list is
// one comma-separated string): "limits", "penalties", "rate_limits". They convert through the
// configuration's field table, so value syntax and error messages are the config file's.
const std::vector<std::string>& FlatPolicySections();
google::protobuf::Message& FlatSection(v1::PolicySpec& policy, std::string_view section);
const google::protobuf::Message& FlatSection(const v1::PolicySpec& policy, std::string_view section);

// A field of a flat section as text ("30s", "12", "true"); nullopt when unset.
std::optional<std::string> FieldText(const google::protobuf::Message& message,
                                     const google::protobuf::FieldDescriptor* field);
// Sets a field from text: false when an int32 field's text is not an integer.
bool SetFieldText(google::protobuf::Message& message, const google::protobuf::FieldDescriptor* field,
                  std::string_view text);

// The whole policy in force, every field set.
v1::PolicySpec PolicyToProto(const config::AgentConfig& config);
// Applies the fields set in `policy` to `config`; errors name the YAML field
// ("penalties.min: '1y' is not a duration ..."). Does not validate across fields.
absl::Status ApplyPolicyProto(const v1::PolicySpec& policy, config::AgentConfig& config);

// The sections in force of a stored policy (limits, penalties, rate_limits, forwarding; not
// the baselines) as an API policy, and an API policy's sections stored as the ones in force.
v1::PolicySpec InForcePolicy(const state::v1::StoredPolicy& stored);
void StoreInForcePolicy(const v1::PolicySpec& policy, state::v1::StoredPolicy& stored);

// Copies the policy's sections (limits, penalties, rate_limits, forwarding) of `from` into `to`.
void CopyPolicySections(const config::AgentConfig& from, config::AgentConfig& to);

// Merges the config file's policy into the stored one: a field the file changed since it was
// last read (or new to the store) takes the file's value, otherwise the stored (API) value
// stays; `policy`'s baselines record the file's values. A stored section that no longer
// validates with the file's config falls back to the file's (logged). Returns the config in
// force: `file_config` with the merged policy.
config::AgentConfig MergeConfigPolicy(const config::AgentConfig& file_config,
                                      state::v1::StoredPolicy& policy, Logger& logger);

}  // namespace alknet::admin
