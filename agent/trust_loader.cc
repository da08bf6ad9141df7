// Loads and reloads trusted user CA keys and revocation lists for the engine's sessions.
#include "agent/trust_loader.h"

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"

namespace alknet::agent {

TrustLoader::TrustLoader(const config::AgentConfig& config, Logger& logger)
    : config_(config), logger_(logger), revocation_watch_(config.revoked_keys) {
  stores_.clock_skew = config.certificate_clock_skew;
}

absl::Status TrustLoader::LoadInitial() {
  if (absl::Status s = LoadCas(/*initial=*/true); !s.ok()) return s;
  return LoadRevocations();
}

void TrustLoader::Reload() {
  if (absl::Status s = LoadCas(/*initial=*/false); !s.ok()) {
    logger_.Error("keys", "cannot reload trusted CA keys; keeping the previous set",
                  {{"error", std::string(s.message())}});
  }
  if (absl::Status s = LoadRevocations(); !s.ok()) {
    logger_.Error("keys", "cannot reload revoked keys; keeping the previous list",
                  {{"error", std::string(s.message())}});
  }
}

void TrustLoader::ReloadRevocationsIfChanged() {
  if (config_.revoked_keys.empty() || !revocation_watch_.Changed()) return;
  if (absl::Status s = LoadRevocations(); !s.ok()) {
    // Logged once per change: the stamps were taken, so an unchanged bad file stays quiet.
    logger_.Error("keys", "cannot reload revoked keys; keeping the previous list",
                  {{"error", std::string(s.message())}});
  }
}

absl::Status TrustLoader::LoadCas(bool initial) {
  std::vector<auth::AuthorizedKey> keys;
  for (const std::string& path : config_.trusted_user_ca_keys) {
    absl::StatusOr<auth::ParsedKeys> parsed = auth::LoadTrustedCaKeysFile(path);
    if (!parsed.ok()) return parsed.status();
    for (const auth::ParseProblem& problem : parsed->problems) {
      logger_.Warn("keys", "skipped bad CA key line", {{"at", problem.source}, {"error", problem.message}});
    }
    for (auth::AuthorizedKey& key : parsed->keys) keys.push_back(std::move(key));
  }
  if (config_.trusted_user_ca_keys.empty() && !initial) return absl::OkStatus();
  auto set = std::make_shared<const auth::TrustedCaSet>(std::move(keys));
  if (!config_.trusted_user_ca_keys.empty()) {
    logger_.Info("keys", "loaded trusted CA keys", {{"count", absl::StrCat(set->size())}});
  }
  stores_.cas.Replace(std::move(set));
  return absl::OkStatus();
}

absl::Status TrustLoader::LoadRevocations() {
  if (config_.revoked_keys.empty()) return absl::OkStatus();
  revocation_watch_.Mark();  // before reading: a change during the read is seen next time
  absl::StatusOr<std::shared_ptr<const auth::RevocationList>> list =
      auth::LoadRevocationFiles(config_.revoked_keys);
  if (!list.ok()) return list.status();
  logger_.Info("keys", "loaded revoked keys",
               {{"files", absl::StrCat(config_.revoked_keys.size())},
                {"keys", absl::StrCat((*list)->key_count())},
                {"certificate_sections", absl::StrCat((*list)->certificate_section_count())}});
  stores_.revoked.Replace(*std::move(list));
  return absl::OkStatus();
}

}  // namespace alknet::agent
