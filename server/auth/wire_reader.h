// Reads SSH wire-format values (RFC 4251 section 5) from untrusted bytes: every length is
// checked against what is left before it is used, nothing is copied or allocated.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace alknet::auth {

class SshWireReader {
 public:
  explicit SshWireReader(std::string_view data) : rest_(data) {}

  bool ReadByte(uint8_t& out) {
    if (rest_.empty()) return false;
    out = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return true;
  }

  bool ReadUint32(uint32_t& out) {
    if (rest_.size() < 4) return false;
    out = 0;
    for (size_t i = 0; i < 4; ++i) out = (out << 8) | static_cast<uint8_t>(rest_[i]);
    rest_.remove_prefix(4);
    return true;
  }

  bool ReadUint64(uint64_t& out) {
    if (rest_.size() < 8) return false;
    out = 0;
    for (size_t i = 0; i < 8; ++i) out = (out << 8) | static_cast<uint8_t>(rest_[i]);
    rest_.remove_prefix(8);
    return true;
  }

  // A uint32 length followed by that many bytes; `out` views into the input.
  bool ReadString(std::string_view& out) {
    uint32_t length = 0;
    std::string_view saved = rest_;
    if (!ReadUint32(length)) return false;
    if (length > rest_.size()) {
      rest_ = saved;
      return false;
    }
    out = rest_.substr(0, length);
    rest_.remove_prefix(length);
    return true;
  }

  // A string that must not contain NUL bytes (OpenSSH's sshbuf_get_cstring).
  enum class CStringResult { kOk, kTruncated, kHasNul };
  CStringResult ReadCString(std::string_view& out) {
    if (!ReadString(out)) return CStringResult::kTruncated;
    if (out.find('\0') != std::string_view::npos) return CStringResult::kHasNul;
    return CStringResult::kOk;
  }

  // Takes the next `count` raw bytes.
  bool ReadBytes(size_t count, std::string_view& out) {
    if (count > rest_.size()) return false;
    out = rest_.substr(0, count);
    rest_.remove_prefix(count);
    return true;
  }

  size_t remaining() const { return rest_.size(); }
  bool empty() const { return rest_.empty(); }
  std::string_view rest() const { return rest_; }

 private:
  std::string_view rest_;
};

// Appends SSH wire-format values (tests and blob reconstruction).
inline void PutUint32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((value >> shift) & 0xff);
}
inline void PutUint64(std::string& out, uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((value >> shift) & 0xff);
}
inline void PutString(std::string& out, std::string_view value) {
  PutUint32(out, static_cast<uint32_t>(value.size()));
  out.append(value.data(), value.size());
}

}  // namespace alknet::auth
