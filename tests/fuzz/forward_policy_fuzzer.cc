// libFuzzer entry: the forwarding policy as properties. From the input: a random permit list
// (permitopen= / permitlisten= entries), the port-forwarding switch and a destination or listen
// request. DestinationAllowed, CheckDirectForward and CheckRemoteListen must equal the slow
// reference implementations below, written from their documented rules (forward_policy.h,
// address_patterns.h) without sharing code with them.
#include <fuzzer/FuzzedDataProvider.h>

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "server/auth/address_patterns.h"
#include "server/forward/forward_policy.h"

namespace {

using alknet::ForwardVerdict;
using alknet::auth::HostPortPattern;

std::string Lower(const std::string& text) {
  std::string out;
  for (char c : text) out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return out;
}

bool SameHost(const std::string& a, const std::string& b) { return Lower(a) == Lower(b); }

// permitopen: empty allows all; else some entry with host "*" or equal (any case) and port
// "*" or equal.
bool ReferenceDestinationAllowed(const std::vector<HostPortPattern>& list, const std::string& host,
                                 uint16_t port) {
  if (list.empty()) return true;
  bool allowed = false;
  for (size_t i = 0; i < list.size(); ++i) {
    bool host_ok = list[i].host == "*" || SameHost(list[i].host, host);
    bool port_ok = list[i].any_port || list[i].port == port;
    allowed = allowed || (host_ok && port_ok);
  }
  return allowed;
}

bool HasControl(const std::string& host, bool space_too) {
  for (unsigned char c : host) {
    if (c < 0x20 || c == 0x7f || (space_too && c == 0x20)) return true;
  }
  return false;
}

ForwardVerdict ReferenceDirect(const alknet::auth::KeyOptions& options, const std::string& host,
                               uint32_t port) {
  if (host.empty() || host.size() > 255 || port == 0 || port > 65535 || HasControl(host, true)) {
    return ForwardVerdict::kInvalidDestination;
  }
  if (Lower(host).rfind("alknet-", 0) == 0) return ForwardVerdict::kReservedName;
  if (!options.port_forwarding) return ForwardVerdict::kForwardingDisabled;
  if (!ReferenceDestinationAllowed(options.permit_open, host, static_cast<uint16_t>(port))) {
    return ForwardVerdict::kNotPermitted;
  }
  return ForwardVerdict::kAllowed;
}

bool Wildcard(const std::string& host) {
  return host.empty() || host == "*" || host == "0.0.0.0" || host == "::";
}

bool Numeric(const std::string& host) {
  unsigned char buffer[16];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 || inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

alknet::ListenDecision ReferenceListen(const alknet::auth::KeyOptions& options,
                                       const std::string& host, uint32_t port) {
  alknet::ListenDecision decision;
  if (host.size() > 255 || port > 65535 || HasControl(host, false)) {
    decision.verdict = ForwardVerdict::kInvalidDestination;
    return decision;
  }
  if (!options.port_forwarding) {
    decision.verdict = ForwardVerdict::kForwardingDisabled;
    return decision;
  }
  const std::vector<HostPortPattern>& list = options.permit_listen;
  // Which entries match: "*" matches any host; a named entry matches its own host (any case)
  // and a wildcard entry (0.0.0.0, ::) matches a wildcard request. Port 0 needs "*".
  bool permitted = list.empty();
  std::string last_named;  // the last entry that named the host explicitly
  for (size_t i = 0; i < list.size(); ++i) {
    const HostPortPattern& entry = list[i];
    if (!(entry.any_port || (port != 0 && entry.port == port))) continue;
    if (entry.host == "*") {
      permitted = true;
      continue;
    }
    bool named = SameHost(entry.host, host) ||
                 ((entry.host == "0.0.0.0" || entry.host == "::") && Wildcard(host));
    if (named) {
      permitted = true;
      last_named = entry.host;
    }
  }
  if (!permitted) {
    decision.verdict = ForwardVerdict::kListenNotPermitted;
    return decision;
  }
  if (list.empty() && port != 0 && port < 1024) {
    decision.verdict = ForwardVerdict::kPrivilegedPort;
    return decision;
  }
  if (!last_named.empty()) {
    std::string bind = Wildcard(host) ? last_named : host;
    if (SameHost(bind, "localhost")) bind = "127.0.0.1";
    decision.bind_host = Numeric(bind) ? bind : "127.0.0.1";
  } else if (!Wildcard(host) && Numeric(host) && (host.rfind("127.", 0) == 0 || host == "::1")) {
    decision.bind_host = host;
  } else {
    decision.bind_host = "127.0.0.1";
  }
  return decision;
}

// Small alphabets make matches likely: hosts from a few names, literals and case variants.
std::string PickHost(FuzzedDataProvider& input) {
  static const char* const kHosts[] = {"*",        "localhost", "LocalHost", "127.0.0.1", "127.0.0.2",
                                       "0.0.0.0",  "::",        "::1",       "",          "example.org",
                                       "EXAMPLE.org", "alknet-admin", "ALKNET-x", "10.0.0.1", "a\tb",
                                       "a b",      "fe80::1%lo"};
  if (input.ConsumeBool()) return kHosts[input.ConsumeIntegralInRange<size_t>(0, std::size(kHosts) - 1)];
  return input.ConsumeRandomLengthString(300);
}

uint32_t PickPort(FuzzedDataProvider& input) {
  static const uint32_t kPorts[] = {0, 1, 22, 80, 1023, 1024, 8080, 65535, 65536, 70000};
  if (input.ConsumeBool()) return kPorts[input.ConsumeIntegralInRange<size_t>(0, std::size(kPorts) - 1)];
  return input.ConsumeIntegral<uint32_t>();
}

std::vector<HostPortPattern> PickList(FuzzedDataProvider& input) {
  std::vector<HostPortPattern> list(input.ConsumeIntegralInRange<size_t>(0, 4));
  for (HostPortPattern& entry : list) {
    entry.host = PickHost(input);
    entry.any_port = input.ConsumeBool();
    entry.port = entry.any_port ? 0 : static_cast<uint16_t>(PickPort(input));
  }
  return list;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  alknet::auth::KeyOptions options;
  options.port_forwarding = input.ConsumeIntegralInRange<int>(0, 7) != 0;
  options.permit_open = PickList(input);
  options.permit_listen = PickList(input);
  const std::string host = PickHost(input);
  const uint32_t port = PickPort(input);

  if (alknet::auth::DestinationAllowed(options.permit_open, host, static_cast<uint16_t>(port)) !=
      ReferenceDestinationAllowed(options.permit_open, host, static_cast<uint16_t>(port))) {
    __builtin_trap();
  }
  if (alknet::CheckDirectForward(options, host, port) != ReferenceDirect(options, host, port)) {
    __builtin_trap();
  }
  const alknet::ListenDecision got = alknet::CheckRemoteListen(options, host, port);
  const alknet::ListenDecision want = ReferenceListen(options, host, port);
  if (got.verdict != want.verdict) __builtin_trap();
  if (got.verdict == ForwardVerdict::kAllowed && got.bind_host != want.bind_host) __builtin_trap();
  return 0;
}
