// TLS transport: handshake, banner decision, socketpair bridge to SSH, stealth answers, backend
// proxy. Everything runs on the worker loop that adopted the connection; nothing blocks.
#include "server/transport/tls_transport.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/transport/stealth_responder.h"

namespace alknet {
namespace {

constexpr size_t kChunk = 64 * 1024;          // relay read size, like ChannelRelay
constexpr size_t kTlsRecord = 16 * 1024;      // one SSL_read returns at most a record
constexpr absl::Duration kLinger = absl::Seconds(2);
constexpr absl::Duration kBackendConnectTimeout = absl::Seconds(5);
// One side has closed and our close_notify/FIN is out: how long the other side may still
// take to finish (nginx's lingering_time).
constexpr absl::Duration kHalfClosedLimit = absl::Seconds(30);

// One relay buffer per worker thread: the relay never keeps more than the unsent tail.
char* Scratch() {
  thread_local std::unique_ptr<char[]> buffer(new char[kChunk]);
  return buffer.get();
}

std::string SslErrorText(int ssl_error) {
  unsigned long code = ERR_peek_last_error();
  std::string detail;
  if (code != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    detail = buffer;
  } else if (ssl_error == SSL_ERROR_SYSCALL) {
    detail = errno != 0 ? std::strerror(errno) : "connection closed";
  }
  ERR_clear_error();
  return absl::StrCat("ssl error ", ssl_error, detail.empty() ? "" : ": ", detail);
}

}  // namespace

// ------------------------------------------------------------------------------------------

class TlsConnection final : public FdHandler {
 public:
  using Done = std::function<void(absl::StatusOr<ConnectedStream>)>;

  TlsConnection(TlsTransport& transport, EventLoop& loop, UniqueFd fd, StreamInfo info, Done done)
      : transport_(transport), options_(transport.options_), loop_(loop), fd_(std::move(fd)),
        info_(std::move(info)), done_(std::move(done)), plain_side_(this) {}

  ~TlsConnection() override {
    // Never touches the loop: by now it is either running deferred deletes or gone.
    if (ssl_ != nullptr) SSL_free(ssl_);
  }

  void Start(SslCtxPtr ctx) {
    ssl_ = SSL_new(ctx.get());
    if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_.get()) != 1) {
      FailHandshake("SSL_new failed");
      return;
    }
    SSL_set_accept_state(ssl_);
    ArmTimer(options_.handshake_timeout);
    DoHandshake();
  }

  void OnFdEvents(uint32_t events) override {
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      tls_read_blocked_ = false;
      if (tls_write_wants_read_) tls_write_blocked_ = false;
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
      if (!tls_write_wants_read_) tls_write_blocked_ = false;
      if (tls_read_wants_write_) tls_read_blocked_ = false;
    }
    switch (phase_) {
      case Phase::kHandshake: DoHandshake(); break;
      case Phase::kSniff: DoSniff(); break;
      case Phase::kHttp: HttpPump(); break;
      case Phase::kRelay: Pump(); break;
      case Phase::kLinger: DrainLinger(); break;
      case Phase::kConnecting:
      case Phase::kDone: break;
    }
  }

  void OnPlainEvents(uint32_t events) {
    if (phase_ == Phase::kConnecting) {
      BackendConnected();
      return;
    }
    if (phase_ != Phase::kRelay) return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) plain_read_blocked_ = false;
    Pump();
  }

  // Only for ~TlsTransport: the loops are gone, free without touching them.
  void Abandon() { phase_ = Phase::kDone; }

 private:
  enum class Phase { kHandshake, kSniff, kHttp, kConnecting, kRelay, kLinger, kDone };
  enum class Io { kOk, kWantRead, kWantWrite, kEof, kError };

  class PlainSide final : public FdHandler {
   public:
    explicit PlainSide(TlsConnection* owner) : owner_(owner) {}
    void OnFdEvents(uint32_t events) override { owner_->OnPlainEvents(events); }

   private:
    TlsConnection* owner_;
  };

  // ---- epoll interest: an fd with nothing to wait for is not in epoll at all (no HUP spin) ----

  void SetInterest(int fd, uint32_t& current, uint32_t wanted, FdHandler* handler) {
    if (wanted == current || fd < 0) return;
    absl::Status status;
    if (current == 0) {
      status = loop_.Watch(fd, wanted, handler);
    } else if (wanted == 0) {
      loop_.Unwatch(fd);
    } else {
      status = loop_.Modify(fd, wanted);
    }
    current = status.ok() ? wanted : current;
  }
  void SetTlsInterest(uint32_t wanted) { SetInterest(fd_.get(), tls_events_, wanted, this); }
  void SetPlainInterest(uint32_t wanted) {
    SetInterest(plain_fd_.get(), plain_events_, wanted, &plain_side_);
  }

  void ArmTimer(absl::Duration after) {
    CancelTimer();
    timer_ = loop_.AddTimer(after, [this] {
      timer_ = 0;
      OnTimer();
    });
  }
  void CancelTimer() {
    if (timer_ != 0) loop_.CancelTimer(timer_);
    timer_ = 0;
  }

  // ---- TLS I/O ----

  Io Classify(int rc, int* n) {
    if (rc > 0) {
      *n = rc;
      return Io::kOk;
    }
    int error = SSL_get_error(ssl_, rc);
    switch (error) {
      case SSL_ERROR_WANT_READ: return Io::kWantRead;
      case SSL_ERROR_WANT_WRITE: return Io::kWantWrite;
      case SSL_ERROR_ZERO_RETURN: return Io::kEof;
      default:
        last_error_ = SslErrorText(error);
        return Io::kError;
    }
  }

  Io TlsRead(char* buffer, size_t size, int* n) {
    ERR_clear_error();
    return Classify(SSL_read(ssl_, buffer, static_cast<int>(size)), n);
  }

  Io TlsWrite(const char* data, size_t size, int* n) {
    ERR_clear_error();
    return Classify(SSL_write(ssl_, data, static_cast<int>(size)), n);
  }

  // ---- handshake and banner decision ----

  void DoHandshake() {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
      OnHandshakeDone();
      return;
    }
    int ignored = 0;
    switch (Classify(rc, &ignored)) {
      case Io::kWantRead: SetTlsInterest(EPOLLIN); return;
      case Io::kWantWrite: SetTlsInterest(EPOLLOUT); return;
      default: FailHandshake(absl::StrCat("TLS handshake: ", last_error_)); return;
    }
  }

  void FailHandshake(std::string reason) {
    if (done_) {
      Done done = std::move(done_);
      done_ = nullptr;
      done(absl::UnavailableError(reason));
    }
    Teardown();
  }

  void OnHandshakeDone() {
    if (!options_.stealth) {
      StartSsh();
      return;
    }
    phase_ = Phase::kSniff;
    ArmTimer(options_.stealth_timeout);  // also nginx's client_header_timeout from here on
    DoSniff();
  }

  void DoSniff() {
    char* buffer = Scratch();
    while (true) {
      int n = 0;
      switch (TlsRead(buffer, kTlsRecord, &n)) {
        case Io::kOk: {
          inbuf_.append(buffer, static_cast<size_t>(n));
          stealth::BannerResult banner = stealth::ClassifyBanner(inbuf_);
          if (banner.verdict == stealth::BannerVerdict::kSsh) {
            StartSsh();
            return;
          }
          if (banner.verdict == stealth::BannerVerdict::kNotSsh) {
            StartStealth();
            return;
          }
          continue;
        }
        case Io::kWantRead: SetTlsInterest(EPOLLIN); return;
        case Io::kWantWrite: SetTlsInterest(EPOLLOUT); return;
        case Io::kEof:  // the client left: nginx closes without a close_notify of its own
        case Io::kError: Teardown(); return;
      }
    }
  }

  // ---- SSH: the socketpair bridge ----

  void StartSsh() {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
      FailHandshake(absl::StrCat("socketpair: ", std::strerror(errno)));
      return;
    }
    plain_fd_.reset(pair[0]);
    UniqueFd engine_end(pair[1]);
    CancelTimer();
    phase_ = Phase::kRelay;
    to_plain_ = std::move(inbuf_);  // the banner (and whatever followed it) goes first
    inbuf_.clear();
    Done done = std::move(done_);
    done_ = nullptr;
    done(ConnectedStream{std::move(engine_end), info_});
    Pump();
  }

  // Reads TLS records into `buffer` until it is full or TLS would block.
  Io ReadTlsInto(char* buffer, size_t size, size_t* got) {
    *got = 0;
    while (*got < size) {
      int n = 0;
      Io io = TlsRead(buffer + *got, std::min(size - *got, kTlsRecord), &n);
      if (io != Io::kOk) return io;
      *got += static_cast<size_t>(n);
    }
    return Io::kOk;
  }

  // Moves bytes both ways until nothing more can move; bounded by one chunk of backlog per
  // direction (a side that cannot take more stops the other side's reads).
  void Pump() {
    char* buffer = Scratch();
    bool progress = true;
    while (progress && phase_ == Phase::kRelay) {
      progress = false;
      // TLS -> plain.
      if (!to_plain_.empty()) {
        ssize_t n = send(plain_fd_.get(), to_plain_.data(), to_plain_.size(), MSG_NOSIGNAL);
        if (n > 0) {
          to_plain_.erase(0, static_cast<size_t>(n));
          progress = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          Teardown();
          return;
        }
      }
      if (to_plain_.empty() && !tls_eof_ && !tls_read_blocked_) {
        size_t got = 0;
        Io io = ReadTlsInto(buffer, kChunk, &got);
        if (got > 0) {
          progress = true;
          ssize_t n = send(plain_fd_.get(), buffer, got, MSG_NOSIGNAL);
          if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) {
              Teardown();
              return;
            }
            n = 0;
          }
          if (static_cast<size_t>(n) < got) to_plain_.assign(buffer + n, got - static_cast<size_t>(n));
        }
        tls_read_wants_write_ = false;
        switch (io) {
          case Io::kOk: break;
          case Io::kWantRead: tls_read_blocked_ = true; break;
          case Io::kWantWrite:
            tls_read_blocked_ = true;
            tls_read_wants_write_ = true;
            break;
          case Io::kEof:
            tls_eof_ = true;
            progress = true;
            break;
          case Io::kError: Teardown(); return;
        }
      }
      if (tls_eof_ && to_plain_.empty() && !plain_shut_) {
        shutdown(plain_fd_.get(), SHUT_WR);  // TLS close_notify -> FIN towards SSH/backend
        plain_shut_ = true;
      }
      // plain -> TLS.
      if (!to_tls_.empty() && !tls_write_blocked_) {
        int n = 0;
        if (!WriteTls(to_tls_.data(), to_tls_.size(), &n)) return;
        if (n > 0) {
          to_tls_.erase(0, static_cast<size_t>(n));
          progress = true;
        }
      }
      if (to_tls_.empty() && !plain_eof_ && !plain_read_blocked_ && !tls_shut_) {
        ssize_t n = recv(plain_fd_.get(), buffer, kChunk, 0);
        if (n > 0) {
          progress = true;
          int written = 0;
          if (!WriteTls(buffer, static_cast<size_t>(n), &written)) return;
          if (written < n) to_tls_.assign(buffer + written, static_cast<size_t>(n - written));
        } else if (n == 0) {
          plain_eof_ = true;
          progress = true;
        } else if (errno == EAGAIN || errno == EINTR) {
          plain_read_blocked_ = true;
        } else {
          Teardown();
          return;
        }
      }
      if (plain_eof_ && to_tls_.empty() && !tls_shut_) {
        ERR_clear_error();
        SSL_shutdown(ssl_);  // FIN from SSH/backend -> close_notify to the client
        tls_shut_ = true;
      }
    }
    if (phase_ != Phase::kRelay) return;
    if (tls_eof_ && plain_eof_ && to_plain_.empty() && to_tls_.empty()) {
      Teardown();
      return;
    }
    if ((tls_shut_ || plain_shut_) && timer_ == 0) ArmTimer(kHalfClosedLimit);
    UpdateRelayInterest();
  }

  // SSL_write of a chunk; false after a fatal error (the connection is torn down). `*n` is the
  // count written; a blocked write leaves it 0 and the caller keeps the bytes for the retry.
  bool WriteTls(const char* data, size_t size, int* n) {
    *n = 0;
    tls_write_wants_read_ = false;
    switch (TlsWrite(data, size, n)) {
      case Io::kOk: return true;
      case Io::kWantRead:
        tls_write_blocked_ = true;
        tls_write_wants_read_ = true;
        return true;
      case Io::kWantWrite: tls_write_blocked_ = true; return true;
      default: Teardown(); return false;
    }
  }

  void UpdateRelayInterest() {
    uint32_t tls = 0;
    if ((!tls_eof_ && to_plain_.empty() && !tls_read_wants_write_) || tls_write_wants_read_) {
      tls |= EPOLLIN;
    }
    if ((!to_tls_.empty() && tls_write_blocked_ && !tls_write_wants_read_) ||
        tls_read_wants_write_) {
      tls |= EPOLLOUT;
    }
    uint32_t plain = 0;
    if (!plain_eof_ && to_tls_.empty() && !tls_shut_) plain |= EPOLLIN;
    if (!to_plain_.empty()) plain |= EPOLLOUT;
    SetTlsInterest(tls);
    SetPlainInterest(plain);
  }

  // ---- stealth: nginx's answers, or the backend ----

  void StartStealth() {
    transport_.logger_.Debug("tls", "not an ssh client; answering as a web server",
                             {{"src", info_.peer.ip},
                              {"to", options_.stealth_backend ? "backend" : "nginx-404"}});
    if (options_.stealth_backend) {
      StartBackend();
      return;
    }
    StartEmulator();
  }

  void StartEmulator() {
    phase_ = Phase::kHttp;
    SetPlainInterest(0);
    plain_fd_.reset();
    http_ = std::make_unique<stealth::NginxEmulator>();
    if (http_->Feed(inbuf_, absl::Now(), out_) == stealth::NginxEmulator::Next::kCloseAfterWrite) {
      close_after_out_ = true;
    }
    inbuf_.clear();
    if (http_->TakeResponded()) ArmTimer(options_.stealth_timeout);  // keepalive_timeout
    HttpPump();
  }

  void HttpPump() {
    char* buffer = Scratch();
    while (phase_ == Phase::kHttp) {
      if (!out_.empty()) {
        int n = 0;
        switch (TlsWrite(out_.data(), out_.size(), &n)) {
          case Io::kOk: out_.erase(0, static_cast<size_t>(n)); continue;
          case Io::kWantRead: SetTlsInterest(EPOLLIN); return;
          case Io::kWantWrite: SetTlsInterest(EPOLLOUT); return;
          default: Teardown(); return;
        }
      }
      if (close_after_out_) {
        CloseNotifyAndLinger();
        return;
      }
      int n = 0;
      switch (TlsRead(buffer, kTlsRecord, &n)) {
        case Io::kOk:
          if (http_->Feed(std::string_view(buffer, static_cast<size_t>(n)), absl::Now(), out_) ==
              stealth::NginxEmulator::Next::kCloseAfterWrite) {
            close_after_out_ = true;
          }
          if (http_->TakeResponded() && !close_after_out_) ArmTimer(options_.stealth_timeout);
          continue;
        case Io::kWantRead: SetTlsInterest(EPOLLIN); return;
        case Io::kWantWrite: SetTlsInterest(EPOLLOUT); return;
        case Io::kEof:
        case Io::kError: Teardown(); return;
      }
    }
  }

  void StartBackend() {
    const sockaddr_storage& address = transport_.backend_address_;
    UniqueFd fd(socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      BackendFailed("socket");
      return;
    }
    int rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&address),
                     transport_.backend_length_);
    if (rc != 0 && errno != EINPROGRESS) {
      BackendFailed("connect");
      return;
    }
    plain_fd_ = std::move(fd);
    phase_ = Phase::kConnecting;
    SetTlsInterest(0);
    SetPlainInterest(EPOLLOUT);
    ArmTimer(kBackendConnectTimeout);
  }

  void BackendConnected() {
    int error = 0;
    socklen_t length = sizeof(error);
    if (getsockopt(plain_fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
      errno = error;
      BackendFailed("connect");
      return;
    }
    int one = 1;
    setsockopt(plain_fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    CancelTimer();
    phase_ = Phase::kRelay;
    to_plain_ = std::move(inbuf_);  // what the client already sent goes first
    inbuf_.clear();
    plain_read_blocked_ = false;
    Pump();
  }

  void BackendFailed(std::string_view what) {
    transport_.logger_.Warn("tls", "stealth backend unreachable; answering 404 instead",
                            {{"op", std::string(what)}, {"error", std::strerror(errno)}});
    StartEmulator();
  }

  // ---- endings ----

  void OnTimer() {
    switch (phase_) {
      case Phase::kHandshake: FailHandshake("TLS handshake timed out"); return;
      case Phase::kSniff:
        // What nginx would have made of these bytes: a partial "SSH-2.0-..." is a 400 for it,
        // a partial request line a close without a word; nothing at all ends like an idle
        // keep-alive connection (close_notify).
        if (options_.stealth_backend) {
          StartBackend();
          return;
        }
        StartEmulator();
        if (phase_ == Phase::kHttp && out_.empty()) HttpTimeout();
        return;
      case Phase::kConnecting: BackendFailed("connect timeout"); return;
      case Phase::kHttp: HttpTimeout(); return;  // client_header_timeout / keepalive_timeout
      case Phase::kLinger: Teardown(); return;
      case Phase::kRelay: Teardown(); return;  // half-closed for too long
      case Phase::kDone: return;
    }
  }

  // nginx on a timeout: an idle connection gets close_notify, a half-received request a bare
  // TCP close.
  void HttpTimeout() {
    if (http_ != nullptr && http_->idle() && out_.empty()) {
      CloseNotifyAndLinger();
    } else {
      Teardown();
    }
  }

  // close_notify, FIN, then read and drop what the client still sends for a moment so the
  // kernel does not turn the close into an RST that could destroy the answer in flight.
  void CloseNotifyAndLinger() {
    ERR_clear_error();
    SSL_shutdown(ssl_);
    shutdown(fd_.get(), SHUT_WR);
    phase_ = Phase::kLinger;
    SetPlainInterest(0);
    SetTlsInterest(EPOLLIN);
    ArmTimer(kLinger);
    DrainLinger();
  }

  void DrainLinger() {
    char* buffer = Scratch();
    while (phase_ == Phase::kLinger) {
      ssize_t n = recv(fd_.get(), buffer, kChunk, 0);
      if (n > 0) continue;
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      Teardown();
    }
  }

  void Teardown() {
    if (phase_ == Phase::kDone) return;
    phase_ = Phase::kDone;
    CancelTimer();
    SetTlsInterest(0);
    SetPlainInterest(0);
    plain_fd_.reset();
    fd_.reset();
    done_ = nullptr;  // gives back the startup slot of a client that never reached SSH
    transport_.Forget(this);
    loop_.DeleteLater(std::unique_ptr<TlsConnection>(this));
  }

  TlsTransport& transport_;
  const TlsTransportOptions& options_;
  EventLoop& loop_;
  UniqueFd fd_;
  StreamInfo info_;
  Done done_;
  SSL* ssl_ = nullptr;
  Phase phase_ = Phase::kHandshake;
  EventLoop::TimerId timer_ = 0;
  uint32_t tls_events_ = 0;
  std::string last_error_;
  std::string inbuf_;  // bytes read before the decision

  // Relay (SSH socketpair or backend socket).
  UniqueFd plain_fd_;
  PlainSide plain_side_;
  uint32_t plain_events_ = 0;
  std::string to_plain_;  // unsent tail towards SSH/backend (<= one chunk)
  std::string to_tls_;    // unsent tail towards the client (<= one chunk)
  bool tls_eof_ = false;
  bool plain_eof_ = false;
  bool plain_shut_ = false;
  bool tls_shut_ = false;
  bool tls_read_blocked_ = false;
  bool tls_read_wants_write_ = false;
  bool tls_write_blocked_ = false;
  bool tls_write_wants_read_ = false;
  bool plain_read_blocked_ = false;

  // Stealth answers.
  std::unique_ptr<stealth::NginxEmulator> http_;
  std::string out_;
  bool close_after_out_ = false;
};

// ------------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<TlsTransport>> TlsTransport::Create(TlsTransportOptions options,
                                                                   Logger& logger) {
  auto store = TlsContextStore::Create(options.cert_path, options.key_path, options.state_dir,
                                       options.cert_host, logger);
  if (!store.ok()) return store.status();
  std::unique_ptr<TlsTransport> transport(
      new TlsTransport(std::move(options), logger, *std::move(store)));
  if (transport->options_.stealth_backend) {
    const HostPort& backend = *transport->options_.stealth_backend;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* results = nullptr;
    std::string port = absl::StrCat(backend.port);
    int rc = getaddrinfo(backend.host.c_str(), port.c_str(), &hints, &results);
    if (rc != 0 || results == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("stealth backend ", backend.ToString(),
                                                     ": cannot resolve: ", gai_strerror(rc)));
    }
    std::memcpy(&transport->backend_address_, results->ai_addr, results->ai_addrlen);
    transport->backend_length_ = results->ai_addrlen;
    freeaddrinfo(results);
  }
  return transport;
}

TlsTransport::~TlsTransport() {
  absl::flat_hash_set<TlsConnection*> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(live_);
  }
  for (TlsConnection* connection : left) {
    connection->Abandon();
    delete connection;
  }
}

void TlsTransport::Forget(TlsConnection* connection) {
  absl::MutexLock lock(&mu_);
  live_.erase(connection);
}

void TlsTransport::Establish(EventLoop& loop, UniqueFd accepted, StreamInfo info,
                             std::function<void(absl::StatusOr<ConnectedStream>)> done) {
  int one = 1;
  setsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(accepted.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  auto* connection = new TlsConnection(*this, loop, std::move(accepted), std::move(info),
                                       std::move(done));
  {
    absl::MutexLock lock(&mu_);
    live_.insert(connection);
  }
  connection->Start(contexts_->Current());
}

}  // namespace alknet
