// The policy's rate_limits section in the admin API and the state file.
#include "agent/admin/policy_rate_limits.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/config/config_schema.h"
#include "server/config/rate_units.h"

namespace alknet::admin {
namespace {

using google::protobuf::FieldDescriptor;

std::optional<std::string> FieldText(const v1::RateLimits& limits, const FieldDescriptor* field) {
  const auto* reflection = v1::RateLimits::GetReflection();
  if (!reflection->HasField(limits, field)) return std::nullopt;
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
    return absl::StrCat(reflection->GetInt32(limits, field));
  }
  return reflection->GetString(limits, field);
}

void SetFieldText(v1::RateLimits& limits, const FieldDescriptor* field, const std::string& text) {
  const auto* reflection = v1::RateLimits::GetReflection();
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
    reflection->SetInt32(&limits, field, std::stoi(text));
  } else {
    reflection->SetString(&limits, field, text);
  }
}

}  // namespace

v1::RateLimits RateLimitsToProto(const config::RateLimits& limits) {
  v1::RateLimits out;
  out.set_connections_per_source(config::FormatRate(limits.connections_per_source));
  out.set_connections_per_source_burst(limits.connections_per_source_burst);
  out.set_channels_per_session(config::FormatRate(limits.channels_per_session));
  out.set_channels_per_session_burst(limits.channels_per_session_burst);
  out.set_sessions_per_key(config::FormatRate(limits.sessions_per_key));
  out.set_sessions_per_key_burst(limits.sessions_per_key_burst);
  out.set_max_sessions_per_key(limits.max_sessions_per_key);
  out.set_max_remote_forwards_per_key(limits.max_remote_forwards_per_key);
  out.set_bandwidth_per_key(config::FormatByteSize(limits.bandwidth_per_key));
  out.set_bandwidth_per_key_burst(config::FormatByteSize(limits.bandwidth_per_key_burst));
  out.set_bandwidth_exempt_keys(config::FormatFingerprintList(limits.bandwidth_exempt_keys));
  return out;
}

absl::Status ApplyRateLimitsProto(const v1::RateLimits& limits, config::AgentConfig& config) {
  const auto* descriptor = v1::RateLimits::descriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    std::optional<std::string> text = FieldText(limits, field);
    if (!text) continue;
    std::string path = absl::StrCat("rate_limits.", field->name());
    const config::FieldSpec* spec = config::FindFieldByYamlPath(path);
    if (spec == nullptr) return absl::InternalError(absl::StrCat("no config field ", path));
    if (absl::Status status = config::SetField(config, *spec, *text); !status.ok()) return status;
  }
  return absl::OkStatus();
}

config::RateLimits MergeConfigRateLimits(const config::AgentConfig& file_config,
                                         state::v1::StoredPolicy& policy, Logger& logger) {
  v1::RateLimits from_file = RateLimitsToProto(file_config.rate_limits);
  if (!policy.has_rate_limits()) {
    *policy.mutable_rate_limits() = from_file;
    *policy.mutable_rate_limits_config_baseline() = from_file;
    return file_config.rate_limits;
  }
  const auto* descriptor = v1::RateLimits::descriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    std::string file_value = *FieldText(from_file, field);
    std::optional<std::string> baseline = FieldText(policy.rate_limits_config_baseline(), field);
    std::optional<std::string> current = FieldText(policy.rate_limits(), field);
    if (!current || !baseline || *baseline != file_value) {
      if (current && *current != file_value) {
        logger.Info("state", "limit changed in the config file; taking it",
                    {{"field", absl::StrCat("rate_limits.", field->name())}, {"was", *current},
                     {"now", file_value}});
      }
      SetFieldText(*policy.mutable_rate_limits(), field, file_value);
    }
    SetFieldText(*policy.mutable_rate_limits_config_baseline(), field, file_value);
  }
  config::AgentConfig check = file_config;
  absl::Status status = ApplyRateLimitsProto(policy.rate_limits(), check);
  if (!status.ok()) {
    logger.Warn("state", "stored rate limits are invalid; using the config file's",
                {{"error", std::string(status.message())}});
    *policy.mutable_rate_limits() = from_file;
    return file_config.rate_limits;
  }
  return check.rate_limits;
}

}  // namespace alknet::admin
