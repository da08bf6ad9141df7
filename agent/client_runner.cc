// The client role in the agent: `connect` alone, or upstreams next to `serve`.
#include "agent/client_runner.h"

#include <cstring>

#include <libssh/libssh.h>

namespace alknet::agent {

int RunClientRole(const config::AgentConfig& config, Logger& logger, const sigset_t& signals) {
  ssh_init();
  int exit_code = 0;
  {
    EngineMetrics metrics(std::make_shared<prometheus::Registry>(), {}, ALKNET_VERSION);
    ClientEngine client(config, logger, metrics, {.serve_status = true});
    if (absl::Status started = client.Start(); !started.ok()) {
      logger.Error("agent", "startup failed", {{"error", std::string(started.message())}});
      exit_code = 1;
    } else {
      for (;;) {
        int signal_number = 0;
        if (sigwait(&signals, &signal_number) != 0) continue;
        if (signal_number == SIGHUP) {
          logger.Info("agent", "SIGHUP: nothing to reload in the client role");
          continue;
        }
        logger.Info("agent", "shutting down", {{"signal", strsignal(signal_number)}});
        break;
      }
    }
    client.Shutdown();
  }
  ssh_finalize();
  return exit_code;
}

std::unique_ptr<ClientEngine> MakeClientRole(const config::AgentConfig& config, Logger& logger,
                                             EngineMetrics& metrics, ServerEngine& engine,
                                             ClientEngine::Options options) {
  if (config.upstreams.empty()) return nullptr;
  auto client = std::make_unique<ClientEngine>(config, logger, metrics, std::move(options));
  ClientEngine* raw = client.get();
  engine.AddReadinessCheck([raw] { return raw->Ready(); });
  engine.AddHealthCheck([raw] { return raw->Healthy(); });  // the client loop's heartbeat
  return client;
}

}  // namespace alknet::agent
