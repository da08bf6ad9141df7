// The admin API's Forwards service: the client role's -D/-L/-R forwards, stored in the state
// file and run by the ClientEngine. Same all-or-nothing rule as keys: nothing stays applied
// unless it was also written to disk.
#include <algorithm>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/admin/admin_core.h"
#include "agent/admin/api_errors.h"
#include "server/common/net_address.h"
#include "server/common/strings.h"
#include "server/config/upstream_schema.h"

namespace alknet::admin {
namespace {

constexpr size_t kMaxForwardIdLength = 64;
constexpr int kMaxForwards = 1024;
// Forward.replica: every replica runs it.
constexpr std::string_view kEveryReplica = "*";

bool ValidForwardId(std::string_view id) {
  if (id.empty() || id.size() > kMaxForwardIdLength) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

std::string NewForwardId() {
  std::random_device random;
  return absl::StrFormat("fwd-%08x", random());
}

absl::StatusOr<HostPort> ParseAddress(std::string_view field, const std::string& text,
                                      bool allow_zero) {
  absl::StatusOr<HostPort> address = ParseHostPort(text, allow_zero);
  if (!address.ok()) {
    return FieldError(field, absl::StrCat("'", Shown(text), "': ", address.status().message()));
  }
  return address;
}

// The upstream name and the engine's definition of a v1::Forward (validation only).
absl::StatusOr<std::pair<std::string, ForwardDef>> ParseForward(const v1::Forward& forward) {
  ForwardDef def;
  switch (forward.kind()) {
    case v1::FORWARD_KIND_DYNAMIC: def.kind = ForwardKind::kDynamic; break;
    case v1::FORWARD_KIND_LOCAL: def.kind = ForwardKind::kLocal; break;
    case v1::FORWARD_KIND_REMOTE: def.kind = ForwardKind::kRemote; break;
    default: return FieldError("forward.kind", "must be DYNAMIC, LOCAL or REMOTE");
  }
  if (!forward.id().empty() && !ValidForwardId(forward.id())) {
    return FieldError("forward.id", absl::StrCat("'", Shown(forward.id()),
                                                 "' is not 1-64 characters of [A-Za-z0-9._-]"));
  }
  def.id = forward.id();
  if (forward.upstream().empty()) return FieldError("forward.upstream", "is required");
  if (forward.listen().empty()) return FieldError("forward.listen", "is required (host:port)");
  absl::StatusOr<HostPort> listen = ParseAddress("forward.listen", forward.listen(), true);
  if (!listen.ok()) return listen.status();
  def.spec.bind_host = listen->host;
  def.spec.bind_port = listen->port;
  if (def.kind == ForwardKind::kDynamic) {
    if (!forward.target().empty()) {
      return FieldError("forward.target", "must be empty for DYNAMIC (SOCKS clients name it)");
    }
  } else {
    if (forward.target().empty()) return FieldError("forward.target", "is required (host:port)");
    absl::StatusOr<HostPort> target = ParseAddress("forward.target", forward.target(), false);
    if (!target.ok()) return target.status();
    def.spec.host = target->host;
    def.spec.host_port = target->port;
    if (def.kind == ForwardKind::kLocal) {
      if (absl::Status status = config::CheckLocalForwardTarget(def.spec); !status.ok()) {
        return FieldError("forward.target", StdSv(status.message()));
      }
    }
  }
  return std::make_pair(forward.upstream(), std::move(def));
}

v1::ForwardKind KindToProto(ForwardKind kind) {
  switch (kind) {
    case ForwardKind::kDynamic: return v1::FORWARD_KIND_DYNAMIC;
    case ForwardKind::kLocal: return v1::FORWARD_KIND_LOCAL;
    case ForwardKind::kRemote: return v1::FORWARD_KIND_REMOTE;
  }
  return v1::FORWARD_KIND_UNSPECIFIED;
}

v1::ForwardInfo InfoOf(const ForwardSnapshot& snapshot) {
  v1::ForwardInfo info;
  v1::Forward& forward = *info.mutable_forward();
  const config::ForwardSpec& spec = snapshot.def.spec;
  forward.set_id(snapshot.def.id);
  forward.set_kind(KindToProto(snapshot.def.kind));
  forward.set_upstream(snapshot.upstream);
  forward.set_listen(HostPort{spec.bind_host, spec.bind_port}.ToString());
  if (snapshot.def.kind != ForwardKind::kDynamic) {
    forward.set_target(HostPort{spec.host, spec.host_port}.ToString());
  }
  info.set_state(snapshot.status.state);
  info.set_connections(snapshot.status.connections);
  info.set_bytes_in(snapshot.status.bytes.to_target);
  info.set_bytes_out(snapshot.status.bytes.from_target);
  info.set_last_error(snapshot.status.last_error);
  info.set_source(snapshot.def.from_config ? "config" : "api");
  if (snapshot.bound.port != 0) info.set_bound(snapshot.bound.ToString());
  return info;
}

// A stored forward that another replica runs, as this one lists it.
v1::ForwardInfo ElsewhereInfo(const v1::Forward& stored) {
  v1::ForwardInfo info;
  *info.mutable_forward() = stored;
  info.set_state(absl::StrCat("on replica ", stored.replica()));
  info.set_source("api");
  return info;
}

// ClientEngine answers NOT_FOUND for an unknown upstream: for the API that is a bad field.
absl::Status UpstreamFieldError(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kNotFound) {
    return absl::InvalidArgumentError(absl::StrCat("forward.upstream: ", status.message()));
  }
  return status;
}

}  // namespace

bool AdminCore::RunsHere(const v1::Forward& forward) const {
  return forward.replica().empty() || forward.replica() == kEveryReplica ||
         forward.replica() == replica_id_;
}

void AdminCore::StartStoredForward(const v1::Forward& stored) {
  auto parsed = ParseForward(stored);
  absl::Status status = parsed.ok() ? client_->AddForward(parsed->first, parsed->second,
                                                          /*keep_if_unbound=*/true)
                                          .status()
                                    : parsed.status();
  if (!status.ok()) {
    inactive_forwards_[stored.id()] = std::string(UpstreamFieldError(status).message());
    logger_.Warn("admin", "stored forward not started",
                 {{"forward", stored.id()}, {"error", std::string(status.message())}});
  }
}

void AdminCore::AttachClient(ClientEngine* client) {
  absl::MutexLock lock(&mu_);
  client_ = client;
  inactive_forwards_.clear();
  if (client_ == nullptr) return;
  for (const v1::Forward& stored : state_.forwards()) {
    if (RunsHere(stored)) StartStoredForward(stored);
  }
}

void AdminCore::SyncForwards(const state::v1::State& before) {
  if (client_ == nullptr) return;
  absl::flat_hash_map<std::string, const v1::Forward*> ran;
  for (const v1::Forward& forward : before.forwards()) {
    if (RunsHere(forward)) ran[forward.id()] = &forward;
  }
  absl::flat_hash_map<std::string, const v1::Forward*> runs;
  for (const v1::Forward& forward : state_.forwards()) {
    if (RunsHere(forward)) runs[forward.id()] = &forward;
  }
  for (const auto& [id, forward] : ran) {
    auto now = runs.find(id);
    if (now != runs.end() && now->second->SerializeAsString() == forward->SerializeAsString()) continue;
    (void)client_->RemoveForward(id);
    inactive_forwards_.erase(id);
    logger_.Info("admin", "forward stopped (removed on another replica)", {{"forward", id}});
  }
  for (const v1::Forward& forward : state_.forwards()) {
    auto had = ran.find(forward.id());
    if (!RunsHere(forward) ||
        (had != ran.end() && had->second->SerializeAsString() == forward.SerializeAsString())) {
      continue;
    }
    StartStoredForward(forward);
    logger_.Info("admin", "forward started (added on another replica)", {{"forward", forward.id()}});
  }
}

absl::StatusOr<v1::AddForwardResponse> AdminCore::AddForward(const v1::AddForwardRequest& request) {
  if (!request.has_forward()) return FieldError("forward", "is required");
  auto parsed = ParseForward(request.forward());
  if (!parsed.ok()) return parsed.status();
  auto& [upstream, def] = *parsed;
  v1::Forward stored = request.forward();
  absl::MutexLock lock(&mu_);
  if (!stored.replica().empty()) {
    if (!backend_->shared()) {
      return absl::FailedPreconditionError(
          absl::StrCat("forward.replica: ", state::NoFleetError().message()));
    }
    if (stored.replica() == kEveryReplica && def.kind == ForwardKind::kRemote) {
      return FieldError("forward.replica",
                        "'*' is for DYNAMIC and LOCAL forwards (every replica's REMOTE forward would "
                        "ask the upstream server for one port)");
    }
    if (stored.replica() != kEveryReplica && !ValidForwardId(stored.replica())) {
      return FieldError("forward.replica", absl::StrCat("'", Shown(stored.replica()),
                                                        "' is not '*' or a replica id"));
    }
  } else if (backend_->shared()) {
    stored.set_replica(replica_id_);  // it belongs to the replica it was added on
  }
  const bool runs_here = RunsHere(stored);
  if (runs_here && client_ == nullptr) {
    return absl::FailedPreconditionError(
        "no client role is running: declare an upstream under `upstreams:` in the configuration");
  }
  if (state_.forwards_size() >= kMaxForwards) {
    return absl::ResourceExhaustedError(absl::StrCat("at most ", kMaxForwards, " forwards"));
  }
  auto taken = [&](const std::string& id) {
    return std::any_of(state_.forwards().begin(), state_.forwards().end(),
                       [&](const v1::Forward& f) { return f.id() == id; });
  };
  if (def.id.empty()) {
    do def.id = NewForwardId();
    while (taken(def.id));
  } else if (taken(def.id)) {
    return absl::AlreadyExistsError(absl::StrCat("forward.id: a forward with id '", def.id, "' exists"));
  }
  stored.set_id(def.id);
  v1::AddForwardResponse response;
  if (runs_here) {
    absl::StatusOr<ForwardSnapshot> started = client_->AddForward(upstream, def);
    if (!started.ok()) return UpstreamFieldError(started.status());
    *response.mutable_forward() = InfoOf(*started);
    response.mutable_forward()->mutable_forward()->set_replica(stored.replica());
  } else {
    *response.mutable_forward() = ElsewhereInfo(stored);
  }
  state::v1::State next = state_;
  *next.add_forwards() = stored;
  if (absl::Status written = Commit(std::move(next)); !written.ok()) {
    if (runs_here) (void)client_->RemoveForward(def.id);  // nothing stays applied that is not stored
    return written;
  }
  logger_.Info("admin", "forward added",
               {{"forward", def.id}, {"kind", std::string(ForwardKindName(def.kind))},
                {"upstream", upstream}, {"replica", stored.replica()}});
  return response;
}

v1::ListForwardsResponse AdminCore::ListForwards() {
  v1::ListForwardsResponse response;
  absl::MutexLock lock(&mu_);
  std::vector<ForwardSnapshot> running;
  if (client_ != nullptr) {
    if (auto listed = client_->ListForwards(); listed.ok()) running = *std::move(listed);
  }
  absl::flat_hash_map<std::string, std::string> replica_of;
  for (const v1::Forward& stored : state_.forwards()) replica_of[stored.id()] = stored.replica();
  for (const ForwardSnapshot& snapshot : running) {
    v1::ForwardInfo& info = *response.add_forwards() = InfoOf(snapshot);
    if (auto stored = replica_of.find(snapshot.def.id); stored != replica_of.end()) {
      info.mutable_forward()->set_replica(stored->second);
    }
  }
  for (const v1::Forward& stored : state_.forwards()) {
    bool runs = std::any_of(running.begin(), running.end(),
                            [&](const ForwardSnapshot& s) { return s.def.id == stored.id(); });
    if (runs) continue;
    if (!RunsHere(stored)) {
      *response.add_forwards() = ElsewhereInfo(stored);
      continue;
    }
    v1::ForwardInfo& info = *response.add_forwards();
    *info.mutable_forward() = stored;
    auto reason = inactive_forwards_.find(stored.id());
    info.set_state(absl::StrCat("inactive: ", reason != inactive_forwards_.end()
                                                   ? reason->second
                                                   : std::string("no client role is running")));
    info.set_source("api");
  }
  return response;
}

absl::StatusOr<v1::RemoveForwardResponse> AdminCore::RemoveForward(
    const v1::RemoveForwardRequest& request) {
  const std::string& id = request.id();
  if (id.empty()) return FieldError("id", "is required");
  absl::MutexLock lock(&mu_);
  auto& forwards = state_.forwards();
  auto it = std::find_if(forwards.begin(), forwards.end(),
                         [&](const v1::Forward& f) { return f.id() == id; });
  if (it == forwards.end()) {
    if (client_ != nullptr) {
      auto listed = client_->ListForwards();
      if (listed.ok() && std::any_of(listed->begin(), listed->end(), [&](const ForwardSnapshot& s) {
            return s.def.id == id && s.def.from_config;
          })) {
        return absl::FailedPreconditionError(absl::StrCat(
            "id: forward '", id, "' comes from the configuration file; change it there"));
      }
    }
    return absl::NotFoundError(absl::StrCat("id: no forward '", Shown(id), "'"));
  }
  state::v1::State next = state_;
  next.mutable_forwards()->DeleteSubrange(static_cast<int>(it - forwards.begin()), 1);
  if (absl::Status written = Commit(std::move(next)); !written.ok()) return written;
  if (client_ != nullptr) (void)client_->RemoveForward(id);
  inactive_forwards_.erase(id);
  logger_.Info("admin", "forward removed", {{"forward", id}});
  return v1::RemoveForwardResponse();
}

}  // namespace alknet::admin
