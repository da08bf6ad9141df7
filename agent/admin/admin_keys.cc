// The Keys service: API keys and read-only file keys; add, list, remove, import, export.
#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/admin/admin_core.h"
#include "agent/admin/admin_internal.h"
#include "agent/admin/api_errors.h"
#include "server/auth/fingerprint.h"
#include "server/auth/key_text.h"
#include "server/common/strings.h"

namespace alknet::admin {
namespace {

using internal::IsAdmin;
using internal::kKeyRemovedReason;
using internal::SetTimestamp;

constexpr std::string_view kAdminRoleComment = "# alknet-role: admin";
constexpr std::string_view kTunnelRoleComment = "# alknet-role: tunnel";
constexpr size_t kMaxImportKeys = 100000;
constexpr int kMaxKillSessionsOf = 64;  // State.kill_sessions_of keeps the newest entries

// The removal of `fingerprint`'s key in the state: with --kill its entry goes to the end of
// kill_sessions_of (replicas end its sessions too), without it the entry goes (an old --kill of
// the same key, added again since, must not end sessions now). The newest entries are kept.
void NoteRemoval(state::v1::State& next, const std::string& fingerprint, bool kill) {
  auto& list = *next.mutable_kill_sessions_of();
  list.erase(std::remove(list.begin(), list.end(), fingerprint), list.end());
  if (kill) *next.add_kill_sessions_of() = fingerprint;
  if (list.size() > kMaxKillSessionsOf) list.DeleteSubrange(0, list.size() - kMaxKillSessionsOf);
}

// Drops the option name a parser message starts with ("permitopen: invalid port").
std::string_view WithoutOptionName(std::string_view message) {
  for (std::string_view name : {"from: ", "permitopen: ", "permitlisten: ", "expiry-time: ", "principals: "}) {
    if (message.substr(0, name.size()) == name) return message.substr(name.size());
  }
  return message;
}

absl::Status CheckOptionValue(std::string_view field, std::string_view value) {
  if (value.empty()) return FieldError(field, "empty value");
  for (char c : value) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return FieldError(field, absl::StrCat("'", Shown(value),
                                            "' must not contain quotes, backslashes or control characters"));
    }
  }
  return absl::OkStatus();
}

// Checks one option on its own so that an error names the request field it came from.
absl::Status CheckOption(std::string_view field, const std::string& option,
                         const auth::AuthorizedKey& key) {
  absl::StatusOr<auth::AuthorizedKey> parsed = auth::ParseAuthorizedKeyLine(
      absl::StrCat(option, " ", key.key_type, " ", auth::Base64Encode(key.blob)));
  if (!parsed.ok()) return FieldError(field, WithoutOptionName(StdSv(parsed.status().message())));
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> AdminCore::ExistingSource(const std::string& blob) const {
  auto it = source_by_blob_.find(blob);
  if (it == source_by_blob_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<AdminCore::ApiKey> AdminCore::BuildKey(const v1::AddKeyRequest& request,
                                                      absl::Time now) const {
  std::string_view line = StdSv(absl::StripAsciiWhitespace(Sv(request.public_key())));
  if (line.empty()) return FieldError("public_key", "required (an OpenSSH public key line)");
  if (line.find('\n') != std::string_view::npos) {
    return FieldError("public_key", "expected one authorized_keys line, got several");
  }
  absl::StatusOr<auth::AuthorizedKey> base = auth::ParseAuthorizedKeyLine(line);
  if (!base.ok()) return FieldError("public_key", StdSv(base.status().message()));
  if (base->key_type == "ssh-rsa") {
    int bits = auth::RsaModulusBits(base->blob);
    if (bits < kMinimumApiRsaBits) {
      return FieldError("public_key",
                        absl::StrCat("RSA key too short (", bits, " bits; the admin API requires at least ",
                                     kMinimumApiRsaBits, ")"));
    }
  }
  if (request.role() != v1::KEY_ROLE_UNSPECIFIED && request.role() != v1::KEY_ROLE_TUNNEL &&
      request.role() != v1::KEY_ROLE_ADMIN) {
    return FieldError("role", absl::StrCat("unknown role ", request.role()));
  }

  std::vector<std::string> options;
  if (std::string own = auth::OptionsText(line, *base); !own.empty()) options.push_back(std::move(own));
  auto add_option = [&](std::string_view field, std::string option) -> absl::Status {
    if (absl::Status status = CheckOption(field, option, *base); !status.ok()) return status;
    options.push_back(std::move(option));
    return absl::OkStatus();
  };
  if (request.from_size() > 0) {
    for (const std::string& entry : request.from()) {
      if (absl::Status s = CheckOptionValue("from", entry); !s.ok()) return s;
    }
    if (absl::Status s = add_option("from", absl::StrCat("from=\"", absl::StrJoin(request.from(), ","), "\""));
        !s.ok()) {
      return s;
    }
  }
  for (const std::string& entry : request.permit_open()) {
    if (absl::Status s = CheckOptionValue("permit_open", entry); !s.ok()) return s;
    if (absl::Status s = add_option("permit_open", absl::StrCat("permitopen=\"", entry, "\"")); !s.ok()) return s;
  }
  for (const std::string& entry : request.permit_listen()) {
    if (absl::Status s = CheckOptionValue("permit_listen", entry); !s.ok()) return s;
    if (absl::Status s = add_option("permit_listen", absl::StrCat("permitlisten=\"", entry, "\"")); !s.ok()) {
      return s;
    }
  }
  if (!request.expiry().empty()) {
    if (absl::Status s = CheckOptionValue("expiry", request.expiry()); !s.ok()) return s;
    if (absl::Status s = add_option("expiry", absl::StrCat("expiry-time=\"", request.expiry(), "\"")); !s.ok()) {
      return s;
    }
  }
  if (request.cert_authority()) options.push_back("cert-authority");
  if (request.principals_size() > 0) {
    if (!request.cert_authority() && !base->options.cert_authority) {
      return FieldError("principals", "only valid with cert_authority");
    }
    for (const std::string& entry : request.principals()) {
      if (absl::Status s = CheckOptionValue("principals", entry); !s.ok()) return s;
    }
    if (absl::Status s = add_option("principals", absl::StrCat("cert-authority,principals=\"",
                                                               absl::StrJoin(request.principals(), ","), "\""));
        !s.ok()) {
      return s;
    }
    options.back() = absl::StrCat("principals=\"", absl::StrJoin(request.principals(), ","), "\"");
  }
  auth::AuthorizedKey key = *base;
  if (!request.comment().empty()) {
    for (char c : request.comment()) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return FieldError("comment", "must not contain control characters");
      }
    }
    key.comment = request.comment();
  }
  std::string final_line = auth::KeyLine(absl::StrJoin(options, ","), key);
  absl::StatusOr<auth::AuthorizedKey> parsed = auth::ParseAuthorizedKeyLine(final_line);
  if (!parsed.ok()) return FieldError("public_key", StdSv(parsed.status().message()));
  parsed->source = "api";
  parsed->admin_role = IsAdmin(request.role());
  ApiKey entry;
  entry.stored.set_authorized_keys_line(final_line);
  entry.stored.set_role(request.role() == v1::KEY_ROLE_ADMIN ? v1::KEY_ROLE_ADMIN : v1::KEY_ROLE_TUNNEL);
  entry.stored.set_added_unix_seconds(absl::ToUnixSeconds(now));
  entry.key = *std::move(parsed);
  return entry;
}

absl::flat_hash_map<std::string, uint32_t> AdminCore::SessionsPerKey() {
  ServerEngine* engine = AttachedEngine();
  absl::flat_hash_map<std::string, uint32_t> counts;
  if (engine == nullptr) return counts;
  for (const SessionSnapshot& session : engine->ListSessions()) {
    if (session.authenticated) ++counts[session.key_fingerprint];
  }
  return counts;
}

v1::KeyInfo AdminCore::Describe(const auth::AuthorizedKey& key, const state::v1::StoredKey* stored,
                                const absl::flat_hash_map<std::string, uint32_t>& sessions) const {
  v1::KeyInfo info;
  info.set_fingerprint(key.fingerprint);
  info.set_key_type(key.key_type);
  info.set_comment(key.comment);
  v1::KeyOptions& options = *info.mutable_options();
  for (const std::string& from : key.options.from) options.add_from(from);
  for (const auto& pattern : key.options.permit_open) options.add_permit_open(auth::RenderHostPort(pattern));
  for (const auto& pattern : key.options.permit_listen) options.add_permit_listen(auth::RenderHostPort(pattern));
  if (key.options.expiry) SetTimestamp(options.mutable_expiry(), *key.options.expiry);
  options.set_cert_authority(key.options.cert_authority);
  for (const std::string& principal : key.options.principals) options.add_principals(principal);
  options.set_restrict(key.options.restrict);
  options.set_port_forwarding(key.options.port_forwarding);
  if (stored != nullptr) {
    options.set_text(auth::OptionsText(stored->authorized_keys_line(), key));
    info.set_role(stored->role());
    info.set_source("api");
    info.set_read_only(false);
    SetTimestamp(info.mutable_added_time(), absl::FromUnixSeconds(stored->added_unix_seconds()));
    info.set_authorized_keys_line(stored->authorized_keys_line());
  } else {
    options.set_text(auth::RenderOptions(key.options));
    info.set_role(v1::KEY_ROLE_TUNNEL);
    info.set_source(absl::StrCat("file:", key.source));
    info.set_read_only(true);
    info.set_authorized_keys_line(auth::KeyLine(options.text(), key));
  }
  if (std::optional<absl::Time> used = keys_.LastUsed(key.fingerprint)) {
    SetTimestamp(info.mutable_last_used(), *used);
  }
  auto it = sessions.find(key.fingerprint);
  info.set_active_sessions(it == sessions.end() ? 0 : it->second);
  return info;
}

absl::StatusOr<v1::AddKeyResponse> AdminCore::AddKey(const v1::AddKeyRequest& request) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<ApiKey> entry = BuildKey(request, absl::Now());
  if (!entry.ok()) return entry.status();
  if (std::optional<std::string> source = ExistingSource(entry->key.blob)) {
    return absl::AlreadyExistsError(absl::StrCat("public_key: key ", entry->key.fingerprint,
                                                 " is already present (source ", *source, ")"));
  }
  state::v1::State next = state_;
  *next.add_keys() = entry->stored;
  if (absl::Status status = Commit(std::move(next)); !status.ok()) return status;
  source_by_blob_.try_emplace(entry->key.blob, "api");
  api_keys_.push_back(*entry);
  PublishKeys();
  logger_.Info("admin", "key added",
               {{"key", entry->key.fingerprint},
                {"role", IsAdmin(entry->stored.role()) ? "admin" : "tunnel"},
                {"comment", entry->key.comment}});
  v1::AddKeyResponse response;
  *response.mutable_key() = Describe(entry->key, &entry->stored, {});
  return response;
}

v1::ListKeysResponse AdminCore::ListKeys() {
  absl::flat_hash_map<std::string, uint32_t> sessions = SessionsPerKey();
  absl::MutexLock lock(&mu_);
  v1::ListKeysResponse response;
  response.mutable_keys()->Reserve(static_cast<int>(api_keys_.size() + file_keys_.size()));
  for (const ApiKey& entry : api_keys_) *response.add_keys() = Describe(entry.key, &entry.stored, sessions);
  for (const auth::AuthorizedKey& key : file_keys_) *response.add_keys() = Describe(key, nullptr, sessions);
  return response;
}

absl::StatusOr<v1::RemoveKeyResponse> AdminCore::RemoveKey(const v1::RemoveKeyRequest& request) {
  const std::string& fingerprint = request.fingerprint();
  if (!absl::StartsWith(fingerprint, "SHA256:") || fingerprint.size() < 8) {
    return FieldError("fingerprint", absl::StrCat("'", Shown(fingerprint), "' is not a SHA256:... key fingerprint"));
  }
  v1::RemoveKeyResponse response;
  ServerEngine* engine = nullptr;
  {
    absl::MutexLock lock(&mu_);
    size_t index = api_keys_.size();
    for (size_t i = 0; i < api_keys_.size(); ++i) {
      if (api_keys_[i].key.fingerprint == fingerprint) {
        index = i;
        break;
      }
    }
    if (index == api_keys_.size()) {
      for (const auth::AuthorizedKey& key : file_keys_) {
        if (key.fingerprint == fingerprint) {
          std::string path = key.source.substr(0, key.source.rfind(':'));
          return absl::FailedPreconditionError(absl::StrCat(
              "fingerprint: key ", fingerprint, " comes from the authorized_keys file ", path,
              " (file:", key.source, "); remove it there and send SIGHUP"));
        }
      }
      return absl::NotFoundError(absl::StrCat("fingerprint: no key ", fingerprint));
    }
    state::v1::State next = state_;
    next.mutable_keys()->DeleteSubrange(static_cast<int>(index), 1);  // api_keys_ is in state order
    NoteRemoval(next, fingerprint, request.kill_sessions());
    if (absl::Status status = Commit(std::move(next)); !status.ok()) return status;
    *response.mutable_key() = Describe(api_keys_[index].key, &api_keys_[index].stored, {});
    std::string blob = api_keys_[index].key.blob;
    api_keys_.erase(api_keys_.begin() + static_cast<std::ptrdiff_t>(index));
    source_by_blob_.erase(blob);
    for (const auth::AuthorizedKey& key : file_keys_) {
      if (key.blob == blob) {
        source_by_blob_.try_emplace(blob, absl::StrCat("file:", key.source));
        break;
      }
    }
    PublishKeys();
    engine = engine_;
  }
  if (request.kill_sessions() && engine != nullptr) {
    int killed = KillKeySessions(*engine, fingerprint, kKeyRemovedReason);
    response.set_sessions_killed(static_cast<uint32_t>(killed));
  }
  logger_.Info("admin", "key removed",
               {{"key", fingerprint}, {"sessions_killed", absl::StrCat(response.sessions_killed())}});
  return response;
}

absl::StatusOr<v1::ImportKeysResponse> AdminCore::ImportKeys(const v1::ImportKeysRequest& request) {
  absl::MutexLock lock(&mu_);
  absl::Time now = absl::Now();
  std::vector<ApiKey> added;
  absl::flat_hash_map<std::string, size_t> seen;  // blob -> line
  uint32_t skipped = 0;
  int next_role = -1;  // from a role comment, for the next key only
  size_t line_number = 0;
  for (absl::string_view raw : absl::StrSplit(Sv(request.authorized_keys()), '\n')) {
    ++line_number;
    std::string_view line = StdSv(absl::StripAsciiWhitespace(raw));
    if (line.empty()) continue;
    if (line.front() == '#') {
      if (line == kAdminRoleComment) next_role = v1::KEY_ROLE_ADMIN;
      if (line == kTunnelRoleComment) next_role = v1::KEY_ROLE_TUNNEL;
      continue;
    }
    v1::AddKeyRequest one;
    one.set_public_key(std::string(line));
    one.set_role(next_role >= 0 ? static_cast<v1::KeyRole>(next_role) : request.role());
    next_role = -1;
    absl::StatusOr<ApiKey> entry = BuildKey(one, now);
    std::string where = absl::StrCat("authorized_keys line ", line_number);
    if (!entry.ok()) {
      return absl::Status(entry.status().code(), absl::StrCat(where, ": ", entry.status().message()));
    }
    std::optional<std::string> source = ExistingSource(entry->key.blob);
    if (!source) {
      if (auto it = seen.find(entry->key.blob); it != seen.end()) {
        source = absl::StrCat("authorized_keys line ", it->second);
      }
    }
    if (source) {
      if (request.skip_existing()) {
        ++skipped;
        continue;
      }
      return absl::AlreadyExistsError(absl::StrCat(where, ": key ", entry->key.fingerprint,
                                                   " is already present (source ", *source, ")"));
    }
    seen.emplace(entry->key.blob, line_number);
    added.push_back(*std::move(entry));
    if (added.size() > kMaxImportKeys) {
      return FieldError("authorized_keys", absl::StrCat("more than ", kMaxImportKeys, " keys"));
    }
  }
  v1::ImportKeysResponse response;
  response.set_skipped(skipped);
  if (!added.empty()) {
    state::v1::State next = state_;
    for (const ApiKey& entry : added) *next.add_keys() = entry.stored;
    if (absl::Status status = Commit(std::move(next)); !status.ok()) return status;
    for (ApiKey& entry : added) {
      *response.add_keys() = Describe(entry.key, &entry.stored, {});
      source_by_blob_.try_emplace(entry.key.blob, "api");
      api_keys_.push_back(std::move(entry));
    }
    PublishKeys();
  }
  logger_.Info("admin", "keys imported",
               {{"added", absl::StrCat(added.size())}, {"skipped", absl::StrCat(skipped)}});
  return response;
}

v1::ExportKeysResponse AdminCore::ExportKeys(const v1::ExportKeysRequest& request) {
  absl::MutexLock lock(&mu_);
  std::string text = "# alknet admin API keys (alknet-admin keys export)\n";
  for (const ApiKey& entry : api_keys_) {
    if (IsAdmin(entry.stored.role())) absl::StrAppend(&text, Sv(kAdminRoleComment), "\n");
    absl::StrAppend(&text, entry.stored.authorized_keys_line(), "\n");
  }
  if (request.include_files()) {
    for (const auth::AuthorizedKey& key : file_keys_) {
      absl::StrAppend(&text, "# file:", key.source, " (read-only): ",
                      auth::KeyLine(auth::RenderOptions(key.options), key), "\n");
    }
  }
  v1::ExportKeysResponse response;
  response.set_authorized_keys(std::move(text));
  return response;
}

}  // namespace alknet::admin
