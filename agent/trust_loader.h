// Loads what certificate checks need (trusted_user_ca_keys, revoked_keys) into the stores the
// engine's sessions read, and reloads them: everything on SIGHUP, revocation lists also when
// their files change (the agent's main loop calls ReloadRevocationsIfChanged once a second).
// All file I/O happens here, on the agent's thread; workers only read immutable snapshots.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/auth/certificate_policy.h"
#include "server/auth/revocation.h"
#include "server/common/log.h"
#include "server/config/config.h"

namespace alknet::agent {

class TrustLoader {
 public:
  TrustLoader(const config::AgentConfig& config, Logger& logger);

  // Startup: a trusted CA keys file that cannot be read, or a revocation file that cannot be
  // read or parsed, is an error naming the file (the agent then refuses to start: fail closed).
  // Bad lines in CA key files are reported and skipped, as in authorized_keys.
  absl::Status LoadInitial();

  // SIGHUP with the reloaded (or, after a bad config file, the last good) config: re-reads every
  // file, from the config's paths, so changed trusted_user_ca_keys / revoked_keys paths take
  // effect (an emptied list drops the CAs / revocations it named). A file that fails keeps the
  // previous set and the previous paths, and logs an error naming the key. A changed
  // certificate_clock_skew is read by running sessions, so it is logged as "restart needed".
  void Reload(const config::AgentConfig& config);

  // Re-reads the revocation files if any changed (one stat per file); cheap enough to call
  // every second.
  void ReloadRevocationsIfChanged();

  auth::TrustStores& stores() { return stores_; }

 private:
  absl::Status LoadCas(const std::vector<std::string>& paths);
  absl::Status LoadRevocations(const std::vector<std::string>& paths);

  std::vector<std::string> ca_paths_;       // trusted_user_ca_keys of the loaded set
  std::vector<std::string> revoked_paths_;  // revoked_keys of the loaded list
  absl::Duration clock_skew_;
  Logger& logger_;
  auth::TrustStores stores_;
  auth::FileWatch revocation_watch_;
};

}  // namespace alknet::agent
