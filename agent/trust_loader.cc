// Loads and reloads trusted user CA keys and revocation lists for the engine's sessions.
#include "agent/trust_loader.h"

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"

namespace alknet::agent {

TrustLoader::TrustLoader(const config::AgentConfig& config, Logger& logger)
    : ca_paths_(config.trusted_user_ca_keys), revoked_paths_(config.revoked_keys),
      clock_skew_(config.certificate_clock_skew), logger_(logger),
      revocation_watch_(config.revoked_keys) {
  stores_.clock_skew = config.certificate_clock_skew;
}

absl::Status TrustLoader::LoadInitial() {
  if (absl::Status s = LoadCas(ca_paths_); !s.ok()) return s;
  if (revoked_paths_.empty()) return absl::OkStatus();
  return LoadRevocations(revoked_paths_);
}

void TrustLoader::Reload(const config::AgentConfig& config) {
  if (config.certificate_clock_skew != clock_skew_) {
    logger_.Warn("agent", "SIGHUP: certificate_clock_skew changed; restart needed to apply it",
                 {{"key", "certificate_clock_skew"}});
  }
  const std::vector<std::string>& cas = config.trusted_user_ca_keys;
  if (absl::Status s = LoadCas(cas); !s.ok()) {
    logger_.Error("keys", "cannot reload trusted CA keys; keeping the previous set",
                  {{"key", "trusted_user_ca_keys"}, {"error", std::string(s.message())}});
  } else {
    if (cas != ca_paths_) {
      logger_.Info("keys", "trusted_user_ca_keys changed; applied",
                   {{"files", absl::StrCat(cas.size())}});
    }
    ca_paths_ = cas;
  }
  const std::vector<std::string>& revoked = config.revoked_keys;
  auth::FileWatch next_watch(revoked);  // stamps taken before the read, as LoadRevocations does
  if (absl::Status s = LoadRevocations(revoked); !s.ok()) {
    logger_.Error("keys", "cannot reload revoked keys; keeping the previous list",
                  {{"key", "revoked_keys"}, {"error", std::string(s.message())}});
  } else if (revoked != revoked_paths_) {
    logger_.Info("keys", "revoked_keys changed; applied", {{"files", absl::StrCat(revoked.size())}});
    revoked_paths_ = revoked;
    revocation_watch_ = std::move(next_watch);
  }
}

void TrustLoader::ReloadRevocationsIfChanged() {
  if (revoked_paths_.empty() || !revocation_watch_.Changed()) return;
  if (absl::Status s = LoadRevocations(revoked_paths_); !s.ok()) {
    // Logged once per change: the stamps were taken, so an unchanged bad file stays quiet.
    logger_.Error("keys", "cannot reload revoked keys; keeping the previous list",
                  {{"key", "revoked_keys"}, {"error", std::string(s.message())}});
  }
}

absl::Status TrustLoader::LoadCas(const std::vector<std::string>& paths) {
  std::vector<auth::AuthorizedKey> keys;
  for (const std::string& path : paths) {
    absl::StatusOr<auth::ParsedKeys> parsed = auth::LoadTrustedCaKeysFile(path);
    if (!parsed.ok()) return parsed.status();
    for (const auth::ParseProblem& problem : parsed->problems) {
      logger_.Warn("keys", "skipped bad CA key line", {{"at", problem.source}, {"error", problem.message}});
    }
    for (auth::AuthorizedKey& key : parsed->keys) keys.push_back(std::move(key));
  }
  // An empty list is published too: removing trusted_user_ca_keys stops trusting its CAs.
  auto set = std::make_shared<const auth::TrustedCaSet>(std::move(keys));
  if (!paths.empty()) {
    logger_.Info("keys", "loaded trusted CA keys", {{"count", absl::StrCat(set->size())}});
  }
  stores_.cas.Replace(std::move(set));
  return absl::OkStatus();
}

absl::Status TrustLoader::LoadRevocations(const std::vector<std::string>& paths) {
  if (paths.empty()) {
    // No revocation files (any more): nothing is revoked by file.
    if (!revoked_paths_.empty()) {
      stores_.revoked.Replace(std::make_shared<const auth::RevocationList>());
    }
    return absl::OkStatus();
  }
  if (paths == revoked_paths_) revocation_watch_.Mark();  // a change during the read is seen next time
  absl::StatusOr<std::shared_ptr<const auth::RevocationList>> list =
      auth::LoadRevocationFiles(paths);
  if (!list.ok()) return list.status();
  logger_.Info("keys", "loaded revoked keys",
               {{"files", absl::StrCat(paths.size())},
                {"keys", absl::StrCat((*list)->key_count())},
                {"certificate_sections", absl::StrCat((*list)->certificate_section_count())}});
  stores_.revoked.Replace(*std::move(list));
  return absl::OkStatus();
}

}  // namespace alknet::agent
