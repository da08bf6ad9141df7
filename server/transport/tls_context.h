// The server's TLS configuration (OpenSSL 3): certificate loading or self-signed generation,
// the SSL_CTX settings of a web server (TLS 1.2+, no renegotiation, ALPN http/1.1), and reload
// of the certificate files without a restart.
#pragma once

#include <openssl/ssl.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/common/log.h"

namespace alknet {

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::shared_ptr<SSL_CTX>;

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

// Builds a server SSL_CTX from PEM files; errors name the file at fault.
absl::StatusOr<SslCtxPtr> BuildServerContext(const std::string& cert_path,
                                             const std::string& key_path,
                                             std::string* fingerprint);

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
      std::chrono::milliseconds check_interval = std::chrono::seconds(2));

  SslCtxPtr Current();
  TlsCertificateInfo info() const;

 private:
  using FileStamp = TlsFileStamp;
  static FileStamp Stamp(const std::string& path);

  TlsContextStore(TlsCertificateInfo info, SslCtxPtr ctx, Logger& logger,
                  std::chrono::milliseconds check_interval);

  Logger& logger_;
  const std::chrono::milliseconds check_interval_;
  mutable absl::Mutex mu_;
  TlsCertificateInfo info_ ABSL_GUARDED_BY(mu_);
  SslCtxPtr ctx_ ABSL_GUARDED_BY(mu_);
  std::pair<FileStamp, FileStamp> loaded_ ABSL_GUARDED_BY(mu_);
  std::pair<FileStamp, FileStamp> rejected_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_check_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alknet
