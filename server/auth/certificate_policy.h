// Whether a parsed, signature-checked user certificate may log in, exactly as sshd decides:
// trusted CA (trusted_user_ca_keys or a cert-authority line), validity window with clock
// skew, principals, critical options (force-command, source-address; anything else refuses),
// revocation, and the options of the cert-authority line. Also the trusted CA key set and the
// stores sessions read it from.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/auth/authorized_keys.h"
#include "server/auth/certificate.h"
#include "server/auth/key_set.h"
#include "server/auth/revocation.h"
#include "server/auth/snapshot_store.h"

namespace alknet::auth {

// CA keys trusted for user certificates (OpenSSH TrustedUserCAKeys), indexed by key blob.
class TrustedCaSet {
 public:
  TrustedCaSet() = default;
  explicit TrustedCaSet(std::vector<AuthorizedKey> keys);
  const AuthorizedKey* Find(std::string_view blob) const;
  size_t size() const { return keys_.size(); }
  const std::vector<AuthorizedKey>& keys() const { return keys_; }

 private:
  std::vector<AuthorizedKey> keys_;
  absl::flat_hash_map<std::string, size_t> by_blob_;
};

using TrustedCaStore = SnapshotStore<TrustedCaSet>;

// Parses a trusted CA keys file: one plain public key per line ("type base64 [comment]"), blank
// lines and # comments skipped. Options and certificates are refused; bad lines are reported
// in `problems` and skipped, as for authorized_keys.
ParsedKeys ParseTrustedCaKeys(std::string_view text, std::string_view file_name);

// Reads and parses a trusted CA keys file. Unlike authorized_keys, a missing file is an error:
// it was named explicitly.
absl::StatusOr<ParsedKeys> LoadTrustedCaKeysFile(const std::string& path);

// What sessions read to check certificates and revocations; owned by the agent, shared by all
// workers, swapped on reload.
struct TrustStores {
  TrustedCaStore cas;
  RevocationStore revoked;
  absl::Duration clock_skew = absl::Minutes(1);
};

// Rejection reasons (the auth log's reason= values).
namespace cert_reason {
inline constexpr std::string_view kInvalid = "cert-invalid";
inline constexpr std::string_view kNotUser = "cert-not-user";
inline constexpr std::string_view kRevoked = "cert-revoked";
inline constexpr std::string_view kUntrustedCa = "cert-untrusted-ca";
inline constexpr std::string_view kExpired = "cert-expired";
inline constexpr std::string_view kNotYetValid = "cert-not-yet-valid";
inline constexpr std::string_view kWrongPrincipal = "cert-wrong-principal";
inline constexpr std::string_view kUnknownCriticalOption = "cert-unknown-critical-option";
inline constexpr std::string_view kSourceAddress = "cert-source-address";
inline constexpr std::string_view kFromMismatch = "from-mismatch";     // from= on the CA line
inline constexpr std::string_view kCaLineExpired = "key-expired";      // expiry-time on the CA line
inline constexpr std::string_view kNoPortForwarding = "certificate-no-port-forwarding";
}  // namespace cert_reason

struct CertificateContext {
  std::string_view user;        // the SSH user name (the principal to look for)
  std::string_view source_ip;   // the connection's source address
  absl::Time now = absl::Now();
  absl::Duration clock_skew = absl::Minutes(1);
  // false: skip the validity window (channel re-checks of a session that logged in in time).
  bool check_validity_period = true;
  // true at login: the CA signature is verified, but only once the CA was found trusted (a
  // certificate from an unknown CA costs a hash lookup, not a signature check). false for a
  // certificate verified before (the probe's, a session's channel re-checks).
  bool verify_signature = false;
  const KeySet* authorized_keys = nullptr;  // cert-authority lines
  const TrustedCaSet* trusted_cas = nullptr;
  const RevocationList* revoked = nullptr;
};

struct CertificateVerdict {
  std::string_view reason;  // empty: accepted; otherwise one of cert_reason::*
  std::string detail;       // what exactly (for debug logs and tests)
  // Accepted: the options that govern the session. A cert-authority line's options (permitopen,
  // restrict, no-port-forwarding...); defaults for a trusted_user_ca_keys CA.
  KeyOptions options;
  bool permit_port_forwarding = false;  // the certificate carries permit-port-forwarding
  bool via_authorized_keys = false;     // trusted through a cert-authority line
  std::string ca_source;                // "file:line" of the CA key that vouched
  bool accepted() const { return reason.empty(); }
};

// The certificate must already be parsed; its CA signature is checked here (verify_signature)
// or must have been. Order of checks (the first failure is the reason): type user,
// revocation, trusted CA, the CA signature (cert-invalid), per trust route (CA line
// expiry-time and from=, validity window, principals), critical options, source-address,
// extension data. Both trust routes are tried (trusted_user_ca_keys first), as sshd does.
CertificateVerdict EvaluateCertificate(const Certificate& certificate, const CertificateContext& context);

// Comma-separated source-address list of a certificate: each entry an IPv4/IPv6 address or
// CIDR. Returns the entries or an error.
absl::StatusOr<std::vector<std::string>> ParseCertificateSourceAddress(std::string_view list);

}  // namespace alknet::auth
