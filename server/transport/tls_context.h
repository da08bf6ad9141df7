// The server's TLS configuration (OpenSSL 3): certificate loading or self-signed generation,
// the SSL_CTX settings of a profile (`nginx`: what a stock Debian 12 nginx 1.22.1 presents;
// `modern`: TLS 1.2+ with ECDHE-AEAD only), and reload of the certificate files without a
// restart.
#pragma once

#include <openssl/ssl.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/common/log.h"
#include "server/transport/tls_ticket_keys.h"

namespace alknet {

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::shared_ptr<SSL_CTX>;

// What the TLS server presents (docs/configuration.md, tls.profile; docs/stealth.md):
// - kNginx: a stock Debian 12 nginx 1.22.1 with Debian's nginx.conf (ssl_protocols TLSv1..TLSv1.3,
//   ssl_prefer_server_ciphers on) and nginx's defaults (ssl_ciphers HIGH:!aNULL:!MD5,
//   ssl_session_timeout 5m, ssl_session_cache none, session tickets on, ssl_ecdh_curve auto,
//   no http2), on Debian's OpenSSL 3.0: same versions, cipher order, groups, extensions
//   (SNI acknowledged), ticket lifetime hint (300 s) and ticket size.
// - kModern: TLS 1.2+, ECDHE with AEAD only, the client's cipher order, OpenSSL's session
//   defaults.
// Both answer ALPN like nginx without http2 and encrypt tickets with a rotated TicketKeyRing.
enum class TlsProfile { kNginx, kModern };
std::string_view TlsProfileName(TlsProfile profile);

// A certificate on disk: its files, and the SHA-256 fingerprint of the leaf in OpenSSL's
// "AB:CD:..." form (what `openssl x509 -fingerprint -sha256` prints).
struct TlsCertificateInfo {
  std::string cert_path;
  std::string key_path;
  std::string fingerprint;
  bool generated = false;
};

// SHA-256 of the DER certificate in OpenSSL's "AB:CD:..." form (32 upper-case hex pairs joined
// by ':'), the form the server logs and tls_fingerprint accepts; "" for nullptr.
std::string CertificateFingerprint(X509* cert);

// Writes a fresh self-signed EC P-256 certificate (CN and SAN = `host`, 10 years) and its key
// (mode 0600) to the given paths, replacing nothing: fails if either exists.
absl::Status GenerateSelfSignedCertificate(const std::string& cert_path,
                                           const std::string& key_path, const std::string& host);

// Builds a server SSL_CTX of `profile` from PEM files; errors name the file at fault. With
// `tickets`, session tickets use (and the context keeps alive) that ring; without, OpenSSL's
// own per-context keys.
absl::StatusOr<SslCtxPtr> BuildServerContext(const std::string& cert_path,
                                             const std::string& key_path,
                                             std::string* fingerprint,
                                             TlsProfile profile = TlsProfile::kModern,
                                             std::shared_ptr<TicketKeyRing> tickets = nullptr);

// What identifies one version of a file on disk.
struct TlsFileStamp {
  struct timespec mtime {};
  struct timespec ctime {};
  off_t size = -1;
  ino_t inode = 0;
  bool operator==(const TlsFileStamp& other) const;
};

// Thread-safe holder of the current SSL_CTX. Current() is called on each new handshake; at most
// every `check_interval` it compares the files' mtime/size/inode with what it loaded and, when
// they changed, builds a new context and swaps it in (connections keep the one they started
// with). A bad new file keeps the old context and logs an error.
class TlsContextStore {
 public:
  // Empty cert/key: <state_dir>/tls_cert.pem + tls_key.pem, generated on first start.
  static absl::StatusOr<std::unique_ptr<TlsContextStore>> Create(
      std::string cert_path, std::string key_path, const std::string& state_dir,
      const std::string& cert_host, Logger& logger,
      std::chrono::milliseconds check_interval = std::chrono::seconds(2),
      TlsProfile profile = TlsProfile::kModern);

  SslCtxPtr Current();
  TlsCertificateInfo info() const;
  TlsProfile profile() const { return profile_; }

 private:
  using FileStamp = TlsFileStamp;
  static FileStamp Stamp(const std::string& path);

  TlsContextStore(TlsCertificateInfo info, SslCtxPtr ctx, Logger& logger,
                  std::chrono::milliseconds check_interval, TlsProfile profile,
                  std::shared_ptr<TicketKeyRing> tickets);

  Logger& logger_;
  const std::chrono::milliseconds check_interval_;
  const TlsProfile profile_;
  const std::shared_ptr<TicketKeyRing> tickets_;  // shared by every context this store builds
  mutable absl::Mutex mu_;
  TlsCertificateInfo info_ ABSL_GUARDED_BY(mu_);
  SslCtxPtr ctx_ ABSL_GUARDED_BY(mu_);
  std::pair<FileStamp, FileStamp> loaded_ ABSL_GUARDED_BY(mu_);
  std::pair<FileStamp, FileStamp> rejected_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_check_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alknet
