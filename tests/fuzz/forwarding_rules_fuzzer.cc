// libFuzzer entry: the forwarding policy's rule parser and evaluation (ADR 0014) against a slow
// reference. From the input: rules built through SetRuleField (random keys and values), the
// built-in switches, a request and an address. Properties: the parser never crashes, a parsed
// rule prints and re-parses to itself; DecideAddress equals the reference evaluator below
// (written from the documented rules, sharing no code with forwarding_rules.cc); the name phase
// agrees with the address phase whenever it claims to have decided.
#include <fuzzer/FuzzedDataProvider.h>

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "server/forward/forwarding_rules.h"

namespace {

using namespace alknet::fwd;

[[noreturn]] void Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "forwarding_rules_fuzzer: %s %s\n", what, detail.c_str());
  abort();
}

// ---- the reference: bits, loops, recursion ----

// 128 bits: IPv4 as ::ffff:a.b.c.d so an IPv4 rule and an IPv4-mapped address compare equal.
struct RefAddress {
  bool ok = false;
  bool v4 = false;
  unsigned char bits[128] = {};
};

RefAddress RefParse(const std::string& text) {
  RefAddress out;
  unsigned char raw[16] = {};
  if (inet_pton(AF_INET, text.c_str(), raw) == 1) {
    out.ok = true;
    out.v4 = true;
    unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, raw[0], raw[1], raw[2], raw[3]};
    for (int i = 0; i < 128; ++i) out.bits[i] = (mapped[i / 8] >> (7 - i % 8)) & 1;
    return out;
  }
  if (inet_pton(AF_INET6, text.c_str(), raw) == 1) {
    out.ok = true;
    bool mapped = true;
    for (int i = 0; i < 10; ++i) mapped = mapped && raw[i] == 0;
    mapped = mapped && raw[10] == 0xff && raw[11] == 0xff;
    out.v4 = mapped;
    for (int i = 0; i < 128; ++i) out.bits[i] = (raw[i / 8] >> (7 - i % 8)) & 1;
  }
  return out;
}

struct RefCidr {
  RefAddress base;
  int prefix = 0;  // over the 128-bit form
};

// "a/n": IPv4 text has prefix n+96 (max 32), IPv6 text n (max 128); no "/n": the full length.
std::optional<RefCidr> RefParseCidr(const std::string& text) {
  size_t slash = text.find('/');
  std::string address = slash == std::string::npos ? text : text.substr(0, slash);
  RefCidr out;
  out.base = RefParse(address);
  if (!out.base.ok) return std::nullopt;
  bool v4_text = address.find(':') == std::string::npos;
  int max = v4_text ? 32 : 128;
  int n = max;
  if (slash != std::string::npos) {
    std::string digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
    }
    n = std::atoi(digits.c_str());
    if (n > max) return std::nullopt;
  }
  out.prefix = v4_text ? n + 96 : n;
  // An IPv6-text prefix shorter than 96 on a mapped address is refused by the parser.
  if (!v4_text && out.base.v4 && out.prefix < 96) return std::nullopt;
  return out;
}

bool RefContains(const RefCidr& cidr, const RefAddress& address) {
  // A native IPv6 rule never matches an IPv4 address and the other way round.
  if (cidr.base.v4 != address.v4) return false;
  for (int i = 0; i < cidr.prefix; ++i) {
    if (cidr.base.bits[i] != address.bits[i]) return false;
  }
  return true;
}

char Low(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// The glob's definition as a table: tail[i][j] says whether p[i..] matches t[j..]. Filled from
// the ends, so a pattern of many '*' costs |p|*|t| (the naive recursion was exponential and ran
// past the fuzzer's timeout on "a****...").
bool RefGlob(const std::string& p, const std::string& t) {
  std::vector<std::vector<char>> tail(p.size() + 1, std::vector<char>(t.size() + 1, 0));
  tail[p.size()][t.size()] = 1;
  for (size_t i = p.size(); i-- > 0;) {
    for (size_t j = t.size() + 1; j-- > 0;) {
      if (p[i] == '*') {
        tail[i][j] = tail[i + 1][j] || (j < t.size() && tail[i][j + 1]);
      } else {
        tail[i][j] = j < t.size() && (p[i] == '?' || Low(p[i]) == Low(t[j])) && tail[i + 1][j + 1];
      }
    }
  }
  return tail[0][0] != 0;
}

struct RefRule {
  std::string name;
  bool allow = false;
  std::vector<std::string> hosts, keys, roles;
  std::vector<RefCidr> cidrs;
  bool has_ports = false;
  int lo = 0, hi = 0;
  int transports = 0, directions = 0;
};

struct RefRequest {
  std::string host;
  int port = 0;
  std::string key;
  std::vector<std::string> roles;
  int transport = 1, direction = 1;
};

std::string StripDot(std::string text) {
  if (text.size() > 1 && text.back() == '.') text.pop_back();
  return text;
}

bool RefMatches(const RefRule& rule, const RefRequest& request, const RefAddress& address) {
  if (rule.directions != 0 && (rule.directions & request.direction) == 0) return false;
  if (rule.transports != 0 && (rule.transports & request.transport) == 0) return false;
  if (rule.has_ports && (request.port < rule.lo || request.port > rule.hi)) return false;
  bool any = rule.keys.empty();
  for (const std::string& key : rule.keys) any = any || key == request.key;
  if (!any) return false;
  any = rule.roles.empty();
  for (const std::string& role : rule.roles) {
    for (const std::string& have : request.roles) any = any || role == have;
  }
  if (!any) return false;
  any = rule.hosts.empty();
  for (const std::string& host : rule.hosts) any = any || RefGlob(StripDot(host), StripDot(request.host));
  if (!any) return false;
  any = rule.cidrs.empty();
  for (const RefCidr& cidr : rule.cidrs) any = any || RefContains(cidr, address);
  return any;
}

RefRule Builtin(std::string name, std::vector<std::string> cidrs) {
  RefRule rule;
  rule.name = std::move(name);
  rule.directions = 1;
  for (const std::string& text : cidrs) rule.cidrs.push_back(*RefParseCidr(text));
  return rule;
}

// Operator rules, then link-local, then loopback (unless lifted), then the default.
std::pair<bool, std::string> RefDecide(const std::vector<RefRule>& rules, bool default_allow,
                                       bool default_rules, bool allow_loopback,
                                       const RefRequest& request, const RefAddress& address) {
  std::vector<RefRule> all = rules;
  if (default_rules) {
    all.push_back(Builtin("builtin:link-local", {"169.254.0.0/16", "fe80::/10"}));
    if (!allow_loopback) all.push_back(Builtin("builtin:loopback", {"127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"}));
  }
  for (const RefRule& rule : all) {
    if (RefMatches(rule, request, address)) return {rule.allow, rule.name};
  }
  return {default_allow, "default"};
}

const char* kKeys[] = {"name", "action", "hosts", "cidrs", "ports", "keys", "roles", "transports",
                       "direction", "bogus"};
const char* kValues[] = {"10.0.0.0/9", "fe80::/9", "127.0.0.0/12", "10.0.0.0/8", "127.0.0.1", "::1/128", "fe80::/10", "::ffff:10.0.0.0/104",
                         "*.example.com", "localhost", "allow", "deny", "22", "8000-8100", "tcp",
                         "tls", "quic", "local", "remote", "any", "SHA256:a", "ops", "0.0.0.0/0",
                         "169.254.169.254/32", "1-65535", "r?le", "*"};
const char* kHosts[] = {"localhost", "www.example.com", "EXAMPLE.COM.", "10.1.2.3", "::ffff:10.1.2.3",
                        "127.0.0.1", "169.254.169.254", "fe80::1", "::1", "a", "0.0.0.0", "intranet"};
const char* kAddresses[] = {"fec0::1", "10.128.0.1", "127.16.0.1", "10.1.2.3", "127.0.0.1", "127.9.9.9", "169.254.169.254", "fe80::1", "::1",
                            "::ffff:127.0.0.1", "203.0.113.9", "2001:db8::1", "0.0.0.0", "::"};

// An address from fuzz bytes: IPv4, IPv6 or IPv4-mapped IPv6, as text.
std::string RandomAddress(FuzzedDataProvider& data) {
  unsigned char raw[16] = {};
  char text[INET6_ADDRSTRLEN] = {};
  int kind = data.ConsumeIntegralInRange<int>(0, 2);
  for (int i = 0; i < (kind == 0 ? 4 : 16); ++i) raw[i] = data.ConsumeIntegral<unsigned char>();
  if (kind == 2) {
    for (int i = 0; i < 10; ++i) raw[i] = 0;
    raw[10] = raw[11] = 0xff;
  }
  inet_ntop(kind == 0 ? AF_INET : AF_INET6, raw, text, sizeof(text));
  return text;
}

// Fuzz text, a random address (a cidr when `cidr`), or a listed value.
std::string Pick(FuzzedDataProvider& data, const char* const* list, size_t size, bool cidr = false) {
  switch (data.ConsumeIntegralInRange<int>(0, 2)) {
    case 0: return data.ConsumeRandomLengthString(40);
    case 1: {
      std::string address = RandomAddress(data);
      if (cidr && data.ConsumeBool()) address += "/" + std::to_string(data.ConsumeIntegralInRange<int>(0, 130));
      return address;
    }
    default: return list[data.ConsumeIntegralInRange<size_t>(0, size - 1)];
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  FuzzedDataProvider data(bytes, size);
  ForwardingPolicy policy;
  policy.default_allow = data.ConsumeBool();
  policy.default_rules = data.ConsumeBool();
  policy.allow_loopback = data.ConsumeBool();
  std::vector<RefRule> reference;
  size_t rule_count = data.ConsumeIntegralInRange<size_t>(0, 6);
  for (size_t r = 0; r < rule_count; ++r) {
    ForwardRule rule;
    RefRule ref;
    rule.name = ref.name = "r" + std::to_string(r);
    size_t field_count = data.ConsumeIntegralInRange<size_t>(0, 6);
    for (size_t f = 0; f < field_count; ++f) {
      std::string key = kKeys[data.ConsumeIntegralInRange<size_t>(0, std::size(kKeys) - 1)];
      std::string value = Pick(data, kValues, std::size(kValues), key == "cidrs");
      ForwardRule before = rule;
      absl::Status status = SetRuleField(rule, key, value);
      if (!status.ok()) {
        if (!(rule == before)) Fail("a refused value changed the rule", key);
        continue;
      }
      // Mirror the accepted value into the reference (its own reading of the text).
      if (key == "name") ref.name = value;
      else if (key == "action") {
        std::string lower;
        for (char c : value) lower += Low(c);
        ref.allow = lower == "allow";
      }
      else if (key == "hosts") ref.hosts.push_back(value);
      else if (key == "cidrs") {
        std::optional<RefCidr> cidr = RefParseCidr(value);
        if (!cidr) Fail("cidr accepted, reference refuses", value);
        ref.cidrs.push_back(*cidr);
      } else if (key == "ports") {
        size_t dash = value.find('-');
        ref.has_ports = true;
        ref.lo = std::atoi(value.substr(0, dash).c_str());
        ref.hi = dash == std::string::npos ? ref.lo : std::atoi(value.substr(dash + 1).c_str());
      } else if (key == "keys") ref.keys.push_back(value);
      else if (key == "roles") ref.roles.push_back(value);
      else if (key == "transports") {
        std::string lower;
        for (char c : value) lower += Low(c);
        ref.transports |= lower == "tcp" ? 1 : lower == "tls" ? 2 : 4;
      } else if (key == "direction") {
        std::string lower;
        for (char c : value) lower += Low(c);
        ref.directions = lower == "local" ? 1 : lower == "remote" ? 2 : 0;
      } else {
        Fail("unknown key accepted", key);
      }
    }
    // The printed form re-parses to the same rule.
    ForwardRule again;
    for (std::string_view key : RuleKeys()) {
      for (const std::string& text : RuleFieldText(rule, key)) {
        if (!SetRuleField(again, key, text).ok()) Fail("printed form refused", std::string(key) + "=" + text);
      }
    }
    if (!(again == rule)) Fail("printed form differs", rule.name);
    policy.rules.push_back(std::move(rule));
    reference.push_back(std::move(ref));
  }
  // Names must be unique for a valid policy; evaluation does not care.
  CompiledPolicy compiled(policy);

  RefRequest ref_request;
  ref_request.host = Pick(data, kHosts, std::size(kHosts));
  ref_request.port = data.ConsumeIntegralInRange<int>(1, 65535);
  ref_request.key = data.ConsumeBool() ? "SHA256:a" : "SHA256:b";
  if (data.ConsumeBool()) ref_request.roles.push_back("ops");
  ref_request.transport = 1 << data.ConsumeIntegralInRange<int>(0, 2);
  ref_request.direction = data.ConsumeBool() ? kLocal : kRemote;
  ForwardRequest request{.host = ref_request.host, .port = static_cast<uint16_t>(ref_request.port),
                         .key_fingerprint = ref_request.key, .roles = &ref_request.roles,
                         .transport = static_cast<uint8_t>(ref_request.transport),
                         .direction = static_cast<uint8_t>(ref_request.direction)};
  std::string address_text = Pick(data, kAddresses, std::size(kAddresses));
  std::optional<IpAddress> address = IpAddress::Parse(address_text);
  RefAddress ref_address = RefParse(address_text);
  if (address.has_value() != ref_address.ok) Fail("address parse differs", address_text);
  if (!address) return 0;

  Decision fast = DecideAddress(compiled, request, *address);
  auto [allow, name] = RefDecide(reference, policy.default_allow, policy.default_rules,
                                 policy.allow_loopback, ref_request, ref_address);
  if (fast.allow != allow || std::string(fast.RuleName()) != name) {
    Fail("decision differs", ref_request.host + " " + address_text + " fast=" + std::string(fast.RuleName()) + " ref=" + name);
  }

  // The name phase: a literal is decided as its own address; a decided name holds for every address.
  Decision by_name = DecideByName(compiled, request);
  std::optional<IpAddress> literal = IpAddress::Parse(request.host);
  if (literal) {
    Decision direct = DecideAddress(compiled, request, *literal);
    if (by_name.needs_address || by_name.allow != direct.allow || by_name.rule != direct.rule) Fail("literal name phase differs", ref_request.host);
  } else if (!by_name.needs_address) {
    if (by_name.allow != fast.allow || by_name.rule != fast.rule) Fail("name phase differs", ref_request.host);
  }
  return 0;
}
