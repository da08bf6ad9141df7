// Session ticket keys of the TLS server: random per process (never written to disk, never
// shared between installs), rotated, installed on an SSL_CTX as OpenSSL's ticket key callback.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <functional>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace alknet {

// The keys behind session tickets, in the format OpenSSL's own keys use (16-byte name,
// AES-256-CBC, HMAC-SHA256), so a ticket is as long as the one a stock OpenSSL server (nginx
// without ssl_session_ticket_key) sends. A new key takes over every `rotation`; the previous one
// still opens tickets until the next rotation, so a ticket (valid for the session timeout,
// far shorter) is accepted for its whole life. Renewal follows OpenSSL's own keys: a new ticket
// after each TLS 1.3 resumption, none after a TLS 1.2 one.
class TicketKeyRing {
 public:
  struct Key {
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> aes{};
    std::array<unsigned char, 32> hmac{};
    absl::Time created;
  };
  using Clock = std::function<absl::Time()>;

  explicit TicketKeyRing(absl::Duration rotation = absl::Hours(1), Clock clock = absl::Now);

  // The key for a new ticket (a fresh one once the current key is `rotation` old).
  absl::StatusOr<Key> ForNewTicket();
  // The key named `name` if it is the current or the previous one.
  std::optional<Key> Find(const unsigned char* name);

  // Makes `ctx` encrypt and open its tickets with this ring. The ring must outlive `ctx`
  // (TlsContextStore's context deleter holds a reference).
  void Install(SSL_CTX* ctx);

 private:
  absl::Status RotateLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration rotation_;
  const Clock clock_;
  absl::Mutex mu_;
  std::optional<Key> current_ ABSL_GUARDED_BY(mu_);
  std::optional<Key> previous_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alknet
