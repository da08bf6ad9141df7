// The forwarding policy: ordered rules (first match wins), a default action, built-in denies,
// their text parsers and the two-phase evaluation (by name before resolving, per address after).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace alknet::fwd {

// Bit masks: a rule's `directions`/`transports` of 0 match anything.
enum Direction : uint8_t { kLocal = 1, kRemote = 2 };          // -L/-D/-W, -R
enum Transport : uint8_t { kTcp = 1, kTls = 2, kQuic = 4 };

// An IPv4 or IPv6 address; IPv4-mapped IPv6 (::ffff:a.b.c.d) is stored as IPv4 so a mapped
// address cannot slip past an IPv4 rule.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4 in the first 4
  static std::optional<IpAddress> Parse(std::string_view text);
  static std::optional<IpAddress> FromSockaddr(const sockaddr_storage& storage);
  bool operator==(const IpAddress&) const = default;
};

struct Cidr {
  IpAddress base;  // host bits cleared
  int prefix = 0;
  bool Contains(const IpAddress& address) const;
  static absl::StatusOr<Cidr> Parse(std::string_view text);  // "10.0.0.0/8", "::1", "1.2.3.4"
  bool operator==(const Cidr&) const = default;
};

struct ForwardRule {
  std::string name;                 // for logs and metrics; [A-Za-z0-9_.:-]{1,64}
  bool allow = false;
  std::vector<std::string> hosts;   // globs ('*', '?'), lower case, on the name as requested
  std::vector<Cidr> cidrs;          // on the address actually connected to (or bound, for -R)
  bool has_ports = false;
  uint16_t port_min = 0, port_max = 65535;
  std::vector<std::string> keys;    // "SHA256:..." (exact, case-sensitive)
  std::vector<std::string> roles;   // see docs/configuration.md: certificate principals, role:NAME
  uint8_t transports = 0;           // Transport bits; 0: any
  uint8_t directions = 0;           // Direction bits; 0: any
  bool operator==(const ForwardRule&) const = default;
};

// The built-in denies (unless `default_rules: false`), evaluated after the operator's rules.
struct ForwardingPolicy {
  bool default_allow = true;
  bool default_rules = true;   // the built-in denies below
  bool allow_loopback = false; // drops the built-in loopback deny (tests, local demos)
  std::vector<ForwardRule> rules;
  // Filled by the agent: its own admin/metrics listeners (cidr + port), denied by default.
  std::vector<ForwardRule> self_rules;
  bool operator==(const ForwardingPolicy&) const = default;
};

// Operator rule keys, the YAML keys under `forwarding.rules[i]` and the admin API's fields.
// List keys append one element per call; errors name the value, not the field.
absl::Status SetRuleField(ForwardRule& rule, std::string_view key, std::string_view value);
bool IsRuleListKey(std::string_view key);
// The text form of a rule's field, one string per element (empty: unset).
std::vector<std::string> RuleFieldText(const ForwardRule& rule, std::string_view key);
const std::vector<std::string_view>& RuleKeys();  // in documentation order
// name and action present, names unique. Errors read "forwarding.rules[2].name: ...".
absl::Status ValidateRules(const std::vector<ForwardRule>& rules);
absl::StatusOr<bool> ParseAction(std::string_view text);  // allow -> true, deny -> false

// A built-in deny of one of the agent's own listeners (admin API over TCP, metrics) at host:port,
// local direction. A numeric host gives that address; a wildcard (0.0.0.0, ::, empty) every
// local interface address, read once with getifaddrs (interfaces added later are not covered).
// nullopt for port 0 or a name.
std::optional<ForwardRule> SelfRule(std::string name, std::string_view host, uint16_t port);

// The built-in rules in force for `policy` (link-local, loopback/unspecified, self).
std::vector<ForwardRule> BuiltinRules(const ForwardingPolicy& policy);

// The evaluation list: operator rules, then built-ins. Immutable once built; shared by sessions.
class CompiledPolicy {
 public:
  explicit CompiledPolicy(ForwardingPolicy policy);
  const ForwardingPolicy& source() const { return source_; }
  const std::vector<ForwardRule>& rules() const { return rules_; }
  bool default_allow() const { return source_.default_allow; }

  // An address as two big-endian words, so a cidr test is two masked compares.
  struct AddressWords {
    bool v6 = false;
    uint64_t word[2] = {0, 0};
    static AddressWords From(const IpAddress& address);
  };
  // A cidr as masked words (a v4 address fills the top 32 bits of word[0]).
  struct MaskedCidr {
    bool v6 = false;
    uint64_t net[2] = {0, 0};
    uint64_t mask[2] = {0, 0};
    static MaskedCidr From(const Cidr& cidr);
    bool Contains(const AddressWords& address) const {
      return address.v6 == v6 && (address.word[0] & mask[0]) == net[0] &&
             (address.word[1] & mask[1]) == net[1];
    }
  };
  // A host glob with its literal prefix and suffix (before the first and after the last
  // wildcard), so most names are turned away by two short compares before the glob runs.
  struct HostPattern {
    std::string text;  // lower case, without a trailing '.'
    size_t prefix = 0;
    size_t suffix = 0;
    bool wildcard = false;
    explicit HostPattern(std::string_view pattern);
    bool Matches(std::string_view host) const;  // host without a trailing '.'
  };

  // The cheap criteria of each rule, contiguous, checked before the rule itself is touched:
  // a rule with one cidr (the usual case) keeps it here, masked; host globs are precompiled.
  struct Head {
    uint8_t directions = 0;
    uint8_t transports = 0;
    bool keys_or_roles = false;  // keys or roles to check on the rule
    bool has_cidrs = false;
    bool single_cidr = false;    // `cidr` is the rule's only one
    uint16_t port_min = 0, port_max = 65535;
    uint32_t first_host = 0, host_count = 0;  // in host_patterns()
    MaskedCidr cidr;
  };
  const std::vector<Head>& heads() const { return heads_; }
  const std::vector<HostPattern>& host_patterns() const { return host_patterns_; }

 private:
  ForwardingPolicy source_;
  std::vector<ForwardRule> rules_;
  std::vector<Head> heads_;
  std::vector<HostPattern> host_patterns_;
};

struct ForwardRequest {
  std::string_view host;  // as requested (an IP literal or a name); -R: the bind address
  uint16_t port = 0;
  std::string_view key_fingerprint;
  const std::vector<std::string>* roles = nullptr;
  uint8_t transport = kTcp;
  uint8_t direction = kLocal;
};

// A ForwardRequest that owns its strings (kept by an in-flight connect for the address phase).
struct ForwardQuery {
  std::string host;
  uint16_t port = 0;
  std::string key_fingerprint;
  std::vector<std::string> roles;
  uint8_t transport = kTcp;
  uint8_t direction = kLocal;
  ForwardRequest View() const {
    return ForwardRequest{.host = host, .port = port, .key_fingerprint = key_fingerprint,
                          .roles = &roles, .transport = transport, .direction = direction};
  }
};
uint8_t TransportFromName(std::string_view name);  // "tcp", "tls", "quic"; unknown: tcp

struct Decision {
  bool allow = true;
  const ForwardRule* rule = nullptr;  // nullptr: the default action
  bool needs_address = false;         // name phase only: decide per resolved address
  std::string_view RuleName() const { return rule != nullptr ? std::string_view(rule->name) : "default"; }
};

// Phase 1, before resolving. A numeric host is decided completely (its address is known). For
// a name, rules are walked in order: a rule whose non-address criteria do not match is
// skipped; the first matching rule without cidrs decides; a matching rule with cidrs makes the
// result depend on the address (needs_address), unless every later outcome is the same action.
Decision DecideByName(const CompiledPolicy& policy, const ForwardRequest& request);
// Phase 2, per address the connector is about to connect to: the full first-match evaluation
// with the requested name for host patterns and `address` for cidrs.
Decision DecideAddress(const CompiledPolicy& policy, const ForwardRequest& request,
                       const IpAddress& address);

// The policy in force, replaced whole by config reload or the admin API; read per channel.
class ForwardingPolicyStore {
 public:
  explicit ForwardingPolicyStore(ForwardingPolicy policy = {})
      : current_(std::make_shared<const CompiledPolicy>(std::move(policy))) {}
  std::shared_ptr<const CompiledPolicy> Current() const {
    std::lock_guard<std::mutex> lock(mu_);
    return current_;
  }
  void Replace(ForwardingPolicy policy) {
    auto next = std::make_shared<const CompiledPolicy>(std::move(policy));
    std::lock_guard<std::mutex> lock(mu_);
    current_ = std::move(next);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const CompiledPolicy> current_;
};

}  // namespace alknet::fwd
