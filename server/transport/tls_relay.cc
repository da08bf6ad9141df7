// The TLS <-> plain stream relay; see tls_relay.h.
#include "server/transport/tls_relay.h"

#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "server/transport/openssl_status.h"

namespace alknet {

TlsIo ClassifyTlsIo(SSL* ssl, int rc, int* n, std::string* error) {
  if (rc > 0) {
    *n = rc;
    return TlsIo::kOk;
  }
  int code = SSL_get_error(ssl, rc);
  switch (code) {
    case SSL_ERROR_WANT_READ: return TlsIo::kWantRead;
    case SSL_ERROR_WANT_WRITE: return TlsIo::kWantWrite;
    case SSL_ERROR_ZERO_RETURN: return TlsIo::kEof;
    default:
      if (error != nullptr) *error = SslErrorText(code);
      return TlsIo::kError;
  }
}

void TlsRelay::Start(SSL* ssl, int plain_fd, std::string_view to_plain,
                     std::span<char> scratch) {
  *this = TlsRelay();
  ssl_ = ssl;
  plain_fd_ = plain_fd;
  scratch_ = scratch;
  to_plain_.Assign(to_plain.data(), to_plain.size());
}

void TlsRelay::OnTlsEvents(uint32_t events) {
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    tls_read_blocked_ = false;
    if (tls_write_wants_read_) tls_write_blocked_ = false;
  }
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    if (!tls_write_wants_read_) tls_write_blocked_ = false;
    if (tls_read_wants_write_) tls_read_blocked_ = false;
  }
}

void TlsRelay::OnPlainEvents(uint32_t events) {
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) plain_read_blocked_ = false;
}

TlsIo TlsRelay::Read(char* buffer, size_t size, int* n) {
  ERR_clear_error();
  return ClassifyTlsIo(ssl_, SSL_read(ssl_, buffer, static_cast<int>(size)), n, &error_);
}

// Reads TLS records into `buffer` until it is full or TLS would block.
TlsIo TlsRelay::ReadInto(char* buffer, size_t size, size_t* got) {
  *got = 0;
  while (*got < size) {
    int n = 0;
    TlsIo io = Read(buffer + *got, std::min(size - *got, kTlsRecord), &n);
    if (io != TlsIo::kOk) return io;
    *got += static_cast<size_t>(n);
  }
  return TlsIo::kOk;
}

// SSL_write of a chunk; false after a fatal error. `*n` is the count written; a blocked write
// leaves it 0 and the caller keeps the bytes for the retry.
bool TlsRelay::Write(const char* data, size_t size, int* n) {
  *n = 0;
  tls_write_wants_read_ = false;
  ERR_clear_error();
  switch (ClassifyTlsIo(ssl_, SSL_write(ssl_, data, static_cast<int>(size)), n, &error_)) {
    case TlsIo::kOk: return true;
    case TlsIo::kWantRead:
      tls_write_blocked_ = true;
      tls_write_wants_read_ = true;
      return true;
    case TlsIo::kWantWrite: tls_write_blocked_ = true; return true;
    default: return false;
  }
}

// SSL_write until `size` bytes are written or TLS blocks. With SSL_MODE_ENABLE_PARTIAL_WRITE
// each SSL_write returns after one record, so a chunk takes several calls; only the tail left
// when TLS blocks is kept by the caller.
bool TlsRelay::WriteAll(const char* data, size_t size, size_t* written) {
  *written = 0;
  while (*written < size && !tls_write_blocked_) {
    int n = 0;
    if (!Write(data + *written, size - *written, &n)) return false;
    *written += static_cast<size_t>(n);
  }
  return true;
}

// Bounded by one chunk of backlog per direction: a side that cannot take more stops the other
// side's reads.
TlsRelay::State TlsRelay::Pump() {
  if (state_ != State::kRunning) return state_;
  char* buffer = scratch_.data();
  const size_t chunk = std::min(scratch_.size(), kTlsRelayChunk);
  bool progress = true;
  while (progress) {
    progress = false;
    // TLS -> plain.
    if (!to_plain_.empty()) {
      ssize_t n = send(plain_fd_, to_plain_.data(), to_plain_.size(), MSG_NOSIGNAL);
      if (n > 0) {
        to_plain_.Consume(static_cast<size_t>(n));
        moved_ += static_cast<uint64_t>(n);
        progress = true;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return state_ = State::kFailed;
      }
    }
    if (to_plain_.empty() && !tls_eof_ && !tls_read_blocked_) {
      size_t got = 0;
      TlsIo io = ReadInto(buffer, chunk, &got);
      if (got > 0) {
        progress = true;
        ssize_t n = send(plain_fd_, buffer, got, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno != EAGAIN && errno != EINTR) return state_ = State::kFailed;
          n = 0;
        }
        moved_ += static_cast<uint64_t>(n);
        if (static_cast<size_t>(n) < got) {
          to_plain_.Assign(buffer + n, got - static_cast<size_t>(n));
        }
      }
      tls_read_wants_write_ = false;
      switch (io) {
        case TlsIo::kOk: break;
        case TlsIo::kWantRead: tls_read_blocked_ = true; break;
        case TlsIo::kWantWrite:
          tls_read_blocked_ = true;
          tls_read_wants_write_ = true;
          break;
        case TlsIo::kEof:
          tls_eof_ = true;
          progress = true;
          break;
        case TlsIo::kError: return state_ = State::kFailed;
      }
    }
    if (tls_eof_ && to_plain_.empty() && !plain_shut_) {
      shutdown(plain_fd_, SHUT_WR);  // TLS close_notify -> FIN towards the plain side
      plain_shut_ = true;
    }
    // plain -> TLS.
    if (!to_tls_.empty() && !tls_write_blocked_) {
      size_t n = 0;
      if (!WriteAll(to_tls_.data(), to_tls_.size(), &n)) return state_ = State::kFailed;
      if (n > 0) {
        to_tls_.Consume(n);
        moved_ += n;
        progress = true;
      }
    }
    if (to_tls_.empty() && !plain_eof_ && !plain_read_blocked_ && !tls_shut_) {
      ssize_t n = recv(plain_fd_, buffer, chunk, 0);
      if (n > 0) {
        progress = true;
        size_t written = 0;
        if (!WriteAll(buffer, static_cast<size_t>(n), &written)) return state_ = State::kFailed;
        moved_ += written;
        if (written < static_cast<size_t>(n)) {
          to_tls_.Assign(buffer + written, static_cast<size_t>(n) - written);
        }
      } else if (n == 0) {
        plain_eof_ = true;
        progress = true;
      } else if (errno == EAGAIN || errno == EINTR) {
        plain_read_blocked_ = true;
      } else {
        return state_ = State::kFailed;
      }
    }
    if (plain_eof_ && to_tls_.empty() && !tls_shut_) {
      ERR_clear_error();
      SSL_shutdown(ssl_);  // FIN from the plain side -> close_notify to the TLS peer
      tls_shut_ = true;
    }
  }
  if (tls_eof_ && plain_eof_ && to_plain_.empty() && to_tls_.empty()) state_ = State::kFinished;
  return state_;
}

uint32_t TlsRelay::tls_interest() const {
  if (state_ != State::kRunning) return 0;
  uint32_t tls = 0;
  if ((!tls_eof_ && to_plain_.empty() && !tls_read_wants_write_) || tls_write_wants_read_) {
    tls |= EPOLLIN;
  }
  if ((!to_tls_.empty() && tls_write_blocked_ && !tls_write_wants_read_) || tls_read_wants_write_) {
    tls |= EPOLLOUT;
  }
  return tls;
}

uint32_t TlsRelay::plain_interest() const {
  if (state_ != State::kRunning) return 0;
  uint32_t plain = 0;
  if (!plain_eof_ && to_tls_.empty() && !tls_shut_) plain |= EPOLLIN;
  if (!to_plain_.empty()) plain |= EPOLLOUT;
  return plain;
}

}  // namespace alknet
