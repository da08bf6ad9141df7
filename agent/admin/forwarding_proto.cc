// The forwarding policy between its admin API message and fwd::ForwardingPolicy.
#include "agent/admin/forwarding_proto.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet::admin {
namespace {

absl::Status Bad(std::string_view field, const absl::Status& status) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(field), ": ", status.message()));
}

}  // namespace

absl::Status ApplyForwardingProto(const v1::ForwardingPolicy& in, fwd::ForwardingPolicy& policy) {
  fwd::ForwardingPolicy next = policy;
  if (in.has_default_action()) {
    absl::StatusOr<bool> allow = fwd::ParseAction(in.default_action());
    if (!allow.ok()) return Bad("forwarding.default_action", allow.status());
    next.default_allow = *allow;
  }
  if (in.has_default_rules()) next.default_rules = in.default_rules();
  if (in.has_allow_loopback()) next.allow_loopback = in.allow_loopback();
  if (in.has_rules()) {
    next.rules.clear();
    for (int i = 0; i < in.rules().rules_size(); ++i) {
      const v1::ForwardingRule& from = in.rules().rules(i);
      std::string where = absl::StrCat("forwarding.rules[", i, "]");
      fwd::ForwardRule rule;
      auto one = [&](std::string_view key, const std::string& value, std::string label) -> absl::Status {
        absl::Status status = fwd::SetRuleField(rule, key, value);
        return status.ok() ? status : Bad(label, status);
      };
      auto list = [&](std::string_view key,
                      const google::protobuf::RepeatedPtrField<std::string>& values) -> absl::Status {
        for (int k = 0; k < values.size(); ++k) {
          if (absl::Status status = one(key, values[k], absl::StrCat(where, ".", Sv(key), "[", k, "]"));
              !status.ok()) {
            return status;
          }
        }
        return absl::OkStatus();
      };
      if (from.name().empty()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".name: missing (every rule needs a name)"));
      }
      if (from.action().empty()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".action: missing (allow or deny)"));
      }
      absl::Status status = one("name", from.name(), where + ".name");
      if (status.ok()) status = one("action", from.action(), where + ".action");
      if (status.ok()) status = list("hosts", from.hosts());
      if (status.ok()) status = list("cidrs", from.cidrs());
      if (status.ok() && !from.ports().empty()) status = one("ports", from.ports(), where + ".ports");
      if (status.ok()) status = list("keys", from.keys());
      if (status.ok()) status = list("roles", from.roles());
      if (status.ok()) status = list("transports", from.transports());
      if (status.ok() && !from.direction().empty()) {
        status = one("direction", from.direction(), where + ".direction");
      }
      if (!status.ok()) return status;
      next.rules.push_back(std::move(rule));
    }
    if (absl::Status status = fwd::ValidateRules(next.rules); !status.ok()) return status;
  }
  policy = std::move(next);
  return absl::OkStatus();
}

v1::ForwardingPolicy ForwardingToProto(const fwd::ForwardingPolicy& policy) {
  v1::ForwardingPolicy out;
  out.set_default_action(policy.default_allow ? "allow" : "deny");
  out.set_default_rules(policy.default_rules);
  out.set_allow_loopback(policy.allow_loopback);
  v1::ForwardingRules& rules = *out.mutable_rules();
  for (const fwd::ForwardRule& rule : policy.rules) {
    v1::ForwardingRule& to = *rules.add_rules();
    to.set_name(rule.name);
    to.set_action(rule.allow ? "allow" : "deny");
    for (const std::string& v : fwd::RuleFieldText(rule, "hosts")) to.add_hosts(v);
    for (const std::string& v : fwd::RuleFieldText(rule, "cidrs")) to.add_cidrs(v);
    for (const std::string& v : fwd::RuleFieldText(rule, "ports")) to.set_ports(v);
    for (const std::string& v : fwd::RuleFieldText(rule, "keys")) to.add_keys(v);
    for (const std::string& v : fwd::RuleFieldText(rule, "roles")) to.add_roles(v);
    for (const std::string& v : fwd::RuleFieldText(rule, "transports")) to.add_transports(v);
    for (const std::string& v : fwd::RuleFieldText(rule, "direction")) to.set_direction(v);
  }
  return out;
}

}  // namespace alknet::admin
