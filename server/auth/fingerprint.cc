// Key fingerprints and base64 coding in OpenSSH's forms.
#include "server/auth/fingerprint.h"

#include <openssl/evp.h>

#include <array>
#include <cstdint>

namespace alknet::auth {
namespace {

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr int8_t kNotBase64 = -1;

// Maps each byte to its 6-bit value, or kNotBase64.
constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> table{};
  for (auto& entry : table) entry = kNotBase64;
  for (size_t i = 0; i < kBase64Alphabet.size(); ++i) {
    table[static_cast<unsigned char>(kBase64Alphabet[i])] = static_cast<int8_t>(i);
  }
  return table;
}

constexpr std::array<int8_t, 256> kDecodeTable = MakeDecodeTable();

}  // namespace

std::string Sha256Fingerprint(std::string_view blob) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int digest_length = 0;
  if (EVP_Digest(blob.data(), blob.size(), digest.data(), &digest_length, EVP_sha256(), nullptr) !=
      1) {
    // Only fails when OpenSSL cannot allocate; an empty digest never matches a real one.
    return "SHA256:";
  }
  return "SHA256:" +
         Base64Encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest_length),
                      /*pad=*/false);
}

std::string Base64Encode(std::string_view data, bool pad) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t group = (static_cast<uint32_t>(static_cast<unsigned char>(data[i])) << 16) |
                     (static_cast<uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8) |
                     static_cast<uint32_t>(static_cast<unsigned char>(data[i + 2]));
    out += kBase64Alphabet[(group >> 18) & 0x3f];
    out += kBase64Alphabet[(group >> 12) & 0x3f];
    out += kBase64Alphabet[(group >> 6) & 0x3f];
    out += kBase64Alphabet[group & 0x3f];
  }
  const size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t group = static_cast<uint32_t>(static_cast<unsigned char>(data[i])) << 16;
    out += kBase64Alphabet[(group >> 18) & 0x3f];
    out += kBase64Alphabet[(group >> 12) & 0x3f];
    if (pad) out += "==";
  } else if (rest == 2) {
    uint32_t group = (static_cast<uint32_t>(static_cast<unsigned char>(data[i])) << 16) |
                     (static_cast<uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8);
    out += kBase64Alphabet[(group >> 18) & 0x3f];
    out += kBase64Alphabet[(group >> 12) & 0x3f];
    out += kBase64Alphabet[(group >> 6) & 0x3f];
    if (pad) out += '=';
  }
  return out;
}

// Accepts exactly the canonical padded form: length a multiple of 4, at most two '=' and only
// at the end, and zero bits in the unused low bits of the last character (as OpenSSH's
// b64_pton does).
std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  size_t padding = 0;
  if (!text.empty() && text.back() == '=') {
    padding = 1;
    if (text.size() >= 2 && text[text.size() - 2] == '=') padding = 2;
  }
  const size_t data_chars = text.size() - padding;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t accumulator = 0;
  int bits = 0;
  for (size_t i = 0; i < data_chars; ++i) {
    const int8_t value = kDecodeTable[static_cast<unsigned char>(text[i])];
    if (value == kNotBase64) return std::nullopt;
    accumulator = (accumulator << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((accumulator >> bits) & 0xff);
    }
  }
  // With padding 1 the last character carries 2 unused bits, with padding 2 it carries 4.
  if (bits > 0 && (accumulator & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

}  // namespace alknet::auth
