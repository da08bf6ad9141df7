// The client side of tls:// (upstreams `server: tls://HOST:PORT`): a non-blocking TLS handshake
// on the caller's event loop over an already connected socket (after any outbound proxy), then
// the same socketpair bridge the server uses (TlsRelay): the caller gets the other end of the
// socketpair, a plain stream fd its SSH session uses as if it were the TCP socket. SSH code
// never learns that TLS is in between. docs/adr/0006-tls-socketpair-bridge-and-stealth.md.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "server/common/log.h"
#include "server/common/unique_fd.h"
#include "server/loop/event_loop.h"
#include "server/transport/tls_context.h"
#include "server/transport/tls_relay.h"

namespace alknet {

// How the server's certificate is checked. Exactly one of: the pin (fingerprint), no check
// (insecure), or the chain against ca_file or the system roots plus the name.
struct TlsClientOptions {
  std::string host;         // the server URL's host
  std::string server_name;  // SNI and the name checked; empty: `host` (IP literal: no SNI)
  std::string ca_file;      // PEM bundle; empty: the system roots
  std::string fingerprint;  // "AB:CD:..." (CertificateFingerprint form): pin the leaf
  bool insecure = false;    // no verification at all
};

// TLS 1.2+ client context offering ALPN http/1.1 (what a browser's HTTPS request to the
// server's web face would offer); roots from ca_file or the system unless pinned or insecure.
// Errors name the CA file.
absl::StatusOr<SslCtxPtr> BuildClientContext(const TlsClientOptions& options);

class TlsClientStream final : public FdHandler {
 public:
  // The plain end of the bridge, or why the TLS connection failed ("tls: ...").
  using Done = std::function<void(absl::StatusOr<UniqueFd>)>;

  // `fd`: a connected non-blocking stream socket to the TLS server. `label` names the upstream
  // in log lines about the running bridge.
  TlsClientStream(EventLoop& loop, Logger& logger, std::string label, UniqueFd fd,
                  TlsClientOptions options, Done done);
  ~TlsClientStream() override;  // unwatches; never calls `done`

  // Handshakes; `done` runs exactly once (possibly from inside Start) unless the object is
  // closed or destroyed first. The caller's own timer bounds the handshake.
  void Start();
  // Ends the bridge: what the plain side already wrote goes out (best effort, no waiting),
  // then close_notify, and both sockets close. No callback afterwards.
  void Close();

  void OnFdEvents(uint32_t events) override;

  // After a successful handshake: "TLSv1.3", the cipher, the leaf's CertificateFingerprint.
  std::string version() const;
  std::string cipher() const;
  const std::string& presented_fingerprint() const { return presented_; }

 private:
  enum class Phase { kIdle, kHandshake, kRelay, kDone };
  class PlainSide final : public FdHandler {
   public:
    explicit PlainSide(TlsClientStream* owner) : owner_(owner) {}
    void OnFdEvents(uint32_t events) override { owner_->OnPlainEvents(events); }

   private:
    TlsClientStream* owner_;
  };

  friend absl::StatusOr<SslCtxPtr> BuildClientContext(const TlsClientOptions& options);
  static int CheckPin(X509_STORE_CTX* store, void* arg);
  void DoHandshake();
  std::string HandshakeFailure(int ssl_error);
  void Finish(absl::StatusOr<UniqueFd> result);
  void OnPlainEvents(uint32_t events);
  void Pump();
  void Shutdown();

  EventLoop& loop_;
  Logger& logger_;
  std::string label_;
  UniqueFd fd_;
  TlsClientOptions options_;
  Done done_;
  Phase phase_ = Phase::kIdle;
  SslCtxPtr ctx_;
  SSL* ssl_ = nullptr;
  uint32_t tls_events_ = 0;
  std::string presented_;
  bool pin_mismatch_ = false;

  UniqueFd plain_fd_;
  PlainSide plain_side_;
  uint32_t plain_events_ = 0;
  TlsRelay relay_;
};

}  // namespace alknet
