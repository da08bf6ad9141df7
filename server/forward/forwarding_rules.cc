// The forwarding policy: rule parsing, built-in denies and the two-phase evaluation.
#include "server/forward/forwarding_rules.h"

#include <arpa/inet.h>
#include <ifaddrs.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/auth/address_patterns.h"
#include "server/common/strings.h"

namespace alknet::fwd {

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty() || text.size() > 63) return std::nullopt;
  std::string copy(text);
  IpAddress address;
  in_addr v4{};
  if (inet_pton(AF_INET, copy.c_str(), &v4) == 1) {
    std::memcpy(address.bytes.data(), &v4, 4);
    return address;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, copy.c_str(), &v6) != 1) return std::nullopt;
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    std::memcpy(address.bytes.data(), &v6.s6_addr[12], 4);
    return address;
  }
  address.v6 = true;
  std::memcpy(address.bytes.data(), v6.s6_addr, 16);
  return address;
}

std::optional<IpAddress> IpAddress::FromSockaddr(const sockaddr_storage& storage) {
  IpAddress address;
  if (storage.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(storage);
    std::memcpy(address.bytes.data(), &in.sin_addr, 4);
    return address;
  }
  if (storage.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(storage);
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      std::memcpy(address.bytes.data(), &in6.sin6_addr.s6_addr[12], 4);
      return address;
    }
    address.v6 = true;
    std::memcpy(address.bytes.data(), in6.sin6_addr.s6_addr, 16);
    return address;
  }
  return std::nullopt;
}

bool Cidr::Contains(const IpAddress& address) const {
  if (address.v6 != base.v6) return false;
  int full = prefix / 8;
  if (std::memcmp(address.bytes.data(), base.bytes.data(), static_cast<size_t>(full)) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (address.bytes[static_cast<size_t>(full)] & mask) == base.bytes[static_cast<size_t>(full)];
}

absl::StatusOr<Cidr> Cidr::Parse(std::string_view text) {
  std::string_view address_text = text;
  std::optional<int> prefix;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    address_text = text.substr(0, slash);
    std::string_view prefix_text = text.substr(slash + 1);
    int value = 0;
    if (prefix_text.empty() || prefix_text.size() > 3 ||
        prefix_text.find_first_not_of("0123456789") != std::string_view::npos ||
        !absl::SimpleAtoi(Sv(prefix_text), &value)) {
      return absl::InvalidArgumentError(absl::StrCat("'", Sv(text), "' is not a CIDR (bad prefix length)"));
    }
    prefix = value;
  }
  std::optional<IpAddress> address = IpAddress::Parse(address_text);
  if (!address.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("'", Sv(text), "' is not a CIDR (address/prefix)"));
  }
  // ::ffff:10.0.0.0/104 is stored as IPv4: its prefix shrinks by 96.
  bool mapped_text = !address->v6 && address_text.find(':') != std::string_view::npos;
  int max = address->v6 ? 128 : 32;
  int bits = prefix.value_or(mapped_text ? 128 : max);
  if (mapped_text) {
    if (bits < 96) {
      return absl::InvalidArgumentError(absl::StrCat("'", Sv(text), "': an IPv4-mapped prefix must be >= 96"));
    }
    bits -= 96;
  }
  if (bits < 0 || bits > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", Sv(text), "': prefix length out of range (0..", max, ")"));
  }
  Cidr cidr;
  cidr.base = *address;
  cidr.prefix = bits;
  for (int i = 0; i < 16; ++i) {
    int keep = bits - i * 8;
    if (keep >= 8) continue;
    cidr.base.bytes[static_cast<size_t>(i)] &= keep <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
  }
  return cidr;
}

namespace {

std::string CidrText(const Cidr& cidr) {
  char buffer[INET6_ADDRSTRLEN] = {};
  inet_ntop(cidr.base.v6 ? AF_INET6 : AF_INET, cidr.base.bytes.data(), buffer, sizeof(buffer));
  return absl::StrCat(buffer, "/", cidr.prefix);
}

bool ValidText(std::string_view value, size_t max) {
  if (value.empty() || value.size() > max) return false;
  for (char c : value) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  }
  return true;
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != ':') {
      return false;
    }
  }
  return true;
}

absl::Status ParsePorts(ForwardRule& rule, std::string_view text) {
  std::string_view low = text, high = text;
  if (size_t dash = text.find('-'); dash != std::string_view::npos) {
    low = text.substr(0, dash);
    high = text.substr(dash + 1);
  }
  auto number = [](std::string_view digits, uint32_t& out) {
    return !digits.empty() && digits.size() <= 5 &&
           digits.find_first_not_of("0123456789") == std::string_view::npos &&
           absl::SimpleAtoi(Sv(digits), &out) && out >= 1 && out <= 65535;
  };
  uint32_t a = 0, b = 0;
  if (!number(low, a) || !number(high, b) || a > b) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", Sv(text), "' is not a port or range (1..65535, \"8000-8100\")"));
  }
  rule.has_ports = true;
  rule.port_min = static_cast<uint16_t>(a);
  rule.port_max = static_cast<uint16_t>(b);
  return absl::OkStatus();
}

const std::vector<std::string_view> kRuleKeys = {"name",  "action", "hosts",      "cidrs",
                                                 "ports", "keys",   "roles",      "transports",
                                                 "direction"};

}  // namespace

const std::vector<std::string_view>& RuleKeys() { return kRuleKeys; }

bool IsRuleListKey(std::string_view key) {
  return key == "hosts" || key == "cidrs" || key == "keys" || key == "roles" || key == "transports";
}

absl::StatusOr<bool> ParseAction(std::string_view text) {
  std::string lower = absl::AsciiStrToLower(Sv(text));
  if (lower == "allow") return true;
  if (lower == "deny") return false;
  return absl::InvalidArgumentError(absl::StrCat("'", Sv(text), "' is not an action (allow or deny)"));
}

absl::Status SetRuleField(ForwardRule& rule, std::string_view key, std::string_view value) {
  static constexpr size_t kMaxList = 1024;
  auto too_many = [&](size_t size) {
    return size >= kMaxList ? absl::InvalidArgumentError(absl::StrCat("more than ", kMaxList, " entries"))
                            : absl::OkStatus();
  };
  if (key == "name") {
    if (!ValidName(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", Sv(value), "' is not a rule name (1-64 of A-Z a-z 0-9 - _ . :)"));
    }
    rule.name = std::string(value);
    return absl::OkStatus();
  }
  if (key == "action") {
    absl::StatusOr<bool> allow = ParseAction(value);
    if (!allow.ok()) return allow.status();
    rule.allow = *allow;
    return absl::OkStatus();
  }
  if (key == "hosts") {
    if (!ValidText(value, 255)) {
      return absl::InvalidArgumentError("a host pattern must be 1-255 printable characters");
    }
    if (absl::Status status = too_many(rule.hosts.size()); !status.ok()) return status;
    rule.hosts.push_back(absl::AsciiStrToLower(Sv(value)));  // a trailing dot is dropped at match time
    return absl::OkStatus();
  }
  if (key == "cidrs") {
    absl::StatusOr<Cidr> cidr = Cidr::Parse(value);
    if (!cidr.ok()) return cidr.status();
    if (absl::Status status = too_many(rule.cidrs.size()); !status.ok()) return status;
    rule.cidrs.push_back(*cidr);
    return absl::OkStatus();
  }
  if (key == "ports") return ParsePorts(rule, value);
  if (key == "keys") {
    if (value.substr(0, 7) != "SHA256:" || !ValidText(value, 128) || value.size() < 8) {
      return absl::InvalidArgumentError(absl::StrCat("'", Sv(value), "' is not a key fingerprint (SHA256:...)"));
    }
    if (absl::Status status = too_many(rule.keys.size()); !status.ok()) return status;
    rule.keys.emplace_back(value);
    return absl::OkStatus();
  }
  if (key == "roles") {
    if (!ValidText(value, 255)) return absl::InvalidArgumentError("a role must be 1-255 printable characters");
    if (absl::Status status = too_many(rule.roles.size()); !status.ok()) return status;
    rule.roles.emplace_back(value);
    return absl::OkStatus();
  }
  if (key == "transports") {
    std::string lower = absl::AsciiStrToLower(Sv(value));
    if (lower == "tcp") rule.transports |= kTcp;
    else if (lower == "tls") rule.transports |= kTls;
    else if (lower == "quic") rule.transports |= kQuic;
    else return absl::InvalidArgumentError(absl::StrCat("'", Sv(value), "' is not a transport (tcp, tls, quic)"));
    return absl::OkStatus();
  }
  if (key == "direction") {
    std::string lower = absl::AsciiStrToLower(Sv(value));
    if (lower == "local") rule.directions = kLocal;
    else if (lower == "remote") rule.directions = kRemote;
    else if (lower == "any") rule.directions = 0;
    else return absl::InvalidArgumentError(absl::StrCat("'", Sv(value), "' is not a direction (local, remote, any)"));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown rule key '", Sv(key), "'"));
}

std::vector<std::string> RuleFieldText(const ForwardRule& rule, std::string_view key) {
  if (key == "name") return {rule.name};
  if (key == "action") return {rule.allow ? "allow" : "deny"};
  if (key == "hosts") return rule.hosts;
  if (key == "cidrs") {
    std::vector<std::string> out;
    for (const Cidr& cidr : rule.cidrs) out.push_back(CidrText(cidr));
    return out;
  }
  if (key == "ports") {
    if (!rule.has_ports) return {};
    if (rule.port_min == rule.port_max) return {absl::StrCat(rule.port_min)};
    return {absl::StrCat(rule.port_min, "-", rule.port_max)};
  }
  if (key == "keys") return rule.keys;
  if (key == "roles") return rule.roles;
  if (key == "transports") {
    std::vector<std::string> out;
    if (rule.transports & kTcp) out.emplace_back("tcp");
    if (rule.transports & kTls) out.emplace_back("tls");
    if (rule.transports & kQuic) out.emplace_back("quic");
    return out;
  }
  if (key == "direction") {
    if (rule.directions == kLocal) return {"local"};
    if (rule.directions == kRemote) return {"remote"};
    return {};
  }
  return {};
}

absl::Status ValidateRules(const std::vector<ForwardRule>& rules) {
  static constexpr size_t kMaxRules = 10000;
  if (rules.size() > kMaxRules) {
    return absl::InvalidArgumentError(absl::StrCat("forwarding.rules: more than ", kMaxRules, " rules"));
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    if (rules[i].name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("forwarding.rules[", i, "].name: missing (every rule needs a name)"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (rules[j].name == rules[i].name) {
        return absl::InvalidArgumentError(absl::StrCat("forwarding.rules[", i, "].name: '", rules[i].name,
                                                       "' is already the name of rules[", j, "]"));
      }
    }
  }
  return absl::OkStatus();
}

std::optional<ForwardRule> SelfRule(std::string name, std::string_view host, uint16_t port) {
  if (port == 0) return std::nullopt;
  ForwardRule rule;
  rule.name = std::move(name);
  rule.allow = false;
  rule.directions = kLocal;
  rule.has_ports = true;
  rule.port_min = rule.port_max = port;
  auto add = [&](const IpAddress& address) {
    Cidr cidr;
    cidr.base = address;
    cidr.prefix = address.v6 ? 128 : 32;
    rule.cidrs.push_back(cidr);
  };
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "*") {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) == 0) {
      for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
        if (it->ifa_addr == nullptr) continue;
        if (it->ifa_addr->sa_family != AF_INET && it->ifa_addr->sa_family != AF_INET6) continue;
        sockaddr_storage storage{};
        std::memcpy(&storage, it->ifa_addr,
                    it->ifa_addr->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
        if (std::optional<IpAddress> address = IpAddress::FromSockaddr(storage)) add(*address);
      }
      freeifaddrs(list);
    }
    add(*IpAddress::Parse("127.0.0.1"));
    add(*IpAddress::Parse("::1"));
    add(*IpAddress::Parse("0.0.0.0"));
    add(*IpAddress::Parse("::"));
    return rule;
  }
  std::optional<IpAddress> address = IpAddress::Parse(host);
  if (!address.has_value()) return std::nullopt;
  add(*address);
  return rule;
}

std::vector<ForwardRule> BuiltinRules(const ForwardingPolicy& policy) {
  std::vector<ForwardRule> out;
  if (!policy.default_rules) return out;
  auto deny = [&](std::string name, std::vector<std::string_view> cidrs) {
    ForwardRule rule;
    rule.name = std::move(name);
    rule.allow = false;
    rule.directions = kLocal;  // -R binds loopback by default (GatewayPorts=no): not a risk
    for (std::string_view text : cidrs) rule.cidrs.push_back(*Cidr::Parse(text));
    out.push_back(std::move(rule));
  };
  deny("builtin:link-local", {"169.254.0.0/16", "fe80::/10"});
  if (!policy.allow_loopback) {
    // 0.0.0.0 and :: connect to the local host on Linux: they count as loopback.
    deny("builtin:loopback", {"127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"});
  }
  for (const ForwardRule& rule : policy.self_rules) out.push_back(rule);
  return out;
}

CompiledPolicy::AddressWords CompiledPolicy::AddressWords::From(const IpAddress& address) {
  AddressWords out;
  out.v6 = address.v6;
  const size_t length = address.v6 ? 16 : 4;
  for (size_t i = 0; i < length; ++i) {
    out.word[i / 8] |= uint64_t{address.bytes[i]} << (56 - 8 * (i % 8));
  }
  return out;
}

CompiledPolicy::MaskedCidr CompiledPolicy::MaskedCidr::From(const Cidr& cidr) {
  MaskedCidr out;
  out.v6 = cidr.base.v6;
  for (int bit = 0; bit < cidr.prefix; ++bit) out.mask[bit / 64] |= uint64_t{1} << (63 - bit % 64);
  AddressWords base = AddressWords::From(cidr.base);
  out.net[0] = base.word[0] & out.mask[0];
  out.net[1] = base.word[1] & out.mask[1];
  return out;
}

CompiledPolicy::HostPattern::HostPattern(std::string_view pattern) {
  if (pattern.size() > 1 && pattern.back() == '.') pattern.remove_suffix(1);  // "example.com."
  text = std::string(pattern);
  size_t first = text.find_first_of("*?");
  wildcard = first != std::string::npos;
  if (wildcard) {
    prefix = first;
    suffix = text.size() - text.find_last_of("*?") - 1;
  }
}

bool CompiledPolicy::HostPattern::Matches(std::string_view host) const {
  if (!wildcard) return absl::EqualsIgnoreCase(Sv(text), Sv(host));
  if (host.size() < prefix + suffix) return false;
  std::string_view pattern = text;
  if (!absl::EqualsIgnoreCase(Sv(host.substr(0, prefix)), Sv(pattern.substr(0, prefix))) ||
      !absl::EqualsIgnoreCase(Sv(host.substr(host.size() - suffix)),
                              Sv(pattern.substr(pattern.size() - suffix)))) {
    return false;
  }
  return auth::WildcardMatch(pattern, host);
}

CompiledPolicy::CompiledPolicy(ForwardingPolicy policy) : source_(std::move(policy)) {
  rules_ = source_.rules;
  for (ForwardRule& rule : BuiltinRules(source_)) rules_.push_back(std::move(rule));
  heads_.reserve(rules_.size());
  for (const ForwardRule& rule : rules_) {
    Head head{.directions = rule.directions, .transports = rule.transports,
              .keys_or_roles = !rule.keys.empty() || !rule.roles.empty(),
              .has_cidrs = !rule.cidrs.empty(), .single_cidr = rule.cidrs.size() == 1,
              .port_min = rule.has_ports ? rule.port_min : uint16_t{0},
              .port_max = rule.has_ports ? rule.port_max : uint16_t{65535},
              .first_host = static_cast<uint32_t>(host_patterns_.size()),
              .host_count = static_cast<uint32_t>(rule.hosts.size())};
    if (head.single_cidr) head.cidr = MaskedCidr::From(rule.cidrs.front());
    for (const std::string& pattern : rule.hosts) host_patterns_.emplace_back(pattern);
    heads_.push_back(head);
  }
}

namespace {

bool MatchesHead(const CompiledPolicy::Head& head, const ForwardRequest& request) {
  return (head.directions == 0 || (head.directions & request.direction)) &&
         (head.transports == 0 || (head.transports & request.transport)) &&
         request.port >= head.port_min && request.port <= head.port_max;
}

// Keys and roles (after MatchesHead).
bool MatchesKeyOrRole(const ForwardRule& rule, const ForwardRequest& request) {
  if (!rule.keys.empty()) {
    bool found = false;
    for (const std::string& key : rule.keys) found = found || key == request.key_fingerprint;
    if (!found) return false;
  }
  if (!rule.roles.empty()) {
    bool found = false;
    if (request.roles != nullptr) {
      for (const std::string& role : rule.roles) {
        for (const std::string& have : *request.roles) found = found || role == have;
      }
    }
    if (!found) return false;
  }
  return true;
}

// Everything but the cidrs: the head, keys, roles and host globs. `host` has no trailing '.'.
bool MatchesRequest(const CompiledPolicy& policy, size_t i, const ForwardRequest& request,
                    std::string_view host) {
  const CompiledPolicy::Head& head = policy.heads()[i];
  if (!MatchesHead(head, request)) return false;
  if (head.keys_or_roles && !MatchesKeyOrRole(policy.rules()[i], request)) return false;
  if (head.host_count == 0) return true;
  const CompiledPolicy::HostPattern* patterns = policy.host_patterns().data() + head.first_host;
  for (uint32_t k = 0; k < head.host_count; ++k) {
    if (patterns[k].Matches(host)) return true;
  }
  return false;
}

bool MatchesAddress(const CompiledPolicy::Head& head, const ForwardRule& rule,
                    const CompiledPolicy::AddressWords& words, const IpAddress& address) {
  if (!head.has_cidrs) return true;
  if (head.single_cidr) return head.cidr.Contains(words);
  for (const Cidr& cidr : rule.cidrs) {
    if (cidr.Contains(address)) return true;
  }
  return false;
}

std::string_view WithoutTrailingDot(std::string_view host) {
  if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
  return host;
}

}  // namespace

uint8_t TransportFromName(std::string_view name) {
  if (name == "tls") return kTls;
  if (name == "quic") return kQuic;
  return kTcp;
}

Decision DecideAddress(const CompiledPolicy& policy, const ForwardRequest& request,
                       const IpAddress& address) {
  const std::vector<ForwardRule>& rules = policy.rules();
  const std::vector<CompiledPolicy::Head>& heads = policy.heads();
  const std::string_view host = WithoutTrailingDot(request.host);
  const CompiledPolicy::AddressWords words = CompiledPolicy::AddressWords::From(address);
  for (size_t i = 0; i < rules.size(); ++i) {
    if (!MatchesRequest(policy, i, request, host)) continue;
    if (!MatchesAddress(heads[i], rules[i], words, address)) continue;
    return Decision{.allow = rules[i].allow, .rule = &rules[i]};
  }
  return Decision{.allow = policy.default_allow()};
}

Decision DecideByName(const CompiledPolicy& policy, const ForwardRequest& request) {
  if (std::optional<IpAddress> literal = IpAddress::Parse(request.host); literal.has_value()) {
    return DecideAddress(policy, request, *literal);
  }
  const std::vector<ForwardRule>& rules = policy.rules();
  const std::vector<CompiledPolicy::Head>& heads = policy.heads();
  const std::string_view host = WithoutTrailingDot(request.host);
  for (size_t i = 0; i < rules.size(); ++i) {
    if (!MatchesRequest(policy, i, request, host)) continue;
    if (heads[i].has_cidrs) return Decision{.allow = true, .needs_address = true};
    return Decision{.allow = rules[i].allow, .rule = &rules[i]};
  }
  return Decision{.allow = policy.default_allow()};
}

}  // namespace alknet::fwd
