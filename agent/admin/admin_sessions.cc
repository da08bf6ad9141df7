// The Sessions service: the engine's sessions listed and killed (by id or by key), here or, with
// a fleet (state.store etcd), on other replicas through the state backend.
#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/admin/admin_core.h"
#include "agent/admin/admin_internal.h"
#include "agent/admin/api_errors.h"

namespace alknet::admin {
namespace {

// How long a kill waits for another replica's answer.
constexpr absl::Duration kRemoteKillTimeout = absl::Seconds(5);

// The reason of a kill as it is logged and sent to the client: the default when empty, control
// characters as spaces.
std::string LoggedReason(const v1::KillSessionsRequest& request) {
  std::string reason = request.reason().empty() ? "killed by admin" : request.reason();
  for (char& c : reason) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return reason;
}

}  // namespace

using internal::SetTimestamp;

ServerEngine* AdminCore::AttachedEngine() {
  absl::MutexLock lock(&mu_);
  return engine_;
}

v1::ListSessionsResponse AdminCore::ListSessions() {
  ServerEngine* engine = AttachedEngine();
  v1::ListSessionsResponse response;
  if (engine == nullptr) return response;
  for (const SessionSnapshot& snapshot : engine->ListSessions()) {
    v1::SessionInfo& info = *response.add_sessions();
    info.set_id(snapshot.id);
    info.set_key_fingerprint(snapshot.key_fingerprint);
    info.set_user(snapshot.user);
    info.set_source_address(snapshot.peer.ip);
    info.set_source_port(snapshot.peer.port);
    info.set_transport(snapshot.transport);
    SetTimestamp(info.mutable_start_time(), snapshot.started);
    info.set_open_channels(snapshot.open_channels);
    info.set_channels_opened(snapshot.channels_opened);
    info.set_bytes_up(snapshot.bytes_upstream);
    info.set_bytes_down(snapshot.bytes_downstream);
    info.set_authenticated(snapshot.authenticated);
  }
  return response;
}

absl::StatusOr<v1::ListSessionsResponse> AdminCore::ListSessions(const v1::ListSessionsRequest& request) {
  if (!request.all()) return ListSessions();
  absl::StatusOr<std::vector<state::v1::Replica>> replicas = backend_->Replicas();
  if (!replicas.ok()) return replicas.status();
  const std::string self = replica_id();
  v1::ListSessionsResponse response = ListSessions();  // this replica's, as they are now
  for (v1::SessionInfo& session : *response.mutable_sessions()) session.set_replica(self);
  std::sort(replicas->begin(), replicas->end(),
            [](const state::v1::Replica& a, const state::v1::Replica& b) { return a.id() < b.id(); });
  for (const state::v1::Replica& replica : *replicas) {
    if (replica.id() == self) continue;
    for (const v1::SessionInfo& published : replica.sessions()) {
      v1::SessionInfo& session = *response.add_sessions();
      session = published;
      session.set_replica(replica.id());
    }
  }
  return response;
}

absl::StatusOr<v1::KillSessionsResponse> AdminCore::KillSessions(const v1::KillSessionsRequest& request) {
  const std::string& where = request.replica();
  const std::string self = replica_id();
  if (where.empty() || where == self) return KillHere(request);
  if (!backend_->shared()) {
    return absl::FailedPreconditionError(
        absl::StrCat("replica: '", Shown(where), "': ", state::NoFleetError().message()));
  }
  v1::KillSessionsRequest forwarded = request;
  forwarded.clear_replica();
  forwarded.set_reason(LoggedReason(request));
  v1::KillSessionsResponse response;
  if (where != "*") {
    absl::StatusOr<uint32_t> killed = backend_->RequestKill(where, forwarded, kRemoteKillTimeout);
    if (!killed.ok()) return killed.status();
    response.set_killed(*killed);
    return response;
  }
  if (request.target_case() != v1::KillSessionsRequest::kKeyFingerprint) {
    return FieldError("replica", "'*' needs key_fingerprint (a session id names one replica's session)");
  }
  absl::StatusOr<v1::KillSessionsResponse> here = KillHere(request);
  if (!here.ok()) return here.status();
  absl::StatusOr<std::vector<state::v1::Replica>> replicas = backend_->Replicas();
  if (!replicas.ok()) return replicas.status();
  uint32_t killed = here->killed();
  std::vector<std::string> silent;
  for (const state::v1::Replica& replica : *replicas) {
    if (replica.id() == self) continue;
    absl::StatusOr<uint32_t> there = backend_->RequestKill(replica.id(), forwarded, kRemoteKillTimeout);
    if (there.ok()) {
      killed += *there;
    } else {
      silent.push_back(absl::StrCat(replica.id(), " (", there.status().message(), ")"));
    }
  }
  if (!silent.empty()) {
    return absl::UnavailableError(absl::StrCat("disconnected ", killed,
                                               " session(s); these replicas did not: ",
                                               absl::StrJoin(silent, ", ")));
  }
  response.set_killed(killed);
  return response;
}

absl::StatusOr<v1::KillSessionsResponse> AdminCore::KillHere(const v1::KillSessionsRequest& request) {
  // Sanitised here, where it is logged and sent: a request may come from another replica.
  const std::string reason = LoggedReason(request);
  ServerEngine* engine = AttachedEngine();
  v1::KillSessionsResponse response;
  switch (request.target_case()) {
    case v1::KillSessionsRequest::kId: {
      uint64_t id = request.id();
      int killed = engine == nullptr ? 0
                                     : engine->KillSessions(
                                           [id](const SessionSnapshot& s) { return s.id == id; }, reason);
      if (killed == 0) return absl::NotFoundError(absl::StrCat("id: no session ", id));
      response.set_killed(static_cast<uint32_t>(killed));
      break;
    }
    case v1::KillSessionsRequest::kKeyFingerprint: {
      const std::string& fingerprint = request.key_fingerprint();
      if (!absl::StartsWith(fingerprint, "SHA256:")) {
        return FieldError("key_fingerprint",
                          absl::StrCat("'", Shown(fingerprint), "' is not a SHA256:... key fingerprint"));
      }
      int killed = engine == nullptr ? 0 : KillKeySessions(*engine, fingerprint, reason);
      response.set_killed(static_cast<uint32_t>(killed));
      break;
    }
    default:
      return FieldError("target", "an id or a key_fingerprint is required");
  }
  logger_.Info("admin", "sessions killed", {{"count", absl::StrCat(response.killed())}, {"reason", reason}});
  return response;
}

int AdminCore::KillKeySessions(ServerEngine& engine, const std::string& fingerprint,
                               std::string_view reason) {
  return engine.KillSessions(
      [&](const SessionSnapshot& session) {
        return session.authenticated && session.key_fingerprint == fingerprint;
      },
      reason);
}

}  // namespace alknet::admin
