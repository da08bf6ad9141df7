// libFuzzer target: the OpenSSH certificate parser, its CA signature check and the policy on
// what parsed; the KRL / revoked-keys parsers and lookups on what they built.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/auth/authorized_keys.h"
#include "server/auth/certificate.h"
#include "server/auth/certificate_policy.h"
#include "server/auth/fingerprint.h"
#include "server/auth/key_set.h"
#include "server/auth/revocation.h"

namespace {

using namespace alknet::auth;

void Check(bool condition) {
  if (!condition) std::abort();
}

void FuzzCertificate(std::string_view input, const RevocationList& revoked) {
  absl::StatusOr<Certificate> cert = ParseCertificate(input);
  if (!cert.ok()) return;
  // Invariants of an accepted certificate.
  Check(cert->blob == input);
  Check(cert->signed_length < input.size());
  Check(IsCertificateKeyType(cert->certificate_type));
  Check(ValidatePublicKeyBlob(cert->public_key).ok());
  Check(ValidatePublicKeyBlob(cert->ca_key).ok());
  Check(!IsCertificateKeyType(cert->ca_key_type));
  Check(cert->type == kUserCertificate || cert->type == kHostCertificate);
  Check(cert->principals.size() <= kMaxCertificatePrincipals);
  for (const auto* options : {&cert->critical_options, &cert->extensions}) {
    for (size_t i = 1; i < options->size(); ++i) Check((*options)[i - 1].name < (*options)[i].name);
    for (const CertificateOption& option : *options) (void)CertificateOptionString(option);
  }
  (void)VerifyCertificateSignature(*cert);

  // The policy, with the certificate's own CA trusted both ways.
  AuthorizedKey ca;
  ca.key_type = cert->ca_key_type;
  ca.blob = cert->ca_key;
  ca.fingerprint = Sha256Fingerprint(ca.blob);
  ca.source = "fuzz:1";
  TrustedCaSet cas({ca});
  ca.options.cert_authority = true;
  ca.options.principals = {"ops"};
  KeySet keys({ca});
  for (std::string_view user : {"tester", "ops", ""}) {
    for (std::string_view ip : {"192.0.2.7", "2001:db8::1", "not-an-ip"}) {
      CertificateVerdict verdict =
          EvaluateCertificate(*cert, {.user = user, .source_ip = ip, .now = absl::FromUnixSeconds(1800000000),
                                      .authorized_keys = &keys, .trusted_cas = &cas, .revoked = &revoked});
      if (verdict.accepted()) Check(cert->type == kUserCertificate);
    }
  }
  (void)revoked.IsCertificateRevoked(*cert);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // KRL or plain revoked-keys list.
  RevocationList revoked;
  const bool parsed = ParseRevocationFile(input, "fuzz", revoked).ok();
  revoked.Finish();
  if (parsed) {
    (void)revoked.IsKeyRevoked(input);
    Certificate probe;
    probe.key_id = "alice";
    for (uint64_t serial : {uint64_t{0}, uint64_t{1}, uint64_t{42}, UINT64_MAX}) {
      probe.serial = serial;
      (void)revoked.IsCertificateRevoked(probe);
    }
  }
  // Also the KRL body parser directly on KRL-shaped input.
  if (IsKrl(input)) {
    RevocationList direct;
    (void)ParseKrl(input, direct);
  }

  FuzzCertificate(input, revoked);
  return 0;
}
