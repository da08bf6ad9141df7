// Microbenchmark (Google Benchmark): the forwarding policy's cost per channel-open decision
// with 1,000 rules (issue 15 aims at < 2 us), name phase and address phase, worst case (no
// rule matches: every rule is looked at) and a match in the middle.
#include <benchmark/benchmark.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "server/forward/forwarding_rules.h"

namespace {

using namespace alknet::fwd;

// 1,000 rules as an operator might write them: a mix of cidr denies (one /24 each), host
// patterns with a port, and key-scoped allows; none matches the benchmark's miss request.
CompiledPolicy ThousandRules() {
  ForwardingPolicy policy;
  for (int i = 0; i < 1000; ++i) {
    ForwardRule rule;
    (void)SetRuleField(rule, "name", absl::StrCat("r", i));
    switch (i % 3) {
      case 0:
        (void)SetRuleField(rule, "action", "deny");
        (void)SetRuleField(rule, "cidrs", absl::StrCat("10.", i / 256, ".", i % 256, ".0/24"));
        break;
      case 1:
        (void)SetRuleField(rule, "action", "allow");
        (void)SetRuleField(rule, "hosts", absl::StrCat("*.svc", i, ".example.com"));
        (void)SetRuleField(rule, "ports", "443");
        break;
      default:
        (void)SetRuleField(rule, "action", "allow");
        (void)SetRuleField(rule, "keys", absl::StrCat("SHA256:key", i));
        (void)SetRuleField(rule, "ports", "8000-8100");
        break;
    }
    policy.rules.push_back(std::move(rule));
  }
  return CompiledPolicy(std::move(policy));
}

const CompiledPolicy& Policy() {
  static const CompiledPolicy policy = ThousandRules();
  return policy;
}

ForwardRequest Req(std::string_view host, uint16_t port) {
  return ForwardRequest{.host = host, .port = port, .key_fingerprint = "SHA256:someone-else",
                        .transport = kTcp, .direction = kLocal};
}

// An IP literal nothing matches (decided in the name phase: all 1,000 rules + built-ins).
void BM_LiteralMiss(benchmark::State& state) {
  ForwardRequest request = Req("203.0.113.9", 22);
  for (auto _ : state) benchmark::DoNotOptimize(DecideByName(Policy(), request));
}
BENCHMARK(BM_LiteralMiss);

// A name: the name phase stops at the first cidr rule; then one address phase per address.
void BM_NameThenOneAddressMiss(benchmark::State& state) {
  ForwardRequest request = Req("api.partner.example.net", 22);
  IpAddress address = *IpAddress::Parse("203.0.113.9");
  for (auto _ : state) {
    benchmark::DoNotOptimize(DecideByName(Policy(), request));
    benchmark::DoNotOptimize(DecideAddress(Policy(), request, address));
  }
}
BENCHMARK(BM_NameThenOneAddressMiss);

// A host-pattern match half way down the list.
void BM_NameMatchAtRule500(benchmark::State& state) {
  ForwardRequest request = Req("www.svc499.example.com", 443);
  IpAddress address = *IpAddress::Parse("203.0.113.9");
  for (auto _ : state) benchmark::DoNotOptimize(DecideAddress(Policy(), request, address));
}
BENCHMARK(BM_NameMatchAtRule500);

}  // namespace

BENCHMARK_MAIN();
