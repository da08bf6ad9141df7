// Session ticket keys: random per process, rotated, used through OpenSSL's ticket key callback.
#include "server/transport/tls_ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>

#include "server/transport/openssl_status.h"

namespace alknet {
namespace {

// OpenSSL's SSL_CTX_set_tlsext_ticket_key_evp_cb contract: 1 = key set up, 2 = set up and
// renew the ticket, 0 = no such key (full handshake, new ticket), -1 = error. Encryption
// (enc = 1) fills name and IV.
int TicketKeyCallback(SSL* ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                      EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  auto* ring = static_cast<TicketKeyRing*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (ring == nullptr) return -1;
  std::optional<TicketKeyRing::Key> key;
  if (enc == 1) {
    absl::StatusOr<TicketKeyRing::Key> fresh = ring->ForNewTicket();
    if (!fresh.ok()) return -1;
    key = *fresh;
    if (RAND_bytes(iv, 16) != 1) return -1;
    std::memcpy(key_name, key->name.data(), key->name.size());
  } else {
    key = ring->Find(key_name);
    if (!key) return 0;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key->hmac.data(), key->hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  int ok = enc == 1
               ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes.data(), iv)
               : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes.data(), iv);
  if (ok != 1) return -1;
  // As OpenSSL's built-in keys: a TLS 1.3 resumption gets a new ticket (2 = renew), a TLS 1.2
  // one keeps its ticket (1), whichever of the two keys opened it.
  return enc != 1 && SSL_version(ssl) >= TLS1_3_VERSION ? 2 : 1;
}

}  // namespace

TicketKeyRing::TicketKeyRing(absl::Duration rotation, Clock clock)
    : rotation_(rotation), clock_(std::move(clock)) {}

absl::Status TicketKeyRing::RotateLocked(absl::Time now) {
  Key key;
  if (RAND_bytes(key.name.data(), static_cast<int>(key.name.size())) != 1 ||
      RAND_priv_bytes(key.aes.data(), static_cast<int>(key.aes.size())) != 1 ||
      RAND_priv_bytes(key.hmac.data(), static_cast<int>(key.hmac.size())) != 1) {
    return OpenSslStatus(absl::StatusCode::kInternal, "ticket key generation");
  }
  key.created = now;
  previous_ = current_;
  current_ = key;
  return absl::OkStatus();
}

absl::StatusOr<TicketKeyRing::Key> TicketKeyRing::ForNewTicket() {
  absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  if (!current_ || now - current_->created >= rotation_) {
    if (absl::Status status = RotateLocked(now); !status.ok()) return status;
  }
  return *current_;
}

std::optional<TicketKeyRing::Key> TicketKeyRing::Find(const unsigned char* name) {
  absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  // A ring not asked for a new ticket for a while still rotates here, so a key is never used
  // (for opening) longer than two periods.
  if (current_ && now - current_->created >= rotation_) {
    if (!RotateLocked(now).ok()) return std::nullopt;
  }
  for (const std::optional<Key>* key : {&current_, &previous_}) {
    if (*key && std::memcmp((*key)->name.data(), name, (*key)->name.size()) == 0) return **key;
  }
  return std::nullopt;
}

void TicketKeyRing::Install(SSL_CTX* ctx) {
  SSL_CTX_set_app_data(ctx, this);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, TicketKeyCallback);
}

}  // namespace alknet
