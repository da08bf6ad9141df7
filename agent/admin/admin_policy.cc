// The Policy service: the policy in force read, validated and changed; penalties listed, cleared.
#include "absl/strings/str_cat.h"
#include "agent/admin/admin_core.h"
#include "agent/admin/api_errors.h"
#include "agent/admin/policy_sections.h"
#include "server/config/config_schema.h"
#include "server/config/config_yaml.h"

namespace alknet::admin {

v1::GetPolicyResponse AdminCore::GetPolicy() {
  absl::MutexLock lock(&mu_);
  v1::GetPolicyResponse response;
  *response.mutable_policy() = PolicyToProto(config_);
  return response;
}

absl::StatusOr<config::AgentConfig> AdminCore::PolicyCandidate(const v1::PolicySpec& policy) const {
  config::AgentConfig candidate = config_;
  if (absl::Status status = ApplyPolicyProto(policy, candidate); !status.ok()) return status;
  if (absl::Status status = config::Validate(candidate); !status.ok()) {
    return absl::InvalidArgumentError(status.message());
  }
  return candidate;
}

void AdminCore::InstallPolicy(const config::AgentConfig& policy) {
  CopyPolicySections(policy, config_);
}

absl::StatusOr<v1::SetPolicyResponse> AdminCore::SetPolicy(const v1::SetPolicyRequest& request) {
  if (!request.has_policy()) return FieldError("policy", "required");
  config::AgentConfig candidate;
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<config::AgentConfig> checked = PolicyCandidate(request.policy());
    if (!checked.ok()) return checked.status();
    candidate = *std::move(checked);
    state::v1::State next = state_;
    StoreInForcePolicy(PolicyToProto(candidate), *next.mutable_policy());
    if (absl::Status status = Commit(std::move(next)); !status.ok()) return status;
    InstallPolicy(candidate);
    engine = engine_;
  }
  if (engine != nullptr) engine->UpdatePolicy(candidate);
  v1::SetPolicyResponse response;
  *response.mutable_policy() = PolicyToProto(candidate);
  logger_.Info("admin", "policy changed",
               {{"limits", response.policy().limits().ShortDebugString()},
                {"penalties", response.policy().penalties().ShortDebugString()},
                {"rate_limits", response.policy().rate_limits().ShortDebugString()},
                {"forwarding_rules", absl::StrCat(candidate.forwarding.rules.size())}});
  return response;
}

absl::StatusOr<v1::ValidatePolicyResponse> AdminCore::ValidatePolicy(
    const v1::ValidatePolicyRequest& request) {
  config::AgentConfig candidate;
  {
    absl::MutexLock lock(&mu_);
    candidate = config_;
  }
  if (request.has_config_yaml()) {
    if (absl::Status status = config::ApplyYaml(request.config_yaml(), "config_yaml", candidate);
        !status.ok()) {
      return absl::InvalidArgumentError(status.message());
    }
  } else if (request.has_policy()) {
    if (absl::Status status = ApplyPolicyProto(request.policy(), candidate); !status.ok()) return status;
  } else {
    return FieldError("source", "a policy or config_yaml is required");
  }
  if (absl::Status status = config::Validate(candidate); !status.ok()) {
    return absl::InvalidArgumentError(status.message());
  }
  v1::ValidatePolicyResponse response;
  *response.mutable_policy() = PolicyToProto(candidate);
  return response;
}

v1::ListPenaltiesResponse AdminCore::ListPenalties() {
  ServerEngine* engine = AttachedEngine();
  v1::ListPenaltiesResponse response;
  if (engine == nullptr) return response;
  for (const PenaltyEntry& entry : engine->penalties().List()) {
    v1::PenalisedSource* source = response.add_sources();
    source->set_netblock(entry.netblock);
    source->set_remaining_ms(absl::ToInt64Milliseconds(entry.remaining));
    source->set_refused(entry.refused);
    source->set_last_event(std::string(PenaltyEventName(entry.last_event)));
  }
  return response;
}

absl::StatusOr<v1::ClearPenaltiesResponse> AdminCore::ClearPenalties(
    const v1::ClearPenaltiesRequest& request) {
  ServerEngine* engine = AttachedEngine();
  v1::ClearPenaltiesResponse response;
  if (engine == nullptr) return response;
  absl::StatusOr<int> cleared = engine->penalties().Clear(request.source());
  if (!cleared.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("source: ", cleared.status().message()));
  }
  response.set_cleared(static_cast<uint32_t>(*cleared));
  logger_.Info("admin", "penalties cleared",
               {{"source", request.source().empty() ? "all" : request.source()},
                {"cleared", absl::StrCat(*cleared)}});
  return response;
}

}  // namespace alknet::admin
