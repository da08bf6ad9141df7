// The Policy service's TestForward: which forwarding rule decides a key's channel to host:port,
// in the name phase and for each address the agent resolves the host to (ADR 0014).
#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/admin/admin_core.h"
#include "agent/admin/api_errors.h"
#include "server/auth/fingerprint.h"
#include "server/common/strings.h"
#include "server/engine/server_engine.h"
#include "server/forward/forward_policy.h"

namespace alknet::admin {
namespace {

v1::ForwardDecision ToProto(const fwd::Decision& decision) {
  v1::ForwardDecision out;
  out.set_allow(decision.allow);
  out.set_rule(std::string(decision.RuleName()));
  if (decision.rule == nullptr) {
    out.set_reason(absl::StrCat("no rule matches: the default action (",
                                decision.allow ? "allow" : "deny", ")"));
  } else {
    out.set_reason(absl::StrCat("rule '", decision.rule->name, "' matches first: ",
                                decision.allow ? "allow" : "deny"));
  }
  return out;
}

std::string AddressText(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text, sizeof(text));
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text, sizeof(text));
  }
  return text;
}

}  // namespace

fwd::ForwardingPolicy AdminCore::forwarding() const {
  absl::MutexLock lock(&mu_);
  return config_.forwarding;
}

absl::StatusOr<v1::TestForwardResponse> AdminCore::TestForward(const v1::TestForwardRequest& request) {
  if (request.host().empty() || request.host().size() > 255) return FieldError("host", "required (1-255 bytes)");
  if (request.port() == 0 || request.port() > 65535) return FieldError("port", "must be 1..65535");
  fwd::ForwardQuery query{.host = request.host(), .port = static_cast<uint16_t>(request.port()),
                          .key_fingerprint = request.key_fingerprint()};
  if (request.direction().empty() || request.direction() == "local") {
    query.direction = fwd::kLocal;
  } else if (request.direction() == "remote") {
    query.direction = fwd::kRemote;
  } else {
    return FieldError("direction", absl::StrCat("'", Shown(request.direction()), "' is not local or remote"));
  }
  if (request.transport().empty() || request.transport() == "tcp" || request.transport() == "tls" ||
      request.transport() == "quic") {
    query.transport = fwd::TransportFromName(request.transport());
  } else {
    return FieldError("transport", absl::StrCat("'", Shown(request.transport()), "' is not tcp, tls or quic"));
  }
  for (const std::string& role : request.roles()) query.roles.push_back(role);

  std::shared_ptr<const fwd::CompiledPolicy> policy;
  std::optional<auth::AuthorizedKey> key;
  {
    absl::MutexLock lock(&mu_);
    if (engine_ != nullptr) policy = engine_->forwarding_in_force();
    if (policy == nullptr) policy = std::make_shared<const fwd::CompiledPolicy>(config_.forwarding);
    auto find = [&](const auth::AuthorizedKey& candidate) {
      if (!key && auth::Sha256Fingerprint(candidate.blob) == request.key_fingerprint()) key = candidate;
    };
    for (const ApiKey& entry : api_keys_) find(entry.key);
    for (const auth::AuthorizedKey& entry : file_keys_) find(entry);
  }
  v1::TestForwardResponse response;
  if (key.has_value()) {
    // The key's roles as a session of it would have them, and its own options first.
    for (absl::string_view word : absl::StrSplit(key->comment, ' ', absl::SkipEmpty())) {
      if (absl::StartsWith(word, "role:") && word.size() > 5) query.roles.emplace_back(word.substr(5));
    }
    if (key->admin_role) query.roles.emplace_back("admin");
    if (query.direction == fwd::kLocal) {
      ForwardVerdict verdict = CheckDirectForward(key->options, query.host, query.port);
      if (verdict != ForwardVerdict::kAllowed) {
        v1::ForwardDecision& by_name = *response.mutable_by_name();
        by_name.set_allow(false);
        by_name.set_rule("permitopen");
        by_name.set_reason(absl::StrCat("the key's own options refuse it: ", Sv(ForwardVerdictName(verdict))));
        return response;
      }
    }
  }
  fwd::Decision by_name = fwd::DecideByName(*policy, query.View());
  *response.mutable_by_name() = ToProto(by_name);
  if (!by_name.needs_address) {
    response.set_allowed(by_name.allow);
    return response;
  }
  response.set_needs_address(true);
  response.mutable_by_name()->set_reason("a rule with cidrs matches first: decided per resolved address");
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  addrinfo* found = nullptr;
  int rc = getaddrinfo(query.host.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    response.set_resolve_error(gai_strerror(rc));
    return response;
  }
  int count = 0;
  for (addrinfo* it = found; it != nullptr && count < 32; it = it->ai_next, ++count) {
    if (it->ai_family != AF_INET && it->ai_family != AF_INET6) continue;
    sockaddr_storage storage{};
    std::memcpy(&storage, it->ai_addr, it->ai_addrlen);
    std::optional<fwd::IpAddress> address = fwd::IpAddress::FromSockaddr(storage);
    if (!address) continue;
    fwd::Decision decision = fwd::DecideAddress(*policy, query.View(), *address);
    v1::TestForwardResponse::AddressDecision& row = *response.add_addresses();
    row.set_address(AddressText(it->ai_addr));
    *row.mutable_decision() = ToProto(decision);
    if (decision.allow) response.set_allowed(true);
  }
  freeaddrinfo(found);
  return response;
}

}  // namespace alknet::admin
