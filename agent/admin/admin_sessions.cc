// The Sessions service: the engine's sessions listed and killed (by id or by key).
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/admin/admin_core.h"
#include "agent/admin/admin_internal.h"
#include "agent/admin/api_errors.h"

namespace alknet::admin {

using internal::SetTimestamp;

v1::ListSessionsResponse AdminCore::ListSessions() {
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
  }
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

absl::StatusOr<v1::KillSessionsResponse> AdminCore::KillSessions(const v1::KillSessionsRequest& request) {
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
  }
  std::string reason = request.reason().empty() ? "killed by admin" : request.reason();
  for (char& c : reason) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
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
