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
