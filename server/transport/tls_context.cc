// The server's TLS configuration: certificate loading or generation, SSL_CTX settings of the
// profiles, reload.
#include "server/transport/tls_context.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"
#include "server/transport/openssl_status.h"

namespace alknet {
namespace {

// ALPN like nginx 1.22 without http2: http/1.1 (or 1.0, 0.9) when offered; a client that offers
// ALPN without any of them gets the "no_application_protocol" alert, as from nginx.
constexpr unsigned char kAlpnProtocols[] = "\x08http/1.1\x08http/1.0\x08http/0.9";

// `modern`: TLS 1.2 suites of a current web server, ECDHE with AEAD only. TLS 1.3 keeps
// OpenSSL's list.
constexpr const char* kModernTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnProtocols, sizeof(kAlpnProtocols) - 1, in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// `nginx`: ssl_ciphers' default in nginx 1.22 (ngx_http_ssl_module), TLS 1.2 and below.
constexpr const char* kNginxCiphers = "HIGH:!aNULL:!MD5";
// ssl_session_timeout's default (5m): the session lifetime, so also the ticket lifetime hint.
constexpr long kNginxSessionTimeoutSeconds = 300;

// nginx's server name callback (ngx_http_ssl_servername) returns OK for every name it gets, so
// OpenSSL acknowledges SNI with an empty server_name extension (observed on 1.22.1 with names
// nginx's Host check refuses, too: "a..b", "x/y"). Without a callback OpenSSL stays silent.
int AcknowledgeServerName(SSL*, int*, void*) { return SSL_TLSEXT_ERR_OK; }

// nginx's session ID context (ngx_ssl_session_id_context): SHA-1 over "HTTP" and the SHA-1 of
// each server certificate. It travels inside every ticket, so it also sets the ticket's size.
bool SetNginxSessionIdContext(SSL_CTX* ctx) {
  X509* leaf = SSL_CTX_get0_certificate(ctx);
  unsigned char cert_digest[EVP_MAX_MD_SIZE];
  unsigned int cert_digest_length = 0;
  if (leaf == nullptr || X509_digest(leaf, EVP_sha1(), cert_digest, &cert_digest_length) != 1) {
    return false;
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char context[EVP_MAX_MD_SIZE];
  unsigned int context_length = 0;
  return md && EVP_DigestInit_ex(md.get(), EVP_sha1(), nullptr) == 1 &&
         EVP_DigestUpdate(md.get(), "HTTP", 4) == 1 &&
         EVP_DigestUpdate(md.get(), cert_digest, cert_digest_length) == 1 &&
         EVP_DigestFinal_ex(md.get(), context, &context_length) == 1 &&
         SSL_CTX_set_session_id_context(ctx, context, context_length) == 1;
}

// The options ngx_ssl_create() and the http module's defaults set, as far as OpenSSL 3.0 still
// has them (the old bug workarounds are 0 there; client renegotiation is off by default and
// SSL_OP_NO_CLIENT_RENEGOTIATION does not exist). Debian's nginx.conf enables TLSv1..TLSv1.3;
// OpenSSL 3.0 itself refuses TLS 1.0/1.1 at its default security level 1, with nginx's alerts.
absl::Status ApplyNginxProfile(SSL_CTX* ctx) {
  SSL_CTX_clear_options(ctx, SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2 |
                                 SSL_OP_NO_TLSv1_3);
  SSL_CTX_set_options(ctx, SSL_OP_NO_SSLv3 | SSL_OP_DONT_INSERT_EMPTY_FRAGMENTS |
                               SSL_OP_NO_COMPRESSION | SSL_OP_NO_ANTI_REPLAY |
                               SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_min_proto_version(ctx, 0);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
  if (SSL_CTX_set_cipher_list(ctx, kNginxCiphers) != 1) {
    return OpenSslStatus(absl::StatusCode::kInternal, "cipher list");
  }
  // ssl_session_cache's default "none": sessions look resumable but are never stored, so only
  // tickets resume.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_AUTO_CLEAR |
                                          SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_cache_size(ctx, 1);
  SSL_CTX_set_timeout(ctx, kNginxSessionTimeoutSeconds);
  SSL_CTX_set_tlsext_servername_callback(ctx, AcknowledgeServerName);
  return absl::OkStatus();
}

absl::Status ApplyModernProfile(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (SSL_CTX_set_cipher_list(ctx, kModernTls12Ciphers) != 1) {
    return OpenSslStatus(absl::StatusCode::kInternal, "cipher list");
  }
  return absl::OkStatus();
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  if (!dir.empty() && dir.back() == '/') return absl::StrCat(dir, Sv(name));
  return absl::StrCat(dir, "/", Sv(name));
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}


// Writes `contents` to a new file `path` (O_EXCL) with `mode`.
absl::Status WriteNewFile(const std::string& path, const std::string& contents, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create ", path), errno);
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      close(fd);
      unlink(path.c_str());
      return ErrnoStatus(absl::StrCat("write ", path), saved);
    }
    done += static_cast<size_t>(n);
  }
  fchmod(fd, mode);
  if (close(fd) != 0) return ErrnoStatus(absl::StrCat("close ", path), errno);
  return absl::OkStatus();
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return size > 0 ? std::string(data, static_cast<size_t>(size)) : std::string();
}

bool AddExtension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

}  // namespace

std::string CertificateFingerprint(X509* cert) {
  if (cert == nullptr) return "";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert, EVP_sha256(), digest, &length) != 1) return "";
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    if (i > 0) out.push_back(':');
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

absl::Status GenerateSelfSignedCertificate(const std::string& cert_path,
                                           const std::string& key_path, const std::string& host) {
  ERR_clear_error();
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) return OpenSslStatus(absl::StatusCode::kInternal, "EC key generation");
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  if (!cert) return absl::InternalError("X509_new failed");
  X509_set_version(cert.get(), 2);
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  serial_bytes[0] &= 0x7f;  // positive
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(
      BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr), BN_free);
  BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  unsigned char ip[16];
  bool is_ip = inet_pton(AF_INET, host.c_str(), ip) == 1 || inet_pton(AF_INET6, host.c_str(), ip) == 1;
  std::string san = absl::StrCat(is_ip ? "IP:" : "DNS:", host);
  if (host != "localhost") san += ",DNS:localhost";
  if (!AddExtension(cert.get(), NID_subject_alt_name, san) ||
      !AddExtension(cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExtension(cert.get(), NID_key_usage, "critical,digitalSignature") ||
      !AddExtension(cert.get(), NID_ext_key_usage, "serverAuth") ||
      !AddExtension(cert.get(), NID_subject_key_identifier, "hash")) {
    return OpenSslStatus(absl::StatusCode::kInternal, "certificate extensions");
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return OpenSslStatus(absl::StatusCode::kInternal, "certificate signing");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> key_pem(BIO_new(BIO_s_mem()), BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> cert_pem(BIO_new(BIO_s_mem()), BIO_free);
  if (PEM_write_bio_PrivateKey(key_pem.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1 ||
      PEM_write_bio_X509(cert_pem.get(), cert.get()) != 1) {
    return OpenSslStatus(absl::StatusCode::kInternal, "PEM encoding");
  }
  if (absl::Status status = WriteNewFile(key_path, BioContents(key_pem.get()), 0600); !status.ok()) {
    return status;
  }
  if (absl::Status status = WriteNewFile(cert_path, BioContents(cert_pem.get()), 0644);
      !status.ok()) {
    unlink(key_path.c_str());
    return status;
  }
  return absl::OkStatus();
}

std::string_view TlsProfileName(TlsProfile profile) {
  return profile == TlsProfile::kNginx ? "nginx" : "modern";
}

absl::StatusOr<SslCtxPtr> BuildServerContext(const std::string& cert_path,
                                             const std::string& key_path,
                                             std::string* fingerprint, TlsProfile profile,
                                             std::shared_ptr<TicketKeyRing> tickets) {
  ERR_clear_error();
  // The deleter keeps the ticket ring alive as long as the context (and its connections).
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()),
                [tickets](SSL_CTX* doomed) { SSL_CTX_free(doomed); });
  if (!ctx) return OpenSslStatus(absl::StatusCode::kInternal, "SSL_CTX_new");
  absl::Status applied = profile == TlsProfile::kNginx ? ApplyNginxProfile(ctx.get())
                                                       : ApplyModernProfile(ctx.get());
  if (!applied.ok()) return applied;
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // Read ahead: one read() takes several records instead of two read()s per record. The
  // transport always reads until SSL_read wants more, so nothing stays buffered unseen.
  SSL_CTX_set_read_ahead(ctx.get(), 1);
  SSL_CTX_set_default_read_buffer_len(ctx.get(), 64 * 1024);
  if (tickets != nullptr) tickets->Install(ctx.get());
  SSL_CTX_set_alpn_select_cb(ctx.get(), SelectAlpn, nullptr);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_path.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate ", cert_path, ": cannot load PEM certificate chain: ",
                     OpenSslErrorText()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_path.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS key ", key_path,
                                                   ": cannot load PEM private key: ",
                                                   OpenSslErrorText()));
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS key ", key_path,
                                                   " does not match the certificate ", cert_path,
                                                   ": ", OpenSslErrorText()));
  }
  if (profile == TlsProfile::kNginx && !SetNginxSessionIdContext(ctx.get())) {
    return OpenSslStatus(absl::StatusCode::kInternal, "session ID context");
  }
  if (fingerprint != nullptr) {
    *fingerprint = CertificateFingerprint(SSL_CTX_get0_certificate(ctx.get()));
  }
  return ctx;
}

bool TlsFileStamp::operator==(const TlsFileStamp& other) const {
  return mtime.tv_sec == other.mtime.tv_sec && mtime.tv_nsec == other.mtime.tv_nsec &&
         ctime.tv_sec == other.ctime.tv_sec && ctime.tv_nsec == other.ctime.tv_nsec &&
         size == other.size && inode == other.inode;
}

TlsContextStore::FileStamp TlsContextStore::Stamp(const std::string& path) {
  FileStamp stamp;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return stamp;
  stamp.mtime = st.st_mtim;
  stamp.ctime = st.st_ctim;
  stamp.size = st.st_size;
  stamp.inode = st.st_ino;
  return stamp;
}

absl::StatusOr<std::unique_ptr<TlsContextStore>> TlsContextStore::Create(
    std::string cert_path, std::string key_path, const std::string& state_dir,
    const std::string& cert_host, Logger& logger, std::chrono::milliseconds check_interval,
    TlsProfile profile) {
  TlsCertificateInfo info;
  if (cert_path.empty() && key_path.empty()) {
    cert_path = JoinPath(state_dir, "tls_cert.pem");
    key_path = JoinPath(state_dir, "tls_key.pem");
    bool have_cert = FileExists(cert_path);
    bool have_key = FileExists(key_path);
    if (!have_cert && !have_key) {
      mkdir(state_dir.c_str(), 0700);
      if (absl::Status status = GenerateSelfSignedCertificate(cert_path, key_path, cert_host);
          !status.ok()) {
        return status;
      }
      info.generated = true;
    } else if (have_cert != have_key) {
      return absl::FailedPreconditionError(
          absl::StrCat("TLS ", have_cert ? "key " : "certificate ", have_cert ? key_path : cert_path,
                       " is missing while ", have_cert ? cert_path : key_path,
                       " exists: remove it to generate a new pair, or restore both"));
    }
  }
  info.cert_path = cert_path;
  info.key_path = key_path;
  std::pair<FileStamp, FileStamp> stamps{Stamp(cert_path), Stamp(key_path)};
  auto tickets = std::make_shared<TicketKeyRing>();
  absl::StatusOr<SslCtxPtr> ctx =
      BuildServerContext(cert_path, key_path, &info.fingerprint, profile, tickets);
  if (!ctx.ok()) return ctx.status();
  logger.Info("tls", info.generated ? "generated self-signed certificate" : "loaded certificate",
              {{"cert", cert_path}, {"key", key_path}, {"sha256", info.fingerprint},
               {"profile", std::string(TlsProfileName(profile))}});
  std::unique_ptr<TlsContextStore> store(new TlsContextStore(
      std::move(info), *std::move(ctx), logger, check_interval, profile, std::move(tickets)));
  absl::MutexLock lock(&store->mu_);
  store->loaded_ = stamps;
  return store;
}

TlsContextStore::TlsContextStore(TlsCertificateInfo info, SslCtxPtr ctx, Logger& logger,
                                 std::chrono::milliseconds check_interval, TlsProfile profile,
                                 std::shared_ptr<TicketKeyRing> tickets)
    : logger_(logger), check_interval_(check_interval), profile_(profile),
      tickets_(std::move(tickets)), info_(std::move(info)),
      ctx_(std::move(ctx)), last_check_(std::chrono::steady_clock::now()) {}

TlsCertificateInfo TlsContextStore::info() const {
  absl::MutexLock lock(&mu_);
  return info_;
}

SslCtxPtr TlsContextStore::Current() {
  absl::MutexLock lock(&mu_);
  auto now = std::chrono::steady_clock::now();
  if (now - last_check_ < check_interval_) return ctx_;
  last_check_ = now;
  std::pair<FileStamp, FileStamp> stamps{Stamp(info_.cert_path), Stamp(info_.key_path)};
  if ((stamps.first == loaded_.first && stamps.second == loaded_.second) ||
      (stamps.first == rejected_.first && stamps.second == rejected_.second)) {
    return ctx_;
  }
  std::string fingerprint;
  absl::StatusOr<SslCtxPtr> ctx =
      BuildServerContext(info_.cert_path, info_.key_path, &fingerprint, profile_, tickets_);
  if (!ctx.ok()) {
    // A half-written pair (new cert, old key) lands here too; the next change is tried again.
    rejected_ = stamps;
    logger_.Error("tls", "certificate reload failed; keeping the current certificate",
                  {{"error", std::string(ctx.status().message())}});
    return ctx_;
  }
  ctx_ = *std::move(ctx);
  loaded_ = stamps;
  info_.fingerprint = fingerprint;
  logger_.Info("tls", "reloaded certificate",
               {{"cert", info_.cert_path}, {"sha256", info_.fingerprint}});
  return ctx_;
}

}  // namespace alknet
