// libFuzzer entry: the client role's -L/-R spec parser (ParseForwardSpec) and every field of the
// upstream schema (SetUpstreamField / PrintUpstreamField, what YAML and the connect flags use).
// Properties: never crash; a parsed spec prints to text that parses back to the same spec;
// a field's printed value sets the field to the same printed value;
// a -L target is never a reserved "alknet-*" name nor port 0.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "server/common/reserved_names.h"
#include "server/config/upstream_schema.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  using alknet::config::ForwardSpec;

  absl::StatusOr<ForwardSpec> spec = alknet::config::ParseForwardSpec(text, "127.0.0.1");
  if (spec.ok()) {
    if (spec->host.empty() || spec->host_port == 0) __builtin_trap();
    absl::StatusOr<ForwardSpec> again = alknet::config::ParseForwardSpec(spec->ToString(), "x");
    if (!again.ok() || !(*again == *spec)) __builtin_trap();
  }

  // One upstream field, picked by the first byte, set from the text.
  const std::vector<alknet::config::UpstreamFieldSpec>& fields = alknet::config::UpstreamFields();
  const alknet::config::UpstreamFieldSpec& field = fields[control % fields.size()];
  alknet::config::UpstreamConfig upstream;
  if (alknet::config::SetUpstreamField(upstream, field, text).ok()) {
    for (const ForwardSpec& forward : upstream.local_forwards) {
      if (alknet::IsReservedDestination(forward.host) || forward.host_port == 0) __builtin_trap();
    }
    const std::vector<std::string> printed = alknet::config::PrintUpstreamField(upstream, field);
    alknet::config::UpstreamConfig reparsed;
    if (field.kind == alknet::config::FieldKind::kList) {
      for (const std::string& value : printed) {
        if (!alknet::config::SetUpstreamField(reparsed, field, value).ok()) __builtin_trap();
      }
    } else if (printed.size() == 1) {
      if (!alknet::config::SetUpstreamField(reparsed, field, printed[0]).ok()) __builtin_trap();
    } else {
      __builtin_trap();
    }
    if (alknet::config::PrintUpstreamField(reparsed, field) != printed) __builtin_trap();
  }
  return 0;
}
