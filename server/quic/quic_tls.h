// GnuTLS for QUIC (ADR 0018): server credentials from the tls:// PEM files, client credentials
// with the tls:// verification choices (pin, CA file plus name, or none), and sessions set up
// for ngtcp2 with the mandatory ALPN alknet-ssh/1.
#pragma once

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace alknet::quic {

// The one application protocol a QUIC connection may carry; any other offer ends the handshake
// with no_application_protocol.
inline constexpr std::string_view kAlpn = "alknet-ssh/1";

struct CredentialsDeleter {
  void operator()(gnutls_certificate_credentials_t cred) const { gnutls_certificate_free_credentials(cred); }
};
using Credentials =
    std::unique_ptr<std::remove_pointer_t<gnutls_certificate_credentials_t>, CredentialsDeleter>;

struct SessionDeleter {
  void operator()(gnutls_session_t session) const { gnutls_deinit(session); }
};
using Session = std::unique_ptr<std::remove_pointer_t<gnutls_session_t>, SessionDeleter>;

// The server's certificate chain and key (PEM); errors name the file.
absl::StatusOr<Credentials> LoadServerCredentials(const std::string& cert_path,
                                                  const std::string& key_path);

// How a client checks the server (the tls:// choices): exactly one of the pin, none, or the
// chain against ca_file (or the system roots) plus the name.
struct ClientVerify {
  std::string name;         // certificate name to check (and SNI unless an IP literal)
  std::string ca_file;      // PEM bundle; empty: the system roots
  std::string fingerprint;  // "AB:CD:..." SHA-256 of the leaf
  bool insecure = false;
};
// What ngtcp2's crypto callbacks and the certificate check find behind a session's pointer:
// ngtcp2 reads it as its conn_ref (the first member), the check reads `verify` (client).
struct SessionRef {
  ngtcp2_crypto_conn_ref conn_ref{};
  const ClientVerify* verify = nullptr;
};

// Client credentials for `verify`; the check runs at the handshake through the session's
// SessionRef.
absl::StatusOr<Credentials> ClientCredentials(const ClientVerify& verify);

// A GnuTLS session for ngtcp2 with TLS 1.3 only and ALPN alknet-ssh/1 mandatory; `ref`
// (outliving the session) leads ngtcp2's crypto callbacks to the connection.
absl::StatusOr<Session> NewServerSession(gnutls_certificate_credentials_t cred, SessionRef* ref);
absl::StatusOr<Session> NewClientSession(gnutls_certificate_credentials_t cred, SessionRef* ref);

// The SHA-256 of the peer's leaf certificate in "AB:CD:..." form; "" without one.
std::string PeerFingerprint(gnutls_session_t session);

}  // namespace alknet::quic
