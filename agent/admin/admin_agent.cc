// The Agent service: status (version, listeners, readiness) and the binary upgrade's handler.
#include <unistd.h>

#include <libssh/libssh.h>

#include "agent/admin/admin_core.h"
#include "agent/admin/admin_internal.h"

namespace alknet::admin {

using internal::SetTimestamp;

v1::GetStatusResponse AdminCore::GetStatus() {
  v1::GetStatusResponse response;
  response.set_version(options_.version);
  response.set_libssh_version(ssh_version(0));
  response.set_pid(static_cast<uint32_t>(::getpid()));
  SetTimestamp(response.mutable_start_time(), started_);
  absl::Duration uptime = absl::Now() - started_;
  response.mutable_uptime()->set_seconds(absl::ToInt64Seconds(uptime));
  response.mutable_uptime()->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(uptime - absl::Seconds(absl::ToInt64Seconds(uptime)))));
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
    response.set_keys(static_cast<uint32_t>(api_keys_.size() + file_keys_.size()));
    response.set_state_file(state_path_);
    for (const std::string& address : admin_listeners_) {
      v1::Listener& listener = *response.add_listeners();
      listener.set_kind("admin");
      listener.set_address(address);
    }
  }
  if (engine != nullptr) {
    for (const EndpointUrl& url : engine->bound_endpoints()) {
      v1::Listener& listener = *response.add_listeners();
      listener.set_kind("ssh");
      listener.set_address(url.ToString());
      if (url.scheme == "tls") listener.set_tls_profile(tls_profile_);
    }
    if (std::string metrics = engine->metrics_url(); !metrics.empty()) {
      v1::Listener& listener = *response.add_listeners();
      listener.set_kind("metrics");
      listener.set_address(metrics);
    }
    response.set_ready(engine->Ready());
    response.set_sessions(static_cast<uint32_t>(engine->active_sessions()));
  }
  return response;
}

absl::StatusOr<v1::GetStatusResponse> AdminCore::GetStatus(const v1::GetStatusRequest& request) {
  v1::GetStatusResponse response = GetStatus();
  if (!request.all()) return response;
  absl::StatusOr<std::vector<state::v1::Replica>> replicas = backend_->Replicas();
  if (!replicas.ok()) return replicas.status();
  for (const state::v1::Replica& replica : *replicas) {
    v1::ReplicaStatus& out = *response.add_replicas();
    out.set_id(replica.id());
    out.set_version(replica.version());
    *out.mutable_listeners() = replica.listeners();
    out.set_ready(replica.ready());
    out.set_pid(replica.pid());
    out.mutable_start_time()->set_seconds(replica.started_unix_seconds());
  }
  return response;
}

std::string AdminCore::replica_id() const {
  absl::MutexLock lock(&mu_);
  return replica_id_;
}

void AdminCore::AnnounceReplica(const std::string& id) {
  bool first = false;
  {
    absl::MutexLock lock(&mu_);
    first = !serving_kills_ && backend_->shared();
    serving_kills_ = serving_kills_ || first;
    replica_id_ = id;
  }
  if (!backend_->shared()) return;
  if (first) {
    absl::Status serving = backend_->ServeKills(id, [this](const v1::KillSessionsRequest& request)
                                                        -> absl::StatusOr<uint32_t> {
      absl::StatusOr<v1::KillSessionsResponse> killed = KillHere(request);
      if (!killed.ok()) return killed.status();
      return killed->killed();
    });
    if (!serving.ok()) {
      logger_.Warn("state", "cannot serve other replicas' kill requests",
                   {{"error", std::string(serving.message())}});
    }
  }
  v1::GetStatusResponse status = GetStatus();
  state::v1::Replica self;
  self.set_id(id);
  self.set_version(status.version());
  for (const v1::Listener& listener : status.listeners()) {
    if (listener.kind() == "ssh") self.add_listeners(listener.address());
  }
  self.set_ready(status.ready());
  self.set_pid(status.pid());
  self.set_started_unix_seconds(status.start_time().seconds());
  v1::ListSessionsResponse sessions = ListSessions();
  for (v1::SessionInfo& session : *sessions.mutable_sessions()) {
    if (self.sessions_size() == kMaxPublishedSessions) {
      self.set_sessions_omitted(self.sessions_omitted() + 1);
      continue;
    }
    *self.add_sessions() = std::move(session);
  }
  if (absl::Status announced = backend_->Announce(self); !announced.ok()) {
    logger_.Warn("state", "cannot announce this replica", {{"error", std::string(announced.message())}});
  }
}

// ---- binary upgrade (issue 20) ----

void AdminCore::SetUpgradeHandler(std::function<absl::StatusOr<uint32_t>()> handler) {
  absl::MutexLock lock(&mu_);
  upgrade_handler_ = std::move(handler);
}

absl::StatusOr<v1::UpgradeResponse> AdminCore::Upgrade() {
  std::function<absl::StatusOr<uint32_t>()> handler;
  {
    absl::MutexLock lock(&mu_);
    handler = upgrade_handler_;
  }
  if (!handler) return absl::UnimplementedError("this agent cannot upgrade itself");
  absl::StatusOr<uint32_t> pid = handler();
  if (!pid.ok()) return pid.status();
  v1::UpgradeResponse response;
  response.set_pid(*pid);
  return response;
}

}  // namespace alknet::admin
