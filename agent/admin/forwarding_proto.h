// The forwarding policy between its admin API message (alknet.admin.v1.ForwardingPolicy) and
// fwd::ForwardingPolicy; shared by the agent's Policy service and alknet-admin.
#pragma once

#include "absl/status/status.h"
#include "alknet/admin/v1/policy.pb.h"
#include "server/forward/forwarding_rules.h"

namespace alknet::admin {

// Applies the fields that are set onto `policy` (rules, when set, replace the list). Errors
// are INVALID_ARGUMENT naming the field: "forwarding.rules[2].cidrs[0]: ...".
absl::Status ApplyForwardingProto(const v1::ForwardingPolicy& in, fwd::ForwardingPolicy& policy);
// Every field set (self rules are not part of it).
v1::ForwardingPolicy ForwardingToProto(const fwd::ForwardingPolicy& policy);

}  // namespace alknet::admin
