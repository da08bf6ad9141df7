// GnuTLS credentials, certificate checks and session set-up for ngtcp2 (both roles).
#include "server/quic/quic_tls.h"

#include <arpa/inet.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/quic/quic_status.h"

namespace alknet::quic {
namespace {

// TLS 1.3 only (QUIC requires it), no middlebox compatibility mode.
constexpr char kPriority[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:%DISABLE_TLS13_COMPAT_MODE";

bool IsIpLiteral(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 || inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

const ClientVerify* VerifyOf(gnutls_session_t session) {
  auto* ref = static_cast<SessionRef*>(gnutls_session_get_ptr(session));
  return ref == nullptr ? nullptr : ref->verify;
}

// GnuTLS's certificate callback: 0 accepts the server, anything else ends the handshake.
int CheckServer(gnutls_session_t session) {
  const ClientVerify* verify = VerifyOf(session);
  if (verify == nullptr) return GNUTLS_E_CERTIFICATE_ERROR;
  if (verify->insecure) return 0;
  if (!verify->fingerprint.empty()) {
    return absl::AsciiStrToUpper(PeerFingerprint(session)) == verify->fingerprint
               ? 0
               : GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR;
  }
  unsigned int status = 0;
  if (gnutls_certificate_verify_peers3(session, verify->name.c_str(), &status) < 0 || status != 0) {
    return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR;
  }
  return 0;
}

absl::StatusOr<Session> NewSession(unsigned flags, gnutls_certificate_credentials_t cred,
                                   SessionRef* ref) {
  gnutls_session_t raw = nullptr;
  if (int rv = gnutls_init(&raw, flags | GNUTLS_NO_END_OF_EARLY_DATA); rv < 0) {
    return GnutlsStatus("gnutls_init", rv);
  }
  Session session(raw);
  bool server = (flags & GNUTLS_SERVER) != 0;
  int rv = server ? ngtcp2_crypto_gnutls_configure_server_session(raw)
                  : ngtcp2_crypto_gnutls_configure_client_session(raw);
  if (rv != 0) return absl::InternalError("quic: cannot configure the GnuTLS session for ngtcp2");
  if (rv = gnutls_priority_set_direct(raw, kPriority, nullptr); rv < 0) {
    return GnutlsStatus("gnutls priority", rv);
  }
  if (rv = gnutls_credentials_set(raw, GNUTLS_CRD_CERTIFICATE, cred); rv < 0) {
    return GnutlsStatus("gnutls credentials", rv);
  }
  gnutls_datum_t alpn{reinterpret_cast<unsigned char*>(const_cast<char*>(kAlpn.data())),
                      static_cast<unsigned>(kAlpn.size())};
  if (rv = gnutls_alpn_set_protocols(raw, &alpn, 1, GNUTLS_ALPN_MANDATORY); rv < 0) {
    return GnutlsStatus("gnutls alpn", rv);
  }
  gnutls_session_set_ptr(raw, ref);  // ngtcp2 reads &ref->conn_ref, the first member
  return session;
}

}  // namespace

absl::StatusOr<Credentials> LoadServerCredentials(const std::string& cert_path,
                                                  const std::string& key_path) {
  gnutls_certificate_credentials_t raw = nullptr;
  if (int rv = gnutls_certificate_allocate_credentials(&raw); rv < 0) {
    return GnutlsStatus("gnutls credentials", rv);
  }
  Credentials cred(raw);
  if (int rv = gnutls_certificate_set_x509_key_file(raw, cert_path.c_str(), key_path.c_str(),
                                                    GNUTLS_X509_FMT_PEM);
      rv < 0) {
    return GnutlsStatus(absl::StrCat("quic: certificate ", cert_path, " / key ", key_path), rv);
  }
  return cred;
}

absl::StatusOr<Credentials> ClientCredentials(const ClientVerify& verify) {
  gnutls_certificate_credentials_t raw = nullptr;
  if (int rv = gnutls_certificate_allocate_credentials(&raw); rv < 0) {
    return GnutlsStatus("gnutls credentials", rv);
  }
  Credentials cred(raw);
  if (!verify.insecure && verify.fingerprint.empty()) {
    int rv = verify.ca_file.empty()
                 ? gnutls_certificate_set_x509_system_trust(raw)
                 : gnutls_certificate_set_x509_trust_file(raw, verify.ca_file.c_str(), GNUTLS_X509_FMT_PEM);
    if (rv < 0) {
      return GnutlsStatus(verify.ca_file.empty() ? "quic: system roots"
                                                 : absl::StrCat("tls_ca_file ", verify.ca_file),
                          rv);
    }
    if (rv == 0 && !verify.ca_file.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls_ca_file ", verify.ca_file, ": no certificate in it"));
    }
  }
  gnutls_certificate_set_verify_function(raw, CheckServer);
  return cred;
}

absl::StatusOr<Session> NewServerSession(gnutls_certificate_credentials_t cred, SessionRef* ref) {
  return NewSession(GNUTLS_SERVER, cred, ref);
}

absl::StatusOr<Session> NewClientSession(gnutls_certificate_credentials_t cred, SessionRef* ref) {
  absl::StatusOr<Session> session = NewSession(GNUTLS_CLIENT, cred, ref);
  if (!session.ok()) return session;
  const ClientVerify& verify = *ref->verify;
  if (!verify.name.empty() && !IsIpLiteral(verify.name)) {
    if (int rv = gnutls_server_name_set(session->get(), GNUTLS_NAME_DNS, verify.name.data(),
                                        verify.name.size());
        rv < 0) {
      return GnutlsStatus("gnutls server name", rv);
    }
  }
  return session;
}

std::string PeerFingerprint(gnutls_session_t session) {
  unsigned int count = 0;
  const gnutls_datum_t* chain = gnutls_certificate_get_peers(session, &count);
  if (chain == nullptr || count == 0) return "";
  unsigned char digest[32];
  size_t size = sizeof(digest);
  if (gnutls_fingerprint(GNUTLS_DIG_SHA256, &chain[0], digest, &size) < 0 || size != sizeof(digest)) {
    return "";
  }
  std::string out;
  for (size_t i = 0; i < size; ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ":", absl::Hex(digest[i], absl::kZeroPad2));
  }
  return absl::AsciiStrToUpper(out);
}

}  // namespace alknet::quic
