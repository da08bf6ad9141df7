// OpenSSH user/host certificates (PROTOCOL.certkeys): a strict parser and the CA signature
// check. libssh verifies the user's signature against the key inside a certificate but never
// checks the certificate itself; this is where that happens (docs/adr/0005).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace alknet::auth {

inline constexpr uint32_t kUserCertificate = 1;
inline constexpr uint32_t kHostCertificate = 2;
// valid_before of a certificate made without an end ("forever").
inline constexpr uint64_t kCertificateForever = UINT64_MAX;
// sshd's SSHKEY_CERT_MAX_PRINCIPALS.
inline constexpr size_t kMaxCertificatePrincipals = 256;
// Larger blobs are refused before parsing (an RSA-16384 key, CA and signature fit easily).
inline constexpr size_t kMaxCertificateSize = 64 * 1024;

// One critical option or extension: its name and its raw data field. For the defined
// options the data is itself an SSH string (force-command, source-address) or empty (flags).
struct CertificateOption {
  std::string name;
  std::string data;
  bool operator==(const CertificateOption&) const = default;
};

struct Certificate {
  std::string certificate_type;  // "ssh-ed25519-cert-v01@openssh.com", ...
  std::string key_type;          // the certified key's plain type: "ssh-ed25519", ...
  std::string nonce;
  std::string public_key;        // the certified key as a plain key blob (what it fingerprints as)
  uint64_t serial = 0;
  uint32_t type = 0;             // kUserCertificate or kHostCertificate
  std::string key_id;
  std::vector<std::string> principals;  // empty: valid for any principal (sshd refuses that for users)
  uint64_t valid_after = 0;      // seconds since the epoch, inclusive
  uint64_t valid_before = 0;     // exclusive; kCertificateForever for no end
  std::vector<CertificateOption> critical_options;  // sorted by name, unique
  std::vector<CertificateOption> extensions;        // sorted by name, unique
  std::string reserved;
  std::string ca_key;            // the signature key: a plain key blob, never a certificate
  std::string ca_key_type;       // "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", ...
  std::string signature;         // the signature blob: string algorithm, string signature
  std::string signature_algorithm;  // "ssh-ed25519", "rsa-sha2-512", "ecdsa-sha2-nistp256", ...
  std::string blob;              // the whole certificate as received
  size_t signed_length = 0;      // blob bytes covered by the signature (all before it)

  bool HasExtension(std::string_view name) const;
  const CertificateOption* FindCriticalOption(std::string_view name) const;
  const CertificateOption* FindExtension(std::string_view name) const;
};

// True for the certificate key type names we parse (the *-cert-v01@openssh.com family).
bool IsCertificateKeyType(std::string_view name);

// Parses the certificate structure strictly: known certificate type, every length checked, the
// certified key and the CA key valid plain keys (the CA key not a certificate, of a type we
// can verify), principals and key id free of NUL bytes, options sorted and unique, type user
// or host, no trailing bytes. Does not check the CA signature (see VerifyCertificateSignature).
absl::StatusOr<Certificate> ParseCertificate(std::string_view blob);

// Checks the CA's signature over the signed part of the certificate. RSA CAs must sign with
// rsa-sha2-256 or rsa-sha2-512 (ssh-rsa, SHA-1, is refused as by OpenSSH 8.8+). Costs CPU: a
// login checks the CA is trusted first (EvaluateCertificate with verify_signature).
absl::Status VerifyCertificateSignature(const Certificate& certificate);

// ParseCertificate followed by VerifyCertificateSignature.
absl::StatusOr<Certificate> ParseAndVerifyCertificate(std::string_view blob);

// Verifies an SSH signature blob (string algorithm, string signature) made with the plain
// public key `public_key` over `data`. Supports ssh-ed25519, rsa-sha2-256/512 and
// ecdsa-sha2-nistp256/384/521.
absl::Status VerifySshSignature(std::string_view public_key, std::string_view signature,
                                std::string_view data);

// The value of a string-valued option (force-command, source-address): its data must be
// exactly one SSH string without NUL bytes.
absl::StatusOr<std::string> CertificateOptionString(const CertificateOption& option);

}  // namespace alknet::auth
