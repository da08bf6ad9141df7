// Runs the agent: builds the config, loads keys, starts the engine, handles signals.
#include "agent/agent_runner.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include <libssh/libssh.h>

#include "absl/strings/str_cat.h"
#include "agent/admin/admin_core.h"
#include "agent/admin/admin_server.h"
#include "agent/client_runner.h"
#include "agent/command_line.h"
#include "agent/default_config.h"
#include "agent/health_check.h"
#include "agent/trust_loader.h"
#include "server/auth/authorized_keys.h"
#include "server/auth/key_set.h"
#include "server/common/errno_status.h"
#include "server/config/config_schema.h"
#include "server/engine/server_engine.h"

namespace alknet::agent {
namespace {

absl::Status EnsureStateDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return absl::OkStatus();
  return ErrnoStatus(absl::StrCat("state directory ", path), errno);
}

admin::AdminServerOptions AdminOptions(const config::AgentConfig& config) {
  return {.unix_socket = config.admin.socket, .tcp_listen = config.admin.listen,
          .tls_cert = config.admin.tls_cert, .tls_key = config.admin.tls_key,
          .client_ca = config.admin.client_ca};
}

}  // namespace

int RunAgent(int argc, const char* const* argv) {
  auto command_line = ParseCommandLine(argc, argv);
  if (!command_line.ok()) {
    std::cerr << "alknet-agent: " << command_line.status().message() << "\n";
    return 2;
  }
  command_line->environment = CaptureEnvironment(environ);
  if (command_line->help) {
    std::cout << UsageText(command_line->command_given ? command_line->command : "");
    return 0;
  }
  if (command_line->version) {
    std::cout << "alknet-agent " << ALKNET_VERSION << " (libssh " << ssh_version(0) << ")\n";
    return 0;
  }
  if (command_line->command == "completion") {
    std::cout << (command_line->shell == "zsh" ? cli::ZshCompletion(AgentProgram())
                                               : cli::BashCompletion(AgentProgram()));
    return 0;
  }
  if (command_line->command == "manpage") {
    std::cout << cli::ManPage(AgentProgram(), ALKNET_VERSION);
    return 0;
  }
  auto config = BuildConfig(*command_line, DefaultConfigYaml());
  if (!config.ok()) {
    std::cerr << "alknet-agent: " << config.status().message() << "\n";
    return 2;
  }
  if (command_line->print_config) {
    std::cout << config::ToYaml(*config);
    return 0;
  }
  if (command_line->command == "health") {
    if (!config->metrics.listen.has_value()) {
      std::cerr << "alknet-agent: health: metrics.listen is off, so there is no /healthz to ask\n";
      return 2;
    }
    absl::Status healthy = CheckHealth(*config->metrics.listen, absl::Seconds(3));
    if (!healthy.ok()) {
      std::cerr << "alknet-agent: unhealthy: " << healthy.message() << "\n";
      return 1;
    }
    std::cout << "healthy\n";
    return 0;
  }

  Logger logger(config->log.level, config->log.format);
  // The config as last read from the file and flags (SIGHUP replaces it only with a good one).
  config::AgentConfig running = *config;
  if (absl::Status dir = EnsureStateDir(config->state_dir); !dir.ok()) {
    logger.Error("agent", "startup failed", {{"error", std::string(dir.message())}});
    return 1;
  }

  // Signals are taken synchronously by this thread only; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (command_line->command == "connect") return RunClientRole(*config, logger, signals);

  ssh_init();
  // Trusted user CAs and revocation lists: read here, checked by the sessions, reloaded on
  // SIGHUP and (revocation lists) within a second of their files changing. A bad revocation
  // file refuses the start (fail closed).
  TrustLoader trust(*config, logger);
  if (absl::Status loaded = trust.LoadInitial(); !loaded.ok()) {
    logger.Error("agent", "startup failed", {{"error", std::string(loaded.message())}});
    ssh_finalize();
    return 1;
  }
  // The admin core owns the keys and the policy: it reads the state file (or seeds it), merges
  // the config file's limits and the authorized_keys files, and fills the key store.
  auth::KeyStore keys(std::make_shared<const auth::KeySet>(std::vector<auth::AuthorizedKey>{}));
  auto admin_core = admin::AdminCore::Open(*config, {.version = ALKNET_VERSION}, logger, keys);
  if (!admin_core.ok()) {
    logger.Error("agent", "startup failed", {{"error", std::string(admin_core.status().message())}});
    ssh_finalize();
    return 1;
  }
  config->limits = (*admin_core)->limits();
  config->forwarding = (*admin_core)->forwarding();  // the state file's, if changed through the API
  auto admin_server = admin::AdminServer::Start(**admin_core, AdminOptions(*config), logger);
  if (!admin_server.ok()) {
    logger.Error("agent", "startup failed", {{"error", std::string(admin_server.status().message())}});
    ssh_finalize();
    return 1;
  }
  (*admin_core)->SetAdminListeners((*admin_server)->addresses());
  int exit_code = 0;
  {
    std::vector<std::pair<std::string, std::string>> key_labels;
    for (const auto& key : config->metrics.key_labels) key_labels.emplace_back(key.fingerprint, key.label);
    EngineMetrics metrics(std::make_shared<prometheus::Registry>(), key_labels, ALKNET_VERSION);
    ServerEngine engine(*config, logger, keys, metrics);
    std::unique_ptr<ClientEngine> client = MakeClientRole(*config, logger, metrics, engine);
    engine.SetTrustStores(&trust.stores());
    if (absl::Status started = engine.Start(); !started.ok()) {
      logger.Error("agent", "startup failed", {{"error", std::string(started.message())}});
      exit_code = 1;
    } else if (absl::Status client_started = client ? client->Start() : absl::OkStatus();
               !client_started.ok()) {
      logger.Error("agent", "startup failed", {{"error", std::string(client_started.message())}});
      engine.Shutdown(absl::ZeroDuration());
      exit_code = 1;
    } else {
      (*admin_core)->AttachEngine(&engine);
      if (client) (*admin_core)->AttachClient(client.get());
      // grpc.health.v1 "" follows /readyz, polled here (the engine knows no gRPC).
      (*admin_server)->SetServing(engine.Ready());
      for (;;) {
        // Wakes at least once a second to pick up changed revocation lists and readiness.
        const timespec tick{.tv_sec = 1, .tv_nsec = 0};
        const int signal_number = sigtimedwait(&signals, nullptr, &tick);
        (*admin_server)->SetServing(engine.Ready());
        if (signal_number < 0) {
          trust.ReloadRevocationsIfChanged();
          continue;
        }
        if (signal_number == SIGHUP) {
          // The config file (limits) and the authorized_keys files; sessions stay up.
          logger.Info("agent", "SIGHUP: reloading the config file and authorized keys");
          // A bad file keeps the last good config (not the startup one, which would undo
          // earlier reloads); the key and trust files are still re-read from its paths.
          auto reloaded = BuildConfig(*command_line, DefaultConfigYaml());
          if (reloaded.ok()) {
            running = *std::move(reloaded);
          } else {
            logger.Error("agent", "SIGHUP: config file not reloaded; keeping the running one",
                         {{"error", std::string(reloaded.status().message())}});
          }
          (*admin_core)->Reload(running);
          trust.Reload(running);
          continue;
        }
        logger.Info("agent", "shutting down", {{"signal", strsignal(signal_number)}});
        // gRPC health says NOT_SERVING at once and keeps answering through the drain (as
        // /readyz answers 503); the admin API stops once the engine has stopped.
        (*admin_server)->BeginDrain();
        if (client) {
          (*admin_core)->AttachClient(nullptr);
          client->Shutdown();
        }
        (*admin_core)->AttachEngine(nullptr);  // no admin call reaches a stopping engine
        engine.Shutdown((*admin_core)->limits().shutdown_grace);
        (*admin_server)->Shutdown(absl::Seconds(1));
        break;
      }
    }
  }
  ssh_finalize();
  return exit_code;
}

}  // namespace alknet::agent
