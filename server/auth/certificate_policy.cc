// Whether a verified user certificate may log in (sshd's user_cert_trusted_ca and the
// cert-authority path of its authorized_keys check), and the trusted CA key set.
#include "server/auth/certificate_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "server/auth/address_patterns.h"
#include "server/common/strings.h"

namespace alknet::auth {
namespace {

constexpr size_t kMaxTrustedCaFileSize = 16 * 1024 * 1024;

// Extensions OpenSSH defines; they are flags, so their data must be empty.
constexpr std::array<std::string_view, 6> kKnownExtensions = {
    "no-touch-required", "permit-X11-forwarding", "permit-agent-forwarding",
    "permit-port-forwarding", "permit-pty", "permit-user-rc"};

uint64_t SaturatingAdd(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

std::string Show(std::string_view text) {
  constexpr size_t kMax = 64;
  if (text.size() <= kMax) return absl::CHexEscape(Sv(text));
  return absl::StrCat(absl::CHexEscape(Sv(text.substr(0, kMax))), "...");
}

CertificateVerdict Reject(std::string_view reason, std::string detail) {
  CertificateVerdict verdict;
  verdict.reason = reason;
  verdict.detail = std::move(detail);
  return verdict;
}

bool IsIpLiteral(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return false;
  const std::string terminated(text);
  std::array<unsigned char, 16> ignored{};
  return inet_pton(AF_INET, terminated.c_str(), ignored.data()) == 1 ||
         inet_pton(AF_INET6, terminated.c_str(), ignored.data()) == 1;
}

// The checks that depend on the trust route: the cert-authority line (if any), the validity
// window and the principals.
CertificateVerdict CheckRoute(const Certificate& cert, const CertificateContext& context,
                              const AuthorizedKey& ca, bool via_authorized_keys) {
  if (via_authorized_keys) {
    if (ca.options.expiry.has_value() && *ca.options.expiry <= context.now) {
      return Reject(cert_reason::kCaLineExpired, absl::StrCat("cert-authority line ", ca.source, " expired"));
    }
    if (!SourceAllowed(ca.options.from, context.source_ip)) {
      return Reject(cert_reason::kFromMismatch,
                    absl::StrCat("source not allowed by from= on cert-authority line ", ca.source));
    }
  }
  if (context.check_validity_period) {
    const int64_t now_seconds = absl::ToUnixSeconds(context.now);
    const uint64_t now = now_seconds < 0 ? 0 : static_cast<uint64_t>(now_seconds);
    const int64_t skew_seconds = absl::ToInt64Seconds(context.clock_skew);
    const uint64_t skew = skew_seconds < 0 ? 0 : static_cast<uint64_t>(skew_seconds);
    if (cert.valid_after > SaturatingAdd(now, skew)) {
      return Reject(cert_reason::kNotYetValid,
                    absl::StrFormat("valid after %d, now %d (skew %ds)", cert.valid_after, now, skew));
    }
    if (now >= SaturatingAdd(cert.valid_before, skew)) {
      return Reject(cert_reason::kExpired,
                    absl::StrFormat("valid before %d, now %d (skew %ds)", cert.valid_before, now, skew));
    }
  }
  if (via_authorized_keys && !ca.options.principals.empty()) {
    // principals="..." on the line: the certificate must name one of those instead of the user.
    const bool listed = std::any_of(cert.principals.begin(), cert.principals.end(), [&](const std::string& name) {
      return std::find(ca.options.principals.begin(), ca.options.principals.end(), name) !=
             ca.options.principals.end();
    });
    if (!listed) {
      return Reject(cert_reason::kWrongPrincipal,
                    absl::StrCat("no certificate principal is in principals= of ", ca.source));
    }
  } else {
    // sshd refuses an empty principal list for TrustedUserCAKeys; we do so for plain
    // cert-authority lines too (an empty list would mean "any user").
    if (cert.principals.empty()) return Reject(cert_reason::kWrongPrincipal, "certificate has no principals");
    if (std::find(cert.principals.begin(), cert.principals.end(), context.user) == cert.principals.end()) {
      return Reject(cert_reason::kWrongPrincipal,
                    absl::StrCat("user '", Show(context.user), "' is not a principal of the certificate"));
    }
  }
  CertificateVerdict verdict;
  verdict.via_authorized_keys = via_authorized_keys;
  verdict.ca_source = ca.source;
  if (via_authorized_keys) verdict.options = ca.options;
  return verdict;
}

// Critical options and extensions: route-independent.
CertificateVerdict CheckOptions(const Certificate& cert, const CertificateContext& context) {
  std::vector<std::string> source_address;
  for (const CertificateOption& option : cert.critical_options) {
    if (option.name == "force-command") {
      // Accepted: we never run commands, so there is nothing to force.
      if (absl::StatusOr<std::string> value = CertificateOptionString(option); !value.ok()) {
        return Reject(cert_reason::kInvalid, std::string(value.status().message()));
      }
    } else if (option.name == "source-address") {
      absl::StatusOr<std::string> value = CertificateOptionString(option);
      if (!value.ok()) return Reject(cert_reason::kInvalid, std::string(value.status().message()));
      absl::StatusOr<std::vector<std::string>> entries = ParseCertificateSourceAddress(*value);
      if (!entries.ok()) return Reject(cert_reason::kInvalid, std::string(entries.status().message()));
      source_address = *std::move(entries);
    } else {
      return Reject(cert_reason::kUnknownCriticalOption,
                    absl::StrCat("unsupported critical option '", Show(option.name), "'"));
    }
  }
  for (const CertificateOption& option : cert.extensions) {
    const bool known = std::find(kKnownExtensions.begin(), kKnownExtensions.end(), option.name) !=
                       kKnownExtensions.end();
    if (known && !option.data.empty()) {
      return Reject(cert_reason::kInvalid, absl::StrCat("extension '", option.name, "' has data"));
    }
  }
  if (!source_address.empty() && !SourceAllowed(source_address, context.source_ip)) {
    return Reject(cert_reason::kSourceAddress, "source address not in the certificate's source-address");
  }
  return {};
}

}  // namespace

TrustedCaSet::TrustedCaSet(std::vector<AuthorizedKey> keys) : keys_(std::move(keys)) {
  by_blob_.reserve(keys_.size());
  for (size_t i = 0; i < keys_.size(); ++i) by_blob_.try_emplace(keys_[i].blob, i);
}

const AuthorizedKey* TrustedCaSet::Find(std::string_view blob) const {
  auto it = by_blob_.find(Sv(blob));
  return it == by_blob_.end() ? nullptr : &keys_[it->second];
}

ParsedKeys ParseTrustedCaKeys(std::string_view text, std::string_view file_name) {
  ParsedKeys parsed;
  size_t line_number = 0;
  for (absl::string_view piece : absl::StrSplit(Sv(text), '\n')) {
    ++line_number;
    const std::string_view line = StdSv(absl::StripAsciiWhitespace(piece));
    if (line.empty() || line.front() == '#') continue;
    std::string source = absl::StrCat(Sv(file_name), ":", line_number);
    const std::string_view first_word = line.substr(0, line.find_first_of(" \t"));
    if (IsCertificateKeyType(first_word)) {
      parsed.problems.push_back({std::move(source), "a CA key must be a plain key, not a certificate"});
      continue;
    }
    absl::StatusOr<AuthorizedKey> key = ParseAuthorizedKeyLine(line);
    if (!key.ok()) {
      parsed.problems.push_back({std::move(source), std::string(key.status().message())});
      continue;
    }
    if (!(key->options == KeyOptions{})) {
      parsed.problems.push_back({std::move(source), "options are not allowed in a trusted CA keys file"});
      continue;
    }
    key->source = std::move(source);
    parsed.keys.push_back(*std::move(key));
  }
  return parsed;
}

absl::StatusOr<ParsedKeys> LoadTrustedCaKeysFile(const std::string& path) {
  absl::StatusOr<std::string> content = ReadRegularFile(path, kMaxTrustedCaFileSize, "trusted CA keys file");
  if (!content.ok()) return content.status();
  return ParseTrustedCaKeys(*content, path);
}

absl::StatusOr<std::vector<std::string>> ParseCertificateSourceAddress(std::string_view list) {
  std::vector<std::string> entries;
  for (absl::string_view piece : absl::StrSplit(Sv(list), ',')) {
    const std::string_view entry = StdSv(piece);
    const bool valid = entry.find('/') != std::string_view::npos
                           ? entry.front() != '!' && CheckSourcePattern(entry).ok()
                           : IsIpLiteral(entry);
    if (!valid) {
      return absl::InvalidArgumentError(
          absl::StrCat("source-address: invalid entry '", Show(entry), "'"));
    }
    entries.emplace_back(entry);
  }
  return entries;
}

CertificateVerdict EvaluateCertificate(const Certificate& cert, const CertificateContext& context) {
  if (cert.type != kUserCertificate) return Reject(cert_reason::kNotUser, "not a user certificate");
  if (context.revoked != nullptr && context.revoked->IsCertificateRevoked(cert)) {
    return Reject(cert_reason::kRevoked, "certificate, its key or its CA is revoked");
  }
  const AuthorizedKey* file_ca = context.trusted_cas != nullptr ? context.trusted_cas->Find(cert.ca_key) : nullptr;
  const AuthorizedKey* line_ca =
      context.authorized_keys != nullptr ? context.authorized_keys->FindCertAuthority(cert.ca_key) : nullptr;
  if (file_ca == nullptr && line_ca == nullptr) {
    return Reject(cert_reason::kUntrustedCa, "CA key is neither in trusted_user_ca_keys nor a cert-authority line");
  }
  // Only now, with a CA we trust, is the signature worth its CPU.
  if (context.verify_signature) {
    if (absl::Status verified = VerifyCertificateSignature(cert); !verified.ok()) {
      return Reject(cert_reason::kInvalid, std::string(verified.message()));
    }
  }
  CertificateVerdict verdict;
  if (file_ca != nullptr) verdict = CheckRoute(cert, context, *file_ca, /*via_authorized_keys=*/false);
  if ((file_ca == nullptr || !verdict.accepted()) && line_ca != nullptr) {
    CertificateVerdict line_verdict = CheckRoute(cert, context, *line_ca, /*via_authorized_keys=*/true);
    // Report the trusted_user_ca_keys failure when both routes fail.
    if (file_ca == nullptr || line_verdict.accepted()) verdict = std::move(line_verdict);
  }
  if (!verdict.accepted()) return verdict;
  CertificateVerdict options = CheckOptions(cert, context);
  if (!options.accepted()) return options;
  verdict.permit_port_forwarding = cert.HasExtension("permit-port-forwarding");
  return verdict;
}

}  // namespace alknet::auth
