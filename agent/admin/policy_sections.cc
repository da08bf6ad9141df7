// The policy's sections between the admin API / state file messages and the configuration.
#include "agent/admin/policy_sections.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/admin/forwarding_proto.h"
#include "server/common/strings.h"
#include "server/config/config_schema.h"

namespace alknet::admin {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// The YAML field a flat section's proto field mirrors.
absl::StatusOr<const config::FieldSpec*> SpecFor(std::string_view section, const FieldDescriptor* field) {
  std::string path = absl::StrCat(Sv(section), ".", field->name());
  const config::FieldSpec* spec = config::FindFieldByYamlPath(path);
  if (spec == nullptr) return absl::InternalError(absl::StrCat("no config field ", path));
  return spec;
}

void SectionToProto(const config::AgentConfig& config, std::string_view section, Message& out) {
  const auto* descriptor = out.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    absl::StatusOr<const config::FieldSpec*> spec = SpecFor(section, field);
    if (!spec.ok()) continue;  // a proto field without a config field: a build-time mistake
    std::vector<std::string> values = config::FieldValues(config, **spec);
    std::string text = (*spec)->kind == config::FieldKind::kList
                           ? absl::StrJoin(values, ",")
                           : (values.empty() ? std::string() : values.front());
    SetFieldText(out, field, text);
  }
}

absl::Status ApplySection(const Message& in, std::string_view section, config::AgentConfig& config) {
  const auto* descriptor = in.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    std::optional<std::string> text = FieldText(in, field);
    if (!text) continue;
    absl::StatusOr<const config::FieldSpec*> spec = SpecFor(section, field);
    if (!spec.ok()) return spec.status();
    if ((*spec)->kind == config::FieldKind::kScalar) {
      if (absl::Status status = config::SetField(config, **spec, *text); !status.ok()) return status;
      continue;
    }
    config::ClearListField(config, **spec);
    for (absl::string_view element : absl::StrSplit(*text, ',', absl::SkipWhitespace())) {
      absl::Status status = config::SetField(config, **spec, StdSv(absl::StripAsciiWhitespace(element)));
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

// The stored section in force and the config file's values when last read.
std::pair<Message*, Message*> Stored(state::v1::StoredPolicy& policy, std::string_view section) {
  if (section == "limits") return {policy.mutable_limits(), policy.mutable_config_baseline()};
  if (section == "penalties") {
    return {policy.mutable_penalties(), policy.mutable_penalties_config_baseline()};
  }
  return {policy.mutable_rate_limits(), policy.mutable_rate_limits_config_baseline()};
}

// Field by field: the file's value wins where the file changed since `baseline` was recorded.
void MergeSection(const Message& from_file, std::string_view section, Message& current,
                  Message& baseline, Logger& logger) {
  const auto* descriptor = from_file.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    std::string file_value = FieldText(from_file, field).value_or("");
    std::optional<std::string> was = FieldText(baseline, field);
    std::optional<std::string> now = FieldText(current, field);
    if (!now || !was || *was != file_value) {
      if (now && *now != file_value) {
        logger.Info("state", "limit changed in the config file; taking it",
                    {{"field", absl::StrCat(Sv(section), ".", field->name())}, {"was", *now},
                     {"now", file_value}});
      }
      SetFieldText(current, field, file_value);
    }
    SetFieldText(baseline, field, file_value);
  }
}

// The forwarding section as a whole: when the file's changed, the file's wins.
void MergeForwarding(const config::AgentConfig& file_config, state::v1::StoredPolicy& policy,
                     config::AgentConfig& merged, Logger& logger) {
  v1::ForwardingPolicy from_file = ForwardingToProto(file_config.forwarding);
  bool file_changed = !policy.has_forwarding_baseline() ||
                      policy.forwarding_baseline().SerializeAsString() != from_file.SerializeAsString();
  if (!policy.has_forwarding() || file_changed) {
    if (policy.has_forwarding() && policy.forwarding().SerializeAsString() != from_file.SerializeAsString()) {
      logger.Info("state", "forwarding policy changed in the config file; taking it");
    }
    *policy.mutable_forwarding() = from_file;
    *policy.mutable_forwarding_baseline() = from_file;
    return;
  }
  fwd::ForwardingPolicy stored = file_config.forwarding;
  if (absl::Status status = ApplyForwardingProto(policy.forwarding(), stored); !status.ok()) {
    logger.Warn("state", "stored forwarding policy is invalid; using the config file's",
                {{"error", std::string(status.message())}});
    *policy.mutable_forwarding() = from_file;
    return;
  }
  merged.forwarding = std::move(stored);
}

}  // namespace

const std::vector<std::string>& FlatPolicySections() {
  static const std::vector<std::string> sections = {"limits", "penalties", "rate_limits"};
  return sections;
}

Message& FlatSection(v1::PolicySpec& policy, std::string_view section) {
  if (section == "limits") return *policy.mutable_limits();
  if (section == "penalties") return *policy.mutable_penalties();
  return *policy.mutable_rate_limits();
}

const Message& FlatSection(const v1::PolicySpec& policy, std::string_view section) {
  if (section == "limits") return policy.limits();
  if (section == "penalties") return policy.penalties();
  return policy.rate_limits();
}

std::optional<std::string> FieldText(const Message& message, const FieldDescriptor* field) {
  const auto* reflection = message.GetReflection();
  if (!reflection->HasField(message, field)) return std::nullopt;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return absl::StrCat(reflection->GetInt32(message, field));
    case FieldDescriptor::CPPTYPE_BOOL: return reflection->GetBool(message, field) ? "true" : "false";
    default: return reflection->GetString(message, field);
  }
}

bool SetFieldText(Message& message, const FieldDescriptor* field, std::string_view text) {
  const auto* reflection = message.GetReflection();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t number = 0;
      if (!absl::SimpleAtoi(Sv(text), &number)) return false;
      reflection->SetInt32(&message, field, number);
      return true;
    }
    case FieldDescriptor::CPPTYPE_BOOL:
      if (text != "true" && text != "false") return false;
      reflection->SetBool(&message, field, text == "true");
      return true;
    default:
      reflection->SetString(&message, field, std::string(text));
      return true;
  }
}

v1::PolicySpec PolicyToProto(const config::AgentConfig& config) {
  v1::PolicySpec policy;
  for (const std::string& section : FlatPolicySections()) {
    SectionToProto(config, section, FlatSection(policy, section));
  }
  *policy.mutable_forwarding() = ForwardingToProto(config.forwarding);
  return policy;
}

absl::Status ApplyPolicyProto(const v1::PolicySpec& policy, config::AgentConfig& config) {
  for (const std::string& section : FlatPolicySections()) {
    if (absl::Status status = ApplySection(FlatSection(policy, section), section, config); !status.ok()) {
      return status;
    }
  }
  return ApplyForwardingProto(policy.forwarding(), config.forwarding);
}

v1::PolicySpec InForcePolicy(const state::v1::StoredPolicy& stored) {
  v1::PolicySpec policy;  // a section the store lacks stays unset: "keep" for ApplyPolicyProto
  if (stored.has_limits()) *policy.mutable_limits() = stored.limits();
  if (stored.has_penalties()) *policy.mutable_penalties() = stored.penalties();
  if (stored.has_rate_limits()) *policy.mutable_rate_limits() = stored.rate_limits();
  if (stored.has_forwarding()) *policy.mutable_forwarding() = stored.forwarding();
  return policy;
}

void StoreInForcePolicy(const v1::PolicySpec& policy, state::v1::StoredPolicy& stored) {
  *stored.mutable_limits() = policy.limits();
  *stored.mutable_penalties() = policy.penalties();
  *stored.mutable_rate_limits() = policy.rate_limits();
  *stored.mutable_forwarding() = policy.forwarding();
}

void CopyPolicySections(const config::AgentConfig& from, config::AgentConfig& to) {
  to.limits = from.limits;
  to.penalties = from.penalties;
  to.rate_limits = from.rate_limits;
  to.forwarding = from.forwarding;
}

config::AgentConfig MergeConfigPolicy(const config::AgentConfig& file_config,
                                      state::v1::StoredPolicy& policy, Logger& logger) {
  v1::PolicySpec from_file = PolicyToProto(file_config);
  config::AgentConfig merged = file_config;
  for (const std::string& section : FlatPolicySections()) {
    auto [current, baseline] = Stored(policy, section);
    MergeSection(FlatSection(from_file, section), section, *current, *baseline, logger);
    config::AgentConfig check = merged;
    absl::Status status = ApplySection(*current, section, check);
    if (status.ok()) status = config::Validate(check);
    if (!status.ok()) {
      logger.Warn("state", "stored policy is invalid with this config; using the config file's",
                  {{"section", std::string(section)}, {"error", std::string(status.message())}});
      current->CopyFrom(FlatSection(from_file, section));
      continue;
    }
    merged = std::move(check);
  }
  MergeForwarding(file_config, policy, merged, logger);
  return merged;
}

}  // namespace alknet::admin
