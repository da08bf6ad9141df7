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
#include "agent/command_line.h"
#include "agent/default_config.h"
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

// Reads every authorized_keys file; bad lines are reported with file:line and skipped.
std::shared_ptr<const auth::KeySet> LoadKeys(const config::AgentConfig& config, Logger& logger) {
  std::vector<auth::AuthorizedKey> keys;
  for (const std::string& path : config.authorized_keys) {
    auto parsed = auth::LoadAuthorizedKeysFile(path);
    if (!parsed.ok()) {
      logger.Error("keys", "cannot read authorized keys",
                   {{"path", path}, {"error", std::string(parsed.status().message())}});
      continue;
    }
    for (const auth::ParseProblem& problem : parsed->problems) {
      logger.Warn("keys", "skipped bad line",
                  {{"at", problem.source}, {"error", problem.message}});
    }
    for (auth::AuthorizedKey& key : parsed->keys) keys.push_back(std::move(key));
  }
  auto set = std::make_shared<const auth::KeySet>(std::move(keys));
  logger.Info("keys", "loaded authorized keys", {{"count", absl::StrCat(set->size())}});
  if (set->size() == 0) {
    std::string target = config.authorized_keys.empty() ? "authorized_keys" : config.authorized_keys[0];
    logger.Warn("keys", "no authorized keys: nobody can log in yet",
                {{"hint", absl::StrCat("cat ~/.ssh/id_ed25519.pub >> ", target,
                                       " && kill -HUP ", getpid())}});
  }
  return set;
}

}  // namespace

int RunAgent(int argc, const char* const* argv) {
  auto command_line = ParseCommandLine(argc, argv);
  if (!command_line.ok()) {
    std::cerr << "alknet-agent: " << command_line.status().message() << "\n";
    return 2;
  }
  if (command_line->help) {
    std::cout << UsageText();
    return 0;
  }
  if (command_line->version) {
    std::cout << "alknet-agent " << ALKNET_VERSION << " (libssh " << ssh_version(0) << ")\n";
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

  Logger logger(config->log.level, config->log.format);
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

  ssh_init();
  auth::KeyStore keys(LoadKeys(*config, logger));
  int exit_code = 0;
  {
    std::vector<std::pair<std::string, std::string>> key_labels;
    for (const auto& key : config->metrics.key_labels) key_labels.emplace_back(key.fingerprint, key.label);
    EngineMetrics metrics(std::make_shared<prometheus::Registry>(), key_labels, ALKNET_VERSION);
    ServerEngine engine(*config, logger, keys, metrics);
    if (absl::Status started = engine.Start(); !started.ok()) {
      logger.Error("agent", "startup failed", {{"error", std::string(started.message())}});
      exit_code = 1;
    } else {
      for (;;) {
        int signal_number = 0;
        if (sigwait(&signals, &signal_number) != 0) continue;
        if (signal_number == SIGHUP) {
          logger.Info("agent", "SIGHUP: reloading authorized keys");
          keys.Replace(LoadKeys(*config, logger));
          continue;
        }
        logger.Info("agent", "shutting down", {{"signal", strsignal(signal_number)}});
        engine.Shutdown(config->limits.shutdown_grace);
        break;
      }
    }
  }
  ssh_finalize();
  return exit_code;
}

}  // namespace alknet::agent
