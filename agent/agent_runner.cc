// Runs the agent: builds the config, loads keys, starts the engine, handles signals.
#include "agent/agent_runner.h"
#include "agent/state/make_backend.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <memory>
#include <optional>
#include <cstdio>
#include <cstring>
#include <iostream>

#include <libssh/libssh.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/admin/admin_core.h"
#include "agent/admin/admin_server.h"
#include "agent/client_runner.h"
#include "agent/command_line.h"
#include "agent/default_config.h"
#include "agent/health_check.h"
#include "agent/trust_loader.h"
#include "agent/service_notify.h"
#include "agent/upgrade/binary_upgrade.h"
#include "agent/proxy_runner.h"
#include "agent/upgrade/state_follower.h"
#include "agent/upgrade/upgrade_handoff.h"
#include "server/auth/authorized_keys.h"
#include "server/auth/key_set.h"
#include "server/common/errno_status.h"
#include "server/common/listen_fds.h"
#include "server/config/config_schema.h"
#include "server/engine/server_engine.h"

namespace alknet::agent {
namespace {

// This replica's name in a fleet: state.replica_id, or the host name (a pod's name).
std::string ReplicaId(const config::AgentConfig& config) {
  if (!config.state.replica_id.empty()) return config.state.replica_id;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return "unknown";
  return host;
}

absl::Status EnsureStateDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return absl::OkStatus();
  return ErrnoStatus(absl::StrCat("state directory ", path), errno);
}

admin::AdminServerOptions AdminOptions(const config::AgentConfig& config) {
  return {.unix_socket = config.admin.socket, .tcp_listen = config.admin.listen,
          .tls_cert = config.admin.tls_cert, .tls_key = config.admin.tls_key,
          .client_ca = config.admin.client_ca};
}

// How long a new binary may take from exec to serving before the upgrade counts as failed.
constexpr absl::Duration kUpgradeReadyTimeout = absl::Seconds(60);

// Upgrade RPCs waiting for the main thread (which runs every upgrade, woken by SIGUSR2).
struct PendingUpgrades {
  absl::Mutex mu;
  std::vector<std::shared_ptr<std::promise<absl::StatusOr<uint32_t>>>> waiting ABSL_GUARDED_BY(mu);

  absl::StatusOr<uint32_t> Wait() {
    auto promise = std::make_shared<std::promise<absl::StatusOr<uint32_t>>>();
    std::future<absl::StatusOr<uint32_t>> answer = promise->get_future();
    {
      absl::MutexLock lock(&mu);
      waiting.push_back(promise);
    }
    ::kill(::getpid(), SIGUSR2);
    return answer.get();
  }
  void Answer(const absl::StatusOr<uint32_t>& result) {
    absl::MutexLock lock(&mu);
    for (auto& promise : waiting) promise->set_value(result);
    waiting.clear();
  }
};

// After a binary upgrade: no listener, no admin API; the sessions run until they end, their
// key leaves the state file the new process writes, upgrade_drain runs out or SIGTERM.
// Returns the grace for the final Shutdown.
absl::Duration DrainAfterUpgrade(ServerEngine& engine, TrustLoader& trust, const sigset_t& signals,
                                 const config::AgentConfig& config, pid_t successor, Logger& logger) {
  StateFollower follower(admin::StateFilePath(config.state_dir), logger);
  const absl::Time until = absl::Now() + config.limits.upgrade_drain;
  logger.Info("agent", "handed over; keeping this process's sessions until they end",
              {{"new_pid", absl::StrCat(successor)}, {"sessions", absl::StrCat(engine.active_sessions())},
               {"upgrade_drain", absl::FormatDuration(config.limits.upgrade_drain)}});
  for (;;) {
    const timespec tick{.tv_sec = 1, .tv_nsec = 0};
    const int signal_number = sigtimedwait(&signals, nullptr, &tick);
    if (signal_number == SIGTERM || signal_number == SIGINT) {
      logger.Info("agent", "shutting down the drained process", {{"signal", strsignal(signal_number)}});
      return config.limits.shutdown_grace;
    }
    if (signal_number > 0) {
      logger.Info("agent", "signal ignored: this process handed over",
                  {{"signal", strsignal(signal_number)}, {"new_pid", absl::StrCat(successor)}});
    }
    trust.ReloadRevocationsIfChanged();
    for (const std::string& fingerprint : follower.PollRemoved()) {
      int killed = engine.KillSessions(
          [&](const SessionSnapshot& s) { return s.key_fingerprint == fingerprint; },
          "key removed (through the new process)");
      logger.Info("agent", "key removed in the state file; ended its sessions here",
                  {{"fingerprint", fingerprint}, {"sessions", absl::StrCat(killed)}});
    }
    if (engine.active_sessions() == 0) {
      logger.Info("agent", "last session ended; exiting", {{"new_pid", absl::StrCat(successor)}});
      return absl::ZeroDuration();
    }
    if (absl::Now() >= until) {
      logger.Info("agent", "upgrade_drain ran out; disconnecting the remaining sessions",
                  {{"sessions", absl::StrCat(engine.active_sessions())}});
      return absl::ZeroDuration();
    }
  }
}

}  // namespace

int RunAgent(int argc, const char* const* argv) {
  // The path this binary was started from, for a binary upgrade (read now: once the file is
  // replaced, /proc/self/exe names the old, deleted inode).
  const UpgradeCommand upgrade_command = CaptureUpgradeCommand(argc, argv);
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
  if (command_line->command == "proxy") {
    // stdout carries the stream: the log stays on stderr (the Logger's sink).
    auto target = BuildProxyTarget(*command_line);
    if (!target.ok()) {
      std::cerr << "alknet-agent: " << target.status().message() << "\n";
      return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    return RunProxy(*target, logger);
  }
  // Sockets passed in by systemd (socket activation) or by the agent this one upgrades; the
  // variables are unset here, before any thread starts, so no child sees them.
  auto inherited = InheritedSockets::FromEnvironment();
  if (!inherited.ok()) {
    logger.Error("agent", "startup failed", {{"error", std::string(inherited.status().message())}});
    return 1;
  }
  // Started by an agent upgrading to this binary: talk back to it (agent/upgrade).
  std::optional<UpgradeHandoff> handoff = UpgradeHandoff::FromEnvironment();
  auto startup_failed = [&](absl::string_view error) {
    logger.Error("agent", "startup failed", {{"error", std::string(error)}});
    if (handoff) handoff->Failed(std::string(error));
  };
  // The config as last read from the file and flags (SIGHUP replaces it only with a good one).
  config::AgentConfig running = *config;
  if (absl::Status dir = EnsureStateDir(config->state_dir); !dir.ok()) {
    startup_failed(dir.message());
    return 1;
  }

  // Signals are taken synchronously by this thread only; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGUSR2);  // binary upgrade
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (command_line->command == "connect") {
    if (!inherited->empty()) {
      logger.Error("agent", "startup failed",
                   {{"error", "LISTEN_FDS: the client role (connect) serves no listener to adopt "
                              "inherited sockets: " + inherited->DescribeRemaining()}});
      return 1;
    }
    return RunClientRole(*config, logger, signals);
  }

  ssh_init();
  // Trusted user CAs and revocation lists: read here, checked by the sessions, reloaded on
  // SIGHUP and (revocation lists) within a second of their files changing. A bad revocation
  // file refuses the start (fail closed).
  TrustLoader trust(*config, logger);
  if (absl::Status loaded = trust.LoadInitial(); !loaded.ok()) {
    startup_failed(loaded.message());
    ssh_finalize();
    return 1;
  }
  // An upgrade's new process: the config is good and the sockets are ours; the old process
  // releases the state directory (and its metrics address) before this one takes them.
  if (handoff) {
    if (absl::Status released = handoff->ConfigOkAwaitRelease(absl::Seconds(30)); !released.ok()) {
      startup_failed(released.message());
      ssh_finalize();
      return 1;
    }
  }
  PendingUpgrades pending_upgrades;
  // The admin core owns the keys and the policy: it reads the state file (or seeds it), merges
  // the config file's limits and the authorized_keys files, and fills the key store.
  auth::KeyStore keys(std::make_shared<const auth::KeySet>(std::vector<auth::AuthorizedKey>{}));
  auto backend = state::MakeStateBackend(*config, logger);
  if (!backend.ok()) {
    startup_failed(absl::StrCat("state.store: ", backend.status().message()));
    ssh_finalize();
    return 1;
  }
  const std::string replica_id = ReplicaId(*config);
  auto admin_core = admin::AdminCore::Open(
      *config, {.version = ALKNET_VERSION, .backend = *std::move(backend), .replica_id = replica_id},
      logger, keys);
  if (!admin_core.ok()) {
    startup_failed(admin_core.status().message());
    ssh_finalize();
    return 1;
  }
  (*admin_core)->CopyPolicyTo(*config);  // the state file's, where changed through the API
  admin::AdminServerOptions admin_options = AdminOptions(*config);
  admin_options.take_over_socket = handoff.has_value();
  auto admin_server = admin::AdminServer::Start(**admin_core, admin_options, logger);
  if (!admin_server.ok()) {
    startup_failed(admin_server.status().message());
    ssh_finalize();
    return 1;
  }
  (*admin_core)->SetAdminListeners((*admin_server)->addresses());
  int exit_code = 0;
  {
    std::vector<std::pair<std::string, std::string>> key_labels;
    for (const auto& key : config->metrics.key_labels) key_labels.emplace_back(key.fingerprint, key.label);
    EngineMetrics metrics(std::make_shared<prometheus::Registry>(), key_labels, ALKNET_VERSION);
    (*admin_core)->SetStoreObserver([&metrics](bool up) { metrics.SetStateStoreUp(up); });
    ServerEngine engine(*config, logger, keys, metrics);
    std::unique_ptr<ClientEngine> client = MakeClientRole(*config, logger, metrics, engine);
    engine.SetTrustStores(&trust.stores());
    engine.SetInheritedSockets(&*inherited);
    if (absl::Status started = engine.Start(); !started.ok()) {
      startup_failed(started.message());
      exit_code = 1;
    } else if (absl::Status client_started = client ? client->Start() : absl::OkStatus();
               !client_started.ok()) {
      startup_failed(client_started.message());
      engine.Shutdown(absl::ZeroDuration());
      exit_code = 1;
    } else {
      (*admin_core)->AttachEngine(&engine);
      if (client) (*admin_core)->AttachClient(client.get());
      // grpc.health.v1 "" follows /readyz, polled here (the engine knows no gRPC).
      (*admin_server)->SetServing(engine.Ready());
      if (handoff) {
        handoff->Ready();  // the old process stops accepting now
        handoff.reset();
      }
      (*admin_core)->SetUpgradeHandler([&pending_upgrades] { return pending_upgrades.Wait(); });
      // systemd Type=notify: serving now (after an upgrade, this pid becomes the main pid).
      const ServiceNotifier notifier = ServiceNotifier::FromEnvironment();
      auto notify = [&](absl::Status sent) {
        if (!sent.ok()) {
          logger.Warn("agent", "service notification not sent",
                      {{"error", std::string(sent.message())}});
        }
      };
      notify(notifier.Ready("serving"));
      // A fleet (state.store etcd) lists this replica, its readiness and sessions: announced
      // every tick (the backend publishes only what changed).
      (*admin_core)->AnnounceReplica(replica_id);
      for (;;) {
        // Wakes at least once a second to pick up changed revocation lists and readiness.
        const timespec tick{.tv_sec = 1, .tv_nsec = 0};
        const int signal_number = sigtimedwait(&signals, nullptr, &tick);
        (*admin_server)->SetServing(engine.Ready());
        (*admin_core)->AnnounceReplica(replica_id);
        if (signal_number < 0) {
          trust.ReloadRevocationsIfChanged();
          continue;
        }
        if (signal_number == SIGHUP) {
          // The config file (limits) and the authorized_keys files; sessions stay up.
          logger.Info("agent", "SIGHUP: reloading the config file and authorized keys");
          notify(notifier.Reloading());
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
          notify(notifier.Ready("serving"));
          continue;
        }
        if (signal_number == SIGUSR2) {
          logger.Info("agent", "upgrading to the binary on disk",
                      {{"executable", upgrade_command.executable}});
          bool released = false;
          UpgradeHooks hooks{
              .release =
                  [&] {
                    engine.CloseStatusServer();
                    (*admin_core)->ReleaseStateLock();
                    released = true;
                  },
              .retake =
                  [&] {
                    if (absl::Status retaken = (*admin_core)->RetakeStateLock(); !retaken.ok()) {
                      logger.Error("agent", "upgrade: cannot take the state directory back",
                                   {{"error", std::string(retaken.message())}});
                    }
                    if (absl::Status reopened = engine.ReopenStatusServer(); !reopened.ok()) {
                      logger.Error("agent", "upgrade: cannot reopen metrics",
                                   {{"error", std::string(reopened.message())}});
                    }
                  }};
          absl::StatusOr<pid_t> successor =
              RunBinaryUpgrade(upgrade_command, engine.listen_fds(), hooks, kUpgradeReadyTimeout, logger);
          pending_upgrades.Answer(successor.ok() ? absl::StatusOr<uint32_t>(static_cast<uint32_t>(*successor))
                                                 : absl::StatusOr<uint32_t>(successor.status()));
          if (!successor.ok()) {
            logger.Error("agent", "upgrade failed; this process keeps serving",
                         {{"error", std::string(successor.status().message())}});
            if (released) {
              // The new process may have replaced the admin socket file: bind it again.
              (*admin_server)->Shutdown(absl::Seconds(1));
              auto restarted = admin::AdminServer::Start(**admin_core, AdminOptions(running), logger);
              if (restarted.ok()) {
                *admin_server = *std::move(restarted);
                (*admin_server)->SetServing(engine.Ready());
              } else {
                logger.Error("agent", "upgrade: admin API not restarted",
                             {{"error", std::string(restarted.status().message())}});
              }
            }
            continue;
          }
          // Handed over: the new process accepts on the same sockets and owns the admin
          // socket, the state directory and the metrics address.
          engine.StopAccepting();
          (*admin_core)->SetUpgradeHandler(nullptr);
          (*admin_server)->KeepSocketFile();
          (*admin_server)->Shutdown(absl::Seconds(1));
          if (client) {
            (*admin_core)->AttachClient(nullptr);
            client->Shutdown();
          }
          (*admin_core)->AttachEngine(nullptr);
          absl::Duration grace = DrainAfterUpgrade(engine, trust, signals, running, *successor, logger);
          engine.Shutdown(grace);
          break;
        }
        logger.Info("agent", "shutting down", {{"signal", strsignal(signal_number)}});
        notify(notifier.Stopping());
        // gRPC health says NOT_SERVING at once and keeps answering through the drain (as
        // /readyz answers 503); the admin API stops once the engine has stopped.
        (*admin_server)->BeginDrain();
        (*admin_core)->SetUpgradeHandler(nullptr);
        pending_upgrades.Answer(absl::UnavailableError("the agent is shutting down"));
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
    (*admin_core)->SetStoreObserver(nullptr);  // before `metrics` goes
  }
  ssh_finalize();
  return exit_code;
}

}  // namespace alknet::agent
