// The client side of tls://: handshake on the caller's loop, certificate check (pin, chain +
// name, or none), then the socketpair bridge. Nothing blocks.
#include "server/transport/tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/transport/openssl_status.h"

namespace alknet {
namespace {

// ALPN: one protocol the server's web face speaks, as an HTTPS client of it would offer.
// The server starts SSH on the first bytes, whatever was negotiated.
constexpr unsigned char kAlpn[] = "\x08http/1.1";

bool IsIpLiteral(const std::string& host) {
  unsigned char address[16];
  return inet_pton(AF_INET, host.c_str(), address) == 1 ||
         inet_pton(AF_INET6, host.c_str(), address) == 1;
}

}  // namespace

absl::StatusOr<SslCtxPtr> BuildClientContext(const TlsClientOptions& options) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()), SslCtxDeleter());
  if (!ctx) return OpenSslStatus(absl::StatusCode::kInternal, "tls: SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // As on the server: the relay always reads until SSL_read wants more.
  SSL_CTX_set_read_ahead(ctx.get(), 1);
  SSL_CTX_set_default_read_buffer_len(ctx.get(), 64 * 1024);
  if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn) - 1) != 0) {
    return OpenSslStatus(absl::StatusCode::kInternal, "tls: ALPN");
  }
  if (options.insecure) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    return ctx;
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!options.fingerprint.empty()) {
    // The pin replaces chain verification entirely (a self-signed certificate is the norm).
    SSL_CTX_set_cert_verify_callback(ctx.get(), &TlsClientStream::CheckPin, nullptr);
    return ctx;
  }
  if (!options.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr) != 1) {
      return OpenSslStatus(absl::StatusCode::kInvalidArgument,
                           absl::StrCat("tls: CA file ", options.ca_file, ": cannot load"));
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    return OpenSslStatus(absl::StatusCode::kInternal, "tls: system CA roots");
  }
  return ctx;
}

TlsClientStream::TlsClientStream(EventLoop& loop, Logger& logger, std::string label, UniqueFd fd,
                                 TlsClientOptions options, Done done)
    : loop_(loop), logger_(logger), label_(std::move(label)), fd_(std::move(fd)),
      options_(std::move(options)), done_(std::move(done)), plain_side_(this) {}

TlsClientStream::~TlsClientStream() {
  done_ = nullptr;
  Shutdown();
  if (ssl_ != nullptr) SSL_free(ssl_);
}

// Replaces OpenSSL's chain verification when a pin is set: the leaf's SHA-256 must match.
int TlsClientStream::CheckPin(X509_STORE_CTX* store, void*) {
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* self = ssl != nullptr ? static_cast<TlsClientStream*>(SSL_get_app_data(ssl)) : nullptr;
  if (self == nullptr) return 0;
  self->presented_ = CertificateFingerprint(X509_STORE_CTX_get0_cert(store));
  if (!self->presented_.empty() && self->presented_ == self->options_.fingerprint) return 1;
  self->pin_mismatch_ = true;
  X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

void TlsClientStream::Start() {
  phase_ = Phase::kHandshake;
  absl::StatusOr<SslCtxPtr> ctx = BuildClientContext(options_);
  if (!ctx.ok()) {
    Finish(ctx.status());
    return;
  }
  ctx_ = *std::move(ctx);
  ERR_clear_error();
  ssl_ = SSL_new(ctx_.get());
  if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_.get()) != 1) {
    Finish(OpenSslStatus(absl::StatusCode::kInternal, "tls: SSL_new"));
    return;
  }
  SSL_set_app_data(ssl_, this);
  SSL_set_connect_state(ssl_);
  const std::string& name = options_.server_name.empty() ? options_.host : options_.server_name;
  bool ip = IsIpLiteral(name);
  if (!ip && !name.empty()) SSL_set_tlsext_host_name(ssl_, name.c_str());
  if (!options_.insecure && options_.fingerprint.empty()) {
    int ok = 0;
    if (ip) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str());
    } else {
      SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl_, name.c_str());
    }
    if (ok != 1) {
      Finish(OpenSslStatus(absl::StatusCode::kInvalidArgument,
                           absl::StrCat("tls: cannot check the name '", name, "'")));
      return;
    }
  }
  DoHandshake();
}

void TlsClientStream::OnFdEvents(uint32_t events) {
  switch (phase_) {
    case Phase::kHandshake: DoHandshake(); return;
    case Phase::kRelay:
      relay_.OnTlsEvents(events);
      Pump();
      return;
    case Phase::kIdle:
    case Phase::kDone: return;
  }
}

void TlsClientStream::OnPlainEvents(uint32_t events) {
  if (phase_ != Phase::kRelay) return;
  relay_.OnPlainEvents(events);
  Pump();
}

void TlsClientStream::DoHandshake() {
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    if (presented_.empty()) presented_ = CertificateFingerprint(SSL_get0_peer_certificate(ssl_));
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
      Finish(absl::InternalError(absl::StrCat("tls: socketpair: ", std::strerror(errno))));
      return;
    }
    plain_fd_.reset(pair[0]);
    UniqueFd ssh_end(pair[1]);
    phase_ = Phase::kRelay;
    relay_.Start(ssl_, plain_fd_.get(), "", loop_.Scratch());
    Finish(std::move(ssh_end));
    if (phase_ == Phase::kRelay) Pump();  // the owner may have closed us from `done`
    return;
  }
  int ssl_error = SSL_get_error(ssl_, rc);  // leaves the error queue for HandshakeFailure
  switch (ssl_error) {
    case SSL_ERROR_WANT_READ: loop_.SetInterest(fd_.get(), tls_events_, EPOLLIN, this); return;
    case SSL_ERROR_WANT_WRITE: loop_.SetInterest(fd_.get(), tls_events_, EPOLLOUT, this); return;
    default: break;
  }
  Finish(absl::UnavailableError(HandshakeFailure(ssl_error)));
}

// Why the handshake failed, in the words a person checking the configuration needs.
std::string TlsClientStream::HandshakeFailure(int ssl_error) {
  if (pin_mismatch_) {
    ERR_clear_error();
    return absl::StrCat("tls: certificate fingerprint mismatch: expected ", options_.fingerprint,
                        ", got ", presented_.empty() ? "none" : presented_);
  }
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK && !options_.insecure) {
    ERR_clear_error();
    std::string reason = X509_verify_cert_error_string(verify);
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      absl::StrAppend(&reason, " (expected ",
                      options_.server_name.empty() ? options_.host : options_.server_name, ")");
    }
    return absl::StrCat("tls: certificate verify failed: ", reason);
  }
  return absl::StrCat("tls: handshake failed: ", SslFailureReason(ssl_error));
}

void TlsClientStream::Finish(absl::StatusOr<UniqueFd> result) {
  if (!result.ok()) Shutdown();
  if (!done_) return;
  Done done = std::move(done_);
  done_ = nullptr;
  done(std::move(result));
}

void TlsClientStream::Pump() {
  switch (relay_.Pump()) {
    case TlsRelay::State::kRunning:
      loop_.SetInterest(fd_.get(), tls_events_, relay_.tls_interest(), this);
      loop_.SetInterest(plain_fd_.get(), plain_events_, relay_.plain_interest(), &plain_side_);
      return;
    case TlsRelay::State::kFailed:
      if (!relay_.error().empty()) {
        logger_.Warn("client", "tls connection failed",
                     {{"upstream", label_}, {"error", relay_.error()}});
      }
      Shutdown();  // the SSH side sees the socketpair close
      return;
    case TlsRelay::State::kFinished: Shutdown(); return;
  }
}

void TlsClientStream::Close() {
  done_ = nullptr;
  if (phase_ == Phase::kRelay) {
    relay_.Pump();  // the SSH side's last words (its disconnect) and, at its EOF, close_notify
  }
  Shutdown();
}

void TlsClientStream::Shutdown() {
  phase_ = Phase::kDone;
  loop_.SetInterest(fd_.get(), tls_events_, 0, this);
  loop_.SetInterest(plain_fd_.get(), plain_events_, 0, &plain_side_);
  plain_fd_.reset();
  fd_.reset();
}

std::string TlsClientStream::version() const {
  return ssl_ != nullptr ? SSL_get_version(ssl_) : "";
}

std::string TlsClientStream::cipher() const {
  const char* name = ssl_ != nullptr ? SSL_get_cipher_name(ssl_) : nullptr;
  return name != nullptr ? name : "";
}

}  // namespace alknet
