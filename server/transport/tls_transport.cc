// TLS transport: handshake, banner decision, socketpair bridge to SSH, stealth answers, backend
// proxy. Everything runs on the worker loop that adopted the connection; nothing blocks.
#include "server/transport/tls_transport.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/transport/stealth_responder.h"
#include "server/transport/tls_relay.h"

namespace alknet {
namespace {

constexpr absl::Duration kLinger = absl::Seconds(2);
constexpr absl::Duration kBackendConnectTimeout = absl::Seconds(5);
// One side has closed and our close_notify/FIN is out: how long the other side may still
// take to finish (nginx's lingering_time).
constexpr absl::Duration kHalfClosedLimit = absl::Seconds(30);

constexpr size_t kChunk = kTlsRelayChunk;

}  // namespace

// ------------------------------------------------------------------------------------------

class TlsConnection final : public FdHandler {
 public:
  using Done = std::function<void(absl::StatusOr<ConnectedStream>)>;

  TlsConnection(TlsTransport& transport, EventLoop& loop, UniqueFd fd, StreamInfo info, Done done,
                std::unique_ptr<BudgetTicket> ticket)
      : transport_(transport), options_(transport.options_), loop_(loop), fd_(std::move(fd)),
        info_(std::move(info)), done_(std::move(done)), ticket_(std::move(ticket)),
        plain_side_(this) {}

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
    relay_.OnTlsEvents(events);
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
    relay_.OnPlainEvents(events);
    Pump();
  }

  // Only for ~TlsTransport: the loops are gone, free without touching them.
  void Abandon() { phase_ = Phase::kDone; }

 private:
  enum class Phase { kHandshake, kSniff, kHttp, kConnecting, kRelay, kLinger, kDone };
  using Io = TlsIo;

  class PlainSide final : public FdHandler {
   public:
    explicit PlainSide(TlsConnection* owner) : owner_(owner) {}
    void OnFdEvents(uint32_t events) override { owner_->OnPlainEvents(events); }

   private:
    TlsConnection* owner_;
  };

  // ---- epoll interest: an fd with nothing to wait for is not in epoll at all (no HUP spin) ----

  void SetTlsInterest(uint32_t wanted) { loop_.SetInterest(fd_.get(), tls_events_, wanted, this); }
  void SetPlainInterest(uint32_t wanted) {
    loop_.SetInterest(plain_fd_.get(), plain_events_, wanted, &plain_side_);
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
  void CancelTimer(EventLoop::TimerId& timer) {
    if (timer != 0) loop_.CancelTimer(timer);
    timer = 0;
  }

  // ---- TLS I/O ----

  Io Classify(int rc, int* n) { return ClassifyTlsIo(ssl_, rc, n, &last_error_); }

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
      // An EOF (SSL_OP_IGNORE_UNEXPECTED_EOF reports a bare TCP close that way) has no error.
      case Io::kEof: FailHandshake("TLS handshake: connection closed by the client"); return;
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
    char* buffer = loop_.Scratch().data();
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
    // The banner (and what followed it) goes first.
    relay_.Start(ssl_, plain_fd_.get(), inbuf_, loop_.Scratch());
    inbuf_.clear();
    // The handshake slot goes back; the engine takes a max_startups slot for the SSH session
    // (or refuses it, closing the other end, which ends this relay).
    ticket_.reset();
    Done done = std::move(done_);
    done_ = nullptr;
    done(ConnectedStream{std::move(engine_end), info_});
    Pump();
  }

  // The shared relay (tls_relay.h) moves what it can; a finished or failed relay ends the
  // connection, a half-closed one gets kHalfClosedLimit to finish.
  void Pump() {
    if (phase_ != Phase::kRelay) return;
    if (relay_.Pump() != TlsRelay::State::kRunning) {
      Teardown();
      return;
    }
    if (web_ && relay_.moved() != moved_seen_) {
      moved_seen_ = relay_.moved();
      last_active_ = absl::Now();
    }
    if (relay_.half_closed() && timer_ == 0) ArmTimer(kHalfClosedLimit);
    SetTlsInterest(relay_.tls_interest());
    SetPlainInterest(relay_.plain_interest());
  }

  // ---- stealth: nginx's answers, or the backend ----

  void StartStealth() {
    transport_.logger_.Debug("tls", "not an ssh client; answering as a web server",
                             {{"src", info_.peer.ip},
                              {"to", options_.stealth_backend ? "backend" : "nginx-404"}});
    if (options_.on_probe) options_.on_probe(info_);
    if (!EnterWeb()) return;
    if (options_.stealth_backend) {
      StartBackend();
      return;
    }
    StartEmulator();
  }

  // From the handshake budget to the web budget (a full web budget closes the connection, as
  // a web server out of connections would), and the web lifetime starts.
  bool EnterWeb() {
    ticket_.reset();
    ticket_ = transport_.Admit(transport_.web_, "web_connections", info_);
    if (ticket_ == nullptr) {
      Teardown();
      return false;
    }
    web_ = true;
    lifetime_timer_ = loop_.AddTimer(options_.web_lifetime, [this] {
      lifetime_timer_ = 0;
      OnLifetimeOver();
    });
    return true;
  }

  // The web lifetime is over: nginx's keepalive_time ends an idle keep-alive connection with
  // close_notify; anything busier (mid-request, backend relay) just closes.
  void OnLifetimeOver() {
    switch (phase_) {
      case Phase::kHttp:
        if (http_ != nullptr && http_->idle() && out_.empty()) {
          CloseNotifyAndLinger();
        } else {
          Teardown();
        }
        return;
      case Phase::kLinger: return;  // already closing, bounded by kLinger
      default: Teardown(); return;
    }
  }

  // The nginx imitation's keep-alive / header wait: stealth_timeout (nginx's timeouts), never
  // longer than the web idle timeout.
  absl::Duration HttpIdle() const {
    return std::min(options_.stealth_timeout, options_.web_idle_timeout);
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
    if (http_->TakeResponded()) ArmTimer(HttpIdle());  // keepalive_timeout
    HttpPump();
  }

  void HttpPump() {
    char* buffer = loop_.Scratch().data();
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
          if (http_->TakeResponded() && !close_after_out_) ArmTimer(HttpIdle());
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
    relay_.Start(ssl_, plain_fd_.get(), inbuf_, loop_.Scratch());  // what the client sent goes first
    inbuf_.clear();
    moved_seen_ = relay_.moved();
    last_active_ = absl::Now();
    ArmIdleTimer(options_.web_idle_timeout);
    Pump();
  }

  // The backend relay's idle timeout: re-armed lazily from the last time bytes moved.
  void ArmIdleTimer(absl::Duration after) {
    idle_timer_ = loop_.AddTimer(after, [this] {
      idle_timer_ = 0;
      if (phase_ != Phase::kRelay) return;
      absl::Duration left = last_active_ + options_.web_idle_timeout - absl::Now();
      if (left > absl::ZeroDuration()) {
        ArmIdleTimer(left);
        return;
      }
      transport_.logger_.Debug("tls", "stealth backend relay idle; closing",
                               {{"src", info_.peer.ip}});
      Teardown();
    });
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
        if (!EnterWeb()) return;
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
    char* buffer = loop_.Scratch().data();
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
    CancelTimer(lifetime_timer_);
    CancelTimer(idle_timer_);
    SetTlsInterest(0);
    SetPlainInterest(0);
    plain_fd_.reset();
    fd_.reset();
    done_ = nullptr;
    ticket_.reset();  // the handshake or web slot
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
  std::unique_ptr<BudgetTicket> ticket_;  // handshake slot, then web slot; none once SSH
  bool web_ = false;                      // decided: web (imitation or backend relay)
  EventLoop::TimerId lifetime_timer_ = 0;  // web_lifetime
  EventLoop::TimerId idle_timer_ = 0;      // backend relay: web_idle_timeout
  uint64_t moved_seen_ = 0;                // relay_.moved() when last looked at
  absl::Time last_active_;                 // when the backend relay last moved a byte

  // Relay (SSH socketpair or backend socket).
  UniqueFd plain_fd_;
  PlainSide plain_side_;
  uint32_t plain_events_ = 0;
  TlsRelay relay_;

  // Stealth answers.
  std::unique_ptr<stealth::NginxEmulator> http_;
  std::string out_;
  bool close_after_out_ = false;
};

// ------------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<TlsTransport>> TlsTransport::Create(TlsTransportOptions options,
                                                                   Logger& logger) {
  auto store = TlsContextStore::Create(options.cert_path, options.key_path, options.state_dir,
                                       options.cert_host, logger, std::chrono::seconds(2),
                                       options.profile);
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

std::unique_ptr<BudgetTicket> TlsTransport::Admit(ConnectionBudget& budget, std::string_view name,
                                                  const StreamInfo& info) {
  BudgetVerdict verdict;
  std::unique_ptr<BudgetTicket> ticket = budget.TryAdmit(info.peer.ip, &verdict);
  if (ticket != nullptr) return ticket;
  // Debug only: a flood of these must not flood the log; the metric counts them.
  std::string reason(name);
  std::replace(reason.begin(), reason.end(), '_', '-');
  if (verdict == BudgetVerdict::kSourceLimit) reason = absl::StrCat("per-source-", reason);
  logger_.Debug("tls", "connection refused", {{"src", info.peer.ip}, {"reason", reason}});
  if (options_.on_refused) options_.on_refused(name);
  return nullptr;
}

void TlsTransport::Establish(EventLoop& loop, UniqueFd accepted, StreamInfo info,
                             std::function<void(absl::StatusOr<ConnectedStream>)> done) {
  // Handshake and banner wait have their own budget; a full one closes before any TLS byte.
  std::unique_ptr<BudgetTicket> ticket = Admit(handshakes_, "tls_handshakes", info);
  if (ticket == nullptr) return;
  int one = 1;
  setsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(accepted.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  auto* connection = new TlsConnection(*this, loop, std::move(accepted), std::move(info),
                                       std::move(done), std::move(ticket));
  {
    absl::MutexLock lock(&mu_);
    live_.insert(connection);
  }
  connection->Start(contexts_->Current());
}

}  // namespace alknet
