// OpenSSH certificates (PROTOCOL.certkeys): strict parsing and CA signature verification with
// OpenSSL 3 EVP. Every read goes through SshWireReader, which checks lengths against what is
// left; nothing is allocated from a length before that check.
#include "server/auth/certificate.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include <algorithm>
#include <array>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/auth/authorized_keys.h"
#include "server/auth/wire_reader.h"
#include "server/common/strings.h"

namespace alknet::auth {
namespace {

constexpr size_t kMaxShownLength = 64;

// User-controlled text for an error message: escaped and bounded.
std::string Show(std::string_view text) {
  if (text.size() <= kMaxShownLength) return absl::CHexEscape(Sv(text));
  return absl::StrCat(absl::CHexEscape(Sv(text.substr(0, kMaxShownLength))), "...");
}

absl::Status Invalid(std::string_view message) { return absl::InvalidArgumentError(Sv(message)); }

absl::Status Truncated(std::string_view field) {
  return Invalid(absl::StrCat("certificate is truncated (missing ", Sv(field), ")"));
}

// ---------------------------------------------------------------------------------------------
// Certificate key types.

struct CertificateTypeInfo {
  std::string_view certificate_name;
  std::string_view plain_name;
  int key_fields;  // SSH strings (or mpints) that hold the public key after the nonce
};

constexpr std::array<CertificateTypeInfo, 7> kCertificateTypes = {{
    {"ssh-ed25519-cert-v01@openssh.com", "ssh-ed25519", 1},
    {"ssh-rsa-cert-v01@openssh.com", "ssh-rsa", 2},
    {"ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp256", 2},
    {"ecdsa-sha2-nistp384-cert-v01@openssh.com", "ecdsa-sha2-nistp384", 2},
    {"ecdsa-sha2-nistp521-cert-v01@openssh.com", "ecdsa-sha2-nistp521", 2},
    {"sk-ssh-ed25519-cert-v01@openssh.com", "sk-ssh-ed25519@openssh.com", 2},
    {"sk-ecdsa-sha2-nistp256-cert-v01@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", 3},
}};

const CertificateTypeInfo* FindCertificateType(std::string_view name) {
  for (const CertificateTypeInfo& info : kCertificateTypes) {
    if (info.certificate_name == name) return &info;
  }
  return nullptr;
}

// CA key types whose signatures we verify (sk-* CAs sign in a different format: not supported).
struct EcCurve {
  std::string_view key_type;
  const char* group;
  const char* digest;
  size_t field_bytes;
};

constexpr std::array<EcCurve, 3> kEcCurves = {{
    {"ecdsa-sha2-nistp256", "prime256v1", "SHA256", 32},
    {"ecdsa-sha2-nistp384", "secp384r1", "SHA384", 48},
    {"ecdsa-sha2-nistp521", "secp521r1", "SHA512", 66},
}};

const EcCurve* FindEcCurve(std::string_view key_type) {
  for (const EcCurve& curve : kEcCurves) {
    if (curve.key_type == key_type) return &curve;
  }
  return nullptr;
}

bool IsVerifiableCaType(std::string_view type) {
  return type == "ssh-ed25519" || type == "ssh-rsa" || FindEcCurve(type) != nullptr;
}

// ---------------------------------------------------------------------------------------------
// Field parsing.

absl::Status ReadCString(SshWireReader& reader, std::string_view field, std::string_view& out) {
  switch (reader.ReadCString(out)) {
    case SshWireReader::CStringResult::kOk:
      return absl::OkStatus();
    case SshWireReader::CStringResult::kTruncated:
      return Truncated(field);
    case SshWireReader::CStringResult::kHasNul:
      return Invalid(absl::StrCat(Sv(field), " contains a NUL byte"));
  }
  return Truncated(field);
}

// A critical options or extensions section: (string name, string data) pairs, names in strictly
// increasing byte order (so also unique), as PROTOCOL.certkeys requires.
absl::Status ParseOptions(std::string_view section, std::string_view kind,
                          std::vector<CertificateOption>& out) {
  SshWireReader reader(section);
  std::string_view previous;
  bool first = true;
  while (!reader.empty()) {
    std::string_view name;
    std::string_view data;
    if (absl::Status s = ReadCString(reader, absl::StrCat(Sv(kind), " name"), name); !s.ok()) {
      return s;
    }
    if (!reader.ReadString(data)) {
      return Invalid(absl::StrCat(Sv(kind), " '", Show(name), "' is truncated (missing data)"));
    }
    if (!first) {
      if (name == previous) {
        return Invalid(absl::StrCat("duplicate ", Sv(kind), " '", Show(name), "'"));
      }
      if (name < previous) {
        return Invalid(absl::StrCat(Sv(kind), "s are not sorted ('", Show(name), "' after '",
                                    Show(previous), "')"));
      }
    }
    first = false;
    previous = name;
    out.push_back({std::string(name), std::string(data)});
  }
  return absl::OkStatus();
}

absl::Status ParsePrincipals(std::string_view section, std::vector<std::string>& out) {
  SshWireReader reader(section);
  while (!reader.empty()) {
    if (out.size() >= kMaxCertificatePrincipals) {
      return Invalid(absl::StrFormat("too many principals (more than %d)", kMaxCertificatePrincipals));
    }
    std::string_view principal;
    if (absl::Status s = ReadCString(reader, "principal", principal); !s.ok()) return s;
    out.emplace_back(principal);
  }
  return absl::OkStatus();
}

absl::Status CheckCaKey(std::string_view blob, std::string& type_out) {
  SshWireReader reader(blob);
  std::string_view type;
  if (!reader.ReadString(type)) return Invalid("CA key is truncated (missing key type)");
  if (IsCertificateKeyType(type)) {
    return Invalid(absl::StrCat("CA key is itself a certificate ('", Show(type), "')"));
  }
  if (!IsVerifiableCaType(type)) {
    return Invalid(absl::StrCat("CA key type '", Show(type), "' is not supported"));
  }
  if (absl::Status s = ValidatePublicKeyBlob(blob); !s.ok()) {
    return Invalid(absl::StrCat("CA key: ", s.message()));
  }
  type_out = std::string(type);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// OpenSSL.

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using UniquePkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Whatever OpenSSL leaves in this thread's error queue is not ours to report later.
struct ClearOpenSslErrors {
  ~ClearOpenSslErrors() { ERR_clear_error(); }
};

const unsigned char* Bytes(std::string_view data) {
  return reinterpret_cast<const unsigned char*>(data.data());
}

UniquePkey FromData(const char* algorithm, OSSL_PARAM* params) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  EVP_PKEY* raw = nullptr;
  if (ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return nullptr;
  }
  return UniquePkey(raw);
}

UniquePkey RsaPublicKey(std::string_view exponent, std::string_view modulus) {
  std::unique_ptr<BIGNUM, BnFree> e(BN_bin2bn(Bytes(exponent), static_cast<int>(exponent.size()), nullptr));
  std::unique_ptr<BIGNUM, BnFree> n(BN_bin2bn(Bytes(modulus), static_cast<int>(modulus.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> builder(OSSL_PARAM_BLD_new());
  if (e == nullptr || n == nullptr || builder == nullptr ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    return nullptr;
  }
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(builder.get()));
  if (params == nullptr) return nullptr;
  return FromData("RSA", params.get());
}

UniquePkey EcPublicKey(const EcCurve& curve, std::string_view point) {
  std::array<OSSL_PARAM, 3> params = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(curve.group), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, const_cast<char*>(point.data()),
                                        point.size()),
      OSSL_PARAM_construct_end()};
  return FromData("EC", params.data());
}

bool DigestVerify(EVP_PKEY* key, const char* digest, std::string_view signature,
                  std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  return ctx != nullptr &&
         EVP_DigestVerifyInit_ex(ctx.get(), nullptr, digest, nullptr, nullptr, key, nullptr) == 1 &&
         EVP_DigestVerify(ctx.get(), Bytes(signature), signature.size(), Bytes(data), data.size()) == 1;
}

// An mpint that is a signature component: non-negative, leading zero bytes dropped (as
// OpenSSH's sshbuf_get_bignum2_bytes_direct), at most `max_bytes` long.
bool SignatureInteger(std::string_view value, size_t max_bytes, std::string_view& out) {
  if (!value.empty() && (static_cast<unsigned char>(value[0]) & 0x80) != 0) return false;
  while (!value.empty() && value[0] == 0) value.remove_prefix(1);
  if (value.size() > max_bytes) return false;
  out = value;
  return true;
}

absl::Status BadSignature() { return Invalid("CA signature does not verify"); }

absl::Status VerifyEd25519(SshWireReader& key, std::string_view algorithm, std::string_view signature,
                           std::string_view data) {
  std::string_view public_key;
  if (!key.ReadString(public_key) || public_key.size() != 32) return Invalid("malformed Ed25519 key");
  if (algorithm != "ssh-ed25519") {
    return Invalid(absl::StrCat("signature algorithm '", Show(algorithm), "' does not match key type ssh-ed25519"));
  }
  if (signature.size() != 64) return Invalid("Ed25519 signature must be 64 bytes");
  UniquePkey pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, Bytes(public_key), public_key.size()));
  if (pkey == nullptr) return Invalid("cannot load Ed25519 key");
  if (!DigestVerify(pkey.get(), nullptr, signature, data)) return BadSignature();
  return absl::OkStatus();
}

absl::Status VerifyRsa(SshWireReader& key, std::string_view algorithm, std::string_view signature,
                       std::string_view data) {
  const char* digest = nullptr;
  if (algorithm == "rsa-sha2-256") {
    digest = "SHA256";
  } else if (algorithm == "rsa-sha2-512") {
    digest = "SHA512";
  } else if (algorithm == "ssh-rsa") {
    return Invalid("RSA signature algorithm ssh-rsa (SHA-1) is not accepted; sign with rsa-sha2-256 or rsa-sha2-512");
  } else {
    return Invalid(absl::StrCat("signature algorithm '", Show(algorithm), "' does not match key type ssh-rsa"));
  }
  std::string_view exponent;
  std::string_view modulus;
  if (!key.ReadString(exponent) || !key.ReadString(modulus)) return Invalid("malformed RSA key");
  UniquePkey pkey = RsaPublicKey(exponent, modulus);
  if (pkey == nullptr) return Invalid("cannot load RSA key");
  const int size = EVP_PKEY_get_size(pkey.get());
  if (size <= 0 || signature.empty() || signature.size() > static_cast<size_t>(size)) {
    return Invalid("RSA signature has the wrong length");
  }
  // OpenSSH accepts signatures shorter than the modulus (leading zero bytes dropped) by padding.
  std::string padded(static_cast<size_t>(size) - signature.size(), '\0');
  padded.append(signature.data(), signature.size());
  if (!DigestVerify(pkey.get(), digest, padded, data)) return BadSignature();
  return absl::OkStatus();
}

absl::Status VerifyEcdsa(const EcCurve& curve, SshWireReader& key, std::string_view algorithm,
                         std::string_view signature, std::string_view data) {
  if (algorithm != curve.key_type) {
    return Invalid(absl::StrCat("signature algorithm '", Show(algorithm), "' does not match key type ",
                                Sv(curve.key_type)));
  }
  std::string_view curve_name;
  std::string_view point;
  if (!key.ReadString(curve_name) || !key.ReadString(point) ||
      "ecdsa-sha2-" + std::string(curve_name) != curve.key_type) {
    return Invalid("malformed ECDSA key");
  }
  SshWireReader parts(signature);
  std::string_view r_field;
  std::string_view s_field;
  std::string_view r;
  std::string_view s;
  if (!parts.ReadString(r_field) || !parts.ReadString(s_field) || !parts.empty() ||
      !SignatureInteger(r_field, curve.field_bytes, r) ||
      !SignatureInteger(s_field, curve.field_bytes, s)) {
    return Invalid("malformed ECDSA signature");
  }
  UniquePkey pkey = EcPublicKey(curve, point);
  if (pkey == nullptr) return Invalid("cannot load ECDSA key");
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
  BIGNUM* r_bn = BN_bin2bn(Bytes(r), static_cast<int>(r.size()), nullptr);
  BIGNUM* s_bn = BN_bin2bn(Bytes(s), static_cast<int>(s.size()), nullptr);
  if (sig == nullptr || r_bn == nullptr || s_bn == nullptr || ECDSA_SIG_set0(sig.get(), r_bn, s_bn) != 1) {
    BN_free(r_bn);
    BN_free(s_bn);
    return Invalid("cannot build ECDSA signature");
  }
  const int der_length = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (der_length <= 0) return Invalid("cannot encode ECDSA signature");
  std::string der(static_cast<size_t>(der_length), '\0');
  unsigned char* cursor = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ECDSA_SIG(sig.get(), &cursor) != der_length) return Invalid("cannot encode ECDSA signature");
  if (!DigestVerify(pkey.get(), curve.digest, der, data)) return BadSignature();
  return absl::OkStatus();
}

}  // namespace

bool Certificate::HasExtension(std::string_view name) const { return FindExtension(name) != nullptr; }

const CertificateOption* Certificate::FindCriticalOption(std::string_view name) const {
  for (const CertificateOption& option : critical_options) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

const CertificateOption* Certificate::FindExtension(std::string_view name) const {
  for (const CertificateOption& option : extensions) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

bool IsCertificateKeyType(std::string_view name) {
  return absl::EndsWith(Sv(name), "-cert-v01@openssh.com") ||
         absl::EndsWith(Sv(name), "-cert-v00@openssh.com");
}

absl::StatusOr<Certificate> ParseCertificate(std::string_view blob) {
  if (blob.size() > kMaxCertificateSize) {
    return Invalid(absl::StrFormat("certificate is too large (%d bytes, at most %d)", blob.size(),
                                   kMaxCertificateSize));
  }
  SshWireReader reader(blob);
  Certificate cert;
  std::string_view field;
  if (!reader.ReadString(field)) return Truncated("key type");
  const CertificateTypeInfo* info = FindCertificateType(field);
  if (info == nullptr) {
    return Invalid(absl::StrCat("unsupported certificate type '", Show(field), "'"));
  }
  cert.certificate_type = std::string(field);
  cert.key_type = std::string(info->plain_name);
  if (!reader.ReadString(field)) return Truncated("nonce");
  cert.nonce = std::string(field);

  // The public key fields, copied as they are behind the plain type name: the plain key blob.
  const std::string_view key_start = reader.rest();
  for (int i = 0; i < info->key_fields; ++i) {
    if (!reader.ReadString(field)) return Truncated("public key");
  }
  const std::string_view key_fields = key_start.substr(0, key_start.size() - reader.remaining());
  PutString(cert.public_key, info->plain_name);
  cert.public_key.append(key_fields.data(), key_fields.size());
  if (absl::Status s = ValidatePublicKeyBlob(cert.public_key); !s.ok()) {
    return Invalid(absl::StrCat("certified key: ", s.message()));
  }

  if (!reader.ReadUint64(cert.serial)) return Truncated("serial");
  if (!reader.ReadUint32(cert.type)) return Truncated("type");
  if (cert.type != kUserCertificate && cert.type != kHostCertificate) {
    return Invalid(absl::StrFormat("unknown certificate type %d (expected 1 for user or 2 for host)", cert.type));
  }
  if (absl::Status s = ReadCString(reader, "key id", field); !s.ok()) return s;
  cert.key_id = std::string(field);
  if (!reader.ReadString(field)) return Truncated("valid principals");
  if (absl::Status s = ParsePrincipals(field, cert.principals); !s.ok()) return s;
  if (!reader.ReadUint64(cert.valid_after)) return Truncated("valid after");
  if (!reader.ReadUint64(cert.valid_before)) return Truncated("valid before");
  if (!reader.ReadString(field)) return Truncated("critical options");
  if (absl::Status s = ParseOptions(field, "critical option", cert.critical_options); !s.ok()) return s;
  if (!reader.ReadString(field)) return Truncated("extensions");
  if (absl::Status s = ParseOptions(field, "extension", cert.extensions); !s.ok()) return s;
  if (!reader.ReadString(field)) return Truncated("reserved");
  cert.reserved = std::string(field);
  if (!reader.ReadString(field)) return Truncated("signature key");
  if (absl::Status s = CheckCaKey(field, cert.ca_key_type); !s.ok()) return s;
  cert.ca_key = std::string(field);
  cert.signed_length = blob.size() - reader.remaining();
  if (!reader.ReadString(field)) return Truncated("signature");
  cert.signature = std::string(field);
  if (!reader.empty()) {
    return Invalid(absl::StrFormat("certificate has %d trailing bytes", reader.remaining()));
  }
  SshWireReader signature(cert.signature);
  std::string_view algorithm;
  if (signature.ReadCString(algorithm) != SshWireReader::CStringResult::kOk) {
    return Invalid("signature is malformed (missing algorithm)");
  }
  cert.signature_algorithm = std::string(algorithm);
  cert.blob = std::string(blob);
  return cert;
}

absl::Status VerifySshSignature(std::string_view public_key, std::string_view signature,
                                std::string_view data) {
  ClearOpenSslErrors clear_errors;
  SshWireReader key(public_key);
  std::string_view key_type;
  if (!key.ReadString(key_type)) return Invalid("malformed public key");
  SshWireReader parts(signature);
  std::string_view algorithm;
  std::string_view raw;
  if (!parts.ReadString(algorithm) || !parts.ReadString(raw)) return Invalid("malformed signature");
  if (!parts.empty()) return Invalid("signature has trailing bytes");
  absl::Status status;
  if (key_type == "ssh-ed25519") {
    status = VerifyEd25519(key, algorithm, raw, data);
  } else if (key_type == "ssh-rsa") {
    // Bounds on the modulus and the exponent before any arithmetic (a huge exponent makes a
    // verification as slow as a private-key operation).
    if (absl::Status valid = ValidatePublicKeyBlob(public_key); !valid.ok()) {
      return Invalid(std::string(valid.message()));
    }
    status = VerifyRsa(key, algorithm, raw, data);
  } else if (const EcCurve* curve = FindEcCurve(key_type); curve != nullptr) {
    status = VerifyEcdsa(*curve, key, algorithm, raw, data);
  } else {
    return Invalid(absl::StrCat("signatures by '", Show(key_type), "' keys are not supported"));
  }
  if (status.ok() && !key.empty()) return Invalid("public key has trailing bytes");
  return status;
}

absl::Status VerifyCertificateSignature(const Certificate& certificate) {
  if (certificate.signed_length > certificate.blob.size()) return Invalid("certificate is inconsistent");
  return VerifySshSignature(certificate.ca_key, certificate.signature,
                            std::string_view(certificate.blob).substr(0, certificate.signed_length));
}

absl::StatusOr<Certificate> ParseAndVerifyCertificate(std::string_view blob) {
  absl::StatusOr<Certificate> cert = ParseCertificate(blob);
  if (!cert.ok()) return cert.status();
  if (absl::Status s = VerifyCertificateSignature(*cert); !s.ok()) return s;
  return cert;
}

absl::StatusOr<std::string> CertificateOptionString(const CertificateOption& option) {
  SshWireReader reader(option.data);
  std::string_view value;
  switch (reader.ReadCString(value)) {
    case SshWireReader::CStringResult::kOk:
      break;
    case SshWireReader::CStringResult::kTruncated:
      return Invalid(absl::StrCat("option '", Show(option.name), "' has a malformed value"));
    case SshWireReader::CStringResult::kHasNul:
      return Invalid(absl::StrCat("option '", Show(option.name), "' value contains a NUL byte"));
  }
  if (!reader.empty()) {
    return Invalid(absl::StrCat("option '", Show(option.name), "' has trailing data"));
  }
  return std::string(value);
}

}  // namespace alknet::auth
