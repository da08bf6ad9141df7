// The field table of one upstream (client role): YAML key under `upstreams:`, the
// `alknet-agent connect` flag, kind, help and setter. The YAML loader (a list of mappings under
// `upstreams`) and the connect flags both go through this table.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/config/config.h"
#include "server/config/config_schema.h"

namespace alknet::config {

struct UpstreamFieldSpec {
  std::string_view key;   // "server"
  std::string_view flag;  // "--server", "-L"
  FieldKind kind;
  bool takes_value;       // false: a switch ("--insecure-accept-any-host-key" means true)
  std::string_view help;  // one line, with the default
};

const std::vector<UpstreamFieldSpec>& UpstreamFields();
const UpstreamFieldSpec* FindUpstreamFieldByKey(std::string_view key);
const UpstreamFieldSpec* FindUpstreamFieldByFlag(std::string_view flag);

// Sets a scalar or appends to a list field from its text form. Errors name the value, not
// the field (callers prefix "upstreams[0].server: " or the flag).
absl::Status SetUpstreamField(UpstreamConfig& upstream, const UpstreamFieldSpec& field,
                              std::string_view value);
void ClearUpstreamListField(UpstreamConfig& upstream, const UpstreamFieldSpec& field);
// The field's text form, one string per list element (a scalar gives exactly one).
std::vector<std::string> PrintUpstreamField(const UpstreamConfig& upstream,
                                            const UpstreamFieldSpec& field);

// "[bind:]port:host:hostport"; IPv6 addresses in brackets. `default_bind` fills a missing bind.
absl::StatusOr<ForwardSpec> ParseForwardSpec(std::string_view text, std::string_view default_bind);

// A -L target (config, flag or admin API) the client role may ask the server for: not a
// reserved "alknet-*" name (the agent's own services), not port 0. The error names the value.
absl::Status CheckLocalForwardTarget(const ForwardSpec& spec);

// Fills each upstream's name (server host:port) when empty.
void ResolveUpstreamDefaults(std::vector<UpstreamConfig>& upstreams);
// Required fields, exclusive options and unique names; errors read "upstreams[1].identity: ...".
absl::Status ValidateUpstreams(const std::vector<UpstreamConfig>& upstreams);
// The tls_* options of one upstream agree with each other and with its server's scheme; errors
// start with the field ("tls_insecure: ...").
absl::Status ValidateUpstreamTls(const UpstreamConfig& upstream);

}  // namespace alknet::config
