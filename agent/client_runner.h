// The client role in the agent: `alknet-agent connect ...` (client only) and the upstreams of
// `serve` (client next to the server).
#pragma once

#include <signal.h>

#include "server/client/client_engine.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/engine/server_engine.h"

namespace alknet::agent {

// `connect`: runs the config's upstreams until SIGTERM/SIGINT (signals already blocked in
// `signals`). Returns the exit code: 0 after a clean shutdown, 1 on a startup error.
int RunClientRole(const config::AgentConfig& config, Logger& logger, const sigset_t& signals);

// `serve` with upstreams: makes the client engine (nullptr without upstreams) and joins its
// readiness to the server's /readyz and its loop's heartbeat to /healthz. Start it after the
// server engine. `options` are the client engine's (tests inject hooks there).
std::unique_ptr<ClientEngine> MakeClientRole(const config::AgentConfig& config, Logger& logger,
                                             EngineMetrics& metrics, ServerEngine& engine,
                                             ClientEngine::Options options = {});

}  // namespace alknet::agent
