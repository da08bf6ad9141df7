// `alknet-agent health`: asks a running agent's /healthz over its metrics listener.
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/common/net_address.h"

namespace alknet::agent {

// GET /healthz on `metrics_listen` (a wildcard listen address is asked on loopback). OK when the
// agent answers 200 within `timeout`; otherwise UNAVAILABLE saying what happened.
absl::Status CheckHealth(const HostPort& metrics_listen, absl::Duration timeout);

}  // namespace alknet::agent
