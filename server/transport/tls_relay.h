// The TLS <-> plain stream relay shared by the server's tls:// transport (SSH socketpair or
// stealth backend) and the client's tls:// upstreams (SSH socketpair): moves bytes both ways
// in chunks of up to kTlsRelayChunk, keeps at most one chunk of unsent tail per direction
// (consumed in place, never moved), and turns
// close_notify into a FIN and a FIN into close_notify. Pure state over an SSL and two
// non-blocking fds it does not own; the owner watches the fds (tls_interest/plain_interest),
// reports readiness and decides what happens when the relay is over.
// docs/adr/0006-tls-socketpair-bridge-and-stealth.md.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "server/common/pending_bytes.h"

namespace alknet {

inline constexpr size_t kTlsRelayChunk = 64 * 1024;  // relay read size (bench/README: TLS bridge)
inline constexpr size_t kTlsRecord = 16 * 1024;      // one SSL_read returns at most a record

// SSL I/O results.
enum class TlsIo { kOk, kWantRead, kWantWrite, kEof, kError };

// Classifies the return value of SSL_read/SSL_write/SSL_do_handshake on `ssl`: *n gets a
// positive count; on kError `*error` gets the reason (SslErrorText).
TlsIo ClassifyTlsIo(SSL* ssl, int rc, int* n, std::string* error);

class TlsRelay {
 public:
  enum class State {
    kRunning,   // wait for the fds in tls_interest()/plain_interest()
    kFinished,  // both directions closed and flushed
    kFailed,    // an I/O error on either side (error() says which TLS one, if any)
  };

  // `to_plain` goes to the plain side first (bytes the TLS side sent before the relay began).
  // `scratch` (at least kTlsRelayChunk bytes) is the loop thread's buffer, used only inside
  // Pump(): it outlives the relay and holds nothing between calls.
  void Start(SSL* ssl, int plain_fd, std::string_view to_plain, std::span<char> scratch);

  // Readiness of the TLS socket / the plain fd (epoll events); call Pump() afterwards.
  void OnTlsEvents(uint32_t events);
  void OnPlainEvents(uint32_t events);

  // Moves bytes both ways until nothing more can move.
  State Pump();

  // What to wait for now (EPOLLIN/EPOLLOUT; 0: leave the fd out of epoll).
  uint32_t tls_interest() const;
  uint32_t plain_interest() const;
  // One side has closed and its close went on; the other may still be sending.
  bool half_closed() const { return tls_shut_ || plain_shut_; }
  const std::string& error() const { return error_; }
  // Bytes delivered so far, both directions (an owner's idle check compares it over time).
  uint64_t moved() const { return moved_; }

 private:
  TlsIo Read(char* buffer, size_t size, int* n);
  TlsIo ReadInto(char* buffer, size_t size, size_t* got);
  bool Write(const char* data, size_t size, int* n);
  bool WriteAll(const char* data, size_t size, size_t* written);

  SSL* ssl_ = nullptr;
  int plain_fd_ = -1;
  State state_ = State::kRunning;
  std::string error_;
  uint64_t moved_ = 0;
  std::span<char> scratch_;
  PendingBytes to_plain_{kTlsRelayChunk};  // unsent tail towards the plain side
  PendingBytes to_tls_{kTlsRelayChunk};    // unsent tail towards the TLS peer
  bool tls_eof_ = false;
  bool plain_eof_ = false;
  bool plain_shut_ = false;
  bool tls_shut_ = false;
  bool tls_read_blocked_ = false;
  bool tls_read_wants_write_ = false;
  bool tls_write_blocked_ = false;
  bool tls_write_wants_read_ = false;
  bool plain_read_blocked_ = false;
};

}  // namespace alknet
