// The policy's rate_limits section in the admin API and the state file: conversion between
// config::RateLimits and v1::RateLimits, and the config-file merge (last writer wins).
#pragma once

#include "absl/status/status.h"
#include "alknet/admin/v1/policy.pb.h"
#include "alknet/state/v1/state.pb.h"
#include "server/common/log.h"
#include "server/config/config.h"

namespace alknet::admin {


// Every field set, in the configuration's syntax.
v1::RateLimits RateLimitsToProto(const config::RateLimits& limits);
// Sets the fields present through the configuration's field table: errors name the YAML field
// ("rate_limits.bandwidth_per_key: 'lots' is not a byte size ...").
absl::Status ApplyRateLimitsProto(const v1::RateLimits& limits, config::AgentConfig& config);
// Merges `file_config`'s rate_limits into `policy` as the limits section is merged (a field the
// config file changed since it was last read wins; otherwise the stored one); returns the rate
// limits in force. A stored set that no longer validates falls back to the file's.
config::RateLimits MergeConfigRateLimits(const config::AgentConfig& file_config,
                                         state::v1::StoredPolicy& policy, Logger& logger);

}  // namespace alknet::admin
