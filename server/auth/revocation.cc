// Revoked keys and certificates: OpenSSH KRLs (PROTOCOL.krl) and plain revoked-key lists.
#include "server/auth/revocation.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <iterator>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "server/auth/authorized_keys.h"
#include "server/auth/fingerprint.h"
#include "server/auth/wire_reader.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"
#include "server/common/unique_fd.h"

namespace alknet::auth {
namespace {

constexpr std::string_view kKrlMagic("SSHKRL\n\0", 8);
constexpr uint32_t kKrlFormatVersion = 1;
constexpr size_t kMaxRevocationFileSize = 64 * 1024 * 1024;
constexpr size_t kMaxShownLength = 64;

enum : uint8_t {
  kSectionCertificates = 1,
  kSectionExplicitKey = 2,
  kSectionFingerprintSha1 = 3,
  kSectionSignature = 4,
  kSectionFingerprintSha256 = 5,
  kSectionExtension = 255,
};

enum : uint8_t {
  kCertSectionSerialList = 0x20,
  kCertSectionSerialRange = 0x21,
  kCertSectionSerialBitmap = 0x22,
  kCertSectionKeyId = 0x23,
  kCertSectionExtension = 0x39,
};

absl::Status Invalid(std::string_view message) { return absl::InvalidArgumentError(Sv(message)); }

std::string Show(std::string_view text) {
  if (text.size() <= kMaxShownLength) return absl::CHexEscape(Sv(text));
  return absl::StrCat(absl::CHexEscape(Sv(text.substr(0, kMaxShownLength))), "...");
}

std::string Digest(const EVP_MD* md, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, md, nullptr) != 1) return "";
  return std::string(reinterpret_cast<const char*>(digest.data()), length);
}

// An extension section or subsection: string name, boolean critical, string contents. We know
// none, so a critical one makes the KRL unusable and a non-critical one is skipped.
absl::Status SkipExtension(std::string_view data, std::string_view where) {
  SshWireReader reader(data);
  std::string_view name;
  uint8_t critical = 0;
  std::string_view contents;
  if (!reader.ReadString(name) || !reader.ReadByte(critical) || !reader.ReadString(contents) ||
      !reader.empty()) {
    return Invalid(absl::StrCat("malformed ", Sv(where), " extension"));
  }
  if (critical != 0) {
    return Invalid(absl::StrCat("unsupported critical ", Sv(where), " extension '", Show(name), "'"));
  }
  return absl::OkStatus();
}

// The CA key of a certificates section: empty (any CA) or a plain public key blob.
absl::Status CheckKrlCaKey(std::string_view blob) {
  if (blob.empty()) return absl::OkStatus();
  SshWireReader reader(blob);
  std::string_view type;
  if (!reader.ReadString(type) || type.empty()) return Invalid("certificates section: malformed CA key");
  if (IsCertificateKeyType(type)) return Invalid("certificates section: CA key is a certificate");
  return absl::OkStatus();
}

absl::Status ParseCertificatesSection(std::string_view data, RevocationList& into) {
  SshWireReader reader(data);
  std::string_view ca_key;
  std::string_view reserved;
  if (!reader.ReadString(ca_key) || !reader.ReadString(reserved)) {
    return Invalid("certificates section is truncated");
  }
  if (absl::Status s = CheckKrlCaKey(ca_key); !s.ok()) return s;
  while (!reader.empty()) {
    uint8_t type = 0;
    std::string_view body;
    if (!reader.ReadByte(type) || !reader.ReadString(body)) {
      return Invalid("certificates section: truncated subsection");
    }
    SshWireReader sub(body);
    switch (type) {
      case kCertSectionSerialList:
        while (!sub.empty()) {
          uint64_t serial = 0;
          if (!sub.ReadUint64(serial)) return Invalid("serial list: truncated serial");
          if (serial == 0) return Invalid("serial list: serial 0 cannot be revoked");
          into.RevokeSerialRange(ca_key, serial, serial);
        }
        break;
      case kCertSectionSerialRange: {
        uint64_t lo = 0;
        uint64_t hi = 0;
        if (!sub.ReadUint64(lo) || !sub.ReadUint64(hi)) return Invalid("serial range: truncated");
        if (lo == 0 || lo > hi) {
          return Invalid(absl::StrFormat("serial range: invalid range %d-%d", lo, hi));
        }
        into.RevokeSerialRange(ca_key, lo, hi);
        break;
      }
      case kCertSectionSerialBitmap: {
        uint64_t offset = 0;
        std::string_view bitmap;
        if (!sub.ReadUint64(offset) || !sub.ReadString(bitmap)) return Invalid("serial bitmap: truncated");
        if (!bitmap.empty() && (static_cast<unsigned char>(bitmap[0]) & 0x80) != 0) {
          return Invalid("serial bitmap: negative bitmap");
        }
        while (!bitmap.empty() && bitmap[0] == 0) bitmap.remove_prefix(1);
        if (!bitmap.empty()) {
          // Highest set bit: in the first byte (leading zero bytes are gone).
          const auto top = static_cast<unsigned char>(bitmap[0]);
          int top_bit = 7;
          while (((top >> top_bit) & 1) == 0) --top_bit;
          const uint64_t highest = static_cast<uint64_t>(bitmap.size() - 1) * 8 + static_cast<uint64_t>(top_bit);
          if (highest > UINT64_MAX - offset) return Invalid("serial bitmap: wraps past 2^64");
          if (offset == 0 && (static_cast<unsigned char>(bitmap.back()) & 1) != 0) {
            return Invalid("serial bitmap: serial 0 cannot be revoked");
          }
          into.RevokeSerialBitmap(ca_key, offset, bitmap);
        }
        break;
      }
      case kCertSectionKeyId:
        while (!sub.empty()) {
          std::string_view key_id;
          switch (sub.ReadCString(key_id)) {
            case SshWireReader::CStringResult::kOk:
              break;
            case SshWireReader::CStringResult::kTruncated:
              return Invalid("key id list: truncated key id");
            case SshWireReader::CStringResult::kHasNul:
              return Invalid("key id list: key id contains a NUL byte");
          }
          into.RevokeKeyId(ca_key, key_id);
        }
        break;
      case kCertSectionExtension:
        if (absl::Status s = SkipExtension(body, "certificates section"); !s.ok()) return s;
        sub = SshWireReader("");
        break;
      default:
        return Invalid(absl::StrFormat("unsupported certificates subsection type 0x%02x", type));
    }
    if (!sub.empty()) {
      return Invalid(absl::StrFormat("certificates subsection 0x%02x has %d unparsed bytes", type,
                                     sub.remaining()));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseBlobSection(std::string_view data, uint8_t type, RevocationList& into) {
  SshWireReader reader(data);
  while (!reader.empty()) {
    std::string_view blob;
    if (!reader.ReadString(blob)) return Invalid("key section: truncated entry");
    switch (type) {
      case kSectionExplicitKey:
        if (blob.empty()) return Invalid("explicit key section: empty key");
        into.RevokeKey(blob);
        break;
      case kSectionFingerprintSha1:
        if (blob.size() != 20) return Invalid("SHA1 section: hash is not 20 bytes");
        into.RevokeSha1(blob);
        break;
      case kSectionFingerprintSha256:
        if (blob.size() != 32) return Invalid("SHA256 section: hash is not 32 bytes");
        into.RevokeSha256(blob);
        break;
    }
  }
  return absl::OkStatus();
}

// Splits a line into its first two blank-separated words.
bool SplitKeyLine(std::string_view line, std::string_view& type, std::string_view& base64) {
  auto skip_blanks = [](std::string_view& text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  };
  auto take_word = [](std::string_view& text) {
    size_t end = 0;
    while (end < text.size() && text[end] != ' ' && text[end] != '\t') ++end;
    std::string_view word = text.substr(0, end);
    text.remove_prefix(end);
    return word;
  };
  skip_blanks(line);
  type = take_word(line);
  skip_blanks(line);
  base64 = take_word(line);
  return !type.empty() && !base64.empty();
}

absl::Status ParseRevokedKeyLine(std::string_view line, RevocationList& into) {
  std::string_view type;
  std::string_view base64;
  if (!SplitKeyLine(line, type, base64)) {
    return Invalid("expected a public key (\"type base64 [comment]\")");
  }
  std::optional<std::string> blob = Base64Decode(base64);
  if (!blob.has_value()) return Invalid(absl::StrCat("key data of '", Show(type), "' is not valid base64"));
  SshWireReader reader(*blob);
  std::string_view inner_type;
  if (!reader.ReadString(inner_type) || inner_type != type) {
    return Invalid(absl::StrCat("key type '", Show(type), "' does not match the key data"));
  }
  if (IsCertificateKeyType(type)) {
    absl::StatusOr<Certificate> cert = ParseCertificate(*blob);
    if (!cert.ok()) return cert.status();
    into.RevokeKey(cert->public_key);
    return absl::OkStatus();
  }
  if (absl::Status s = ValidatePublicKeyBlob(*blob); !s.ok()) return s;
  into.RevokeKey(*blob);
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// RevocationList.

void RevocationList::RevokeKey(std::string_view plain_key_blob) { keys_.emplace(plain_key_blob); }
void RevocationList::RevokeSha1(std::string_view digest) { sha1_.emplace(digest); }
void RevocationList::RevokeSha256(std::string_view digest) { sha256_.emplace(digest); }

void RevocationList::RevokeSerialRange(std::string_view ca_key, uint64_t lo, uint64_t hi) {
  by_ca_[std::string(ca_key)].ranges.push_back({lo, hi});
}

void RevocationList::RevokeSerialBitmap(std::string_view ca_key, uint64_t offset,
                                        std::string_view bitmap) {
  by_ca_[std::string(ca_key)].bitmaps.push_back({offset, std::string(bitmap)});
}

void RevocationList::RevokeKeyId(std::string_view ca_key, std::string_view key_id) {
  by_ca_[std::string(ca_key)].key_ids.emplace(key_id);
}

void RevocationList::Finish() {
  for (auto& [ca, revocations] : by_ca_) {
    std::vector<SerialRange>& ranges = revocations.ranges;
    std::sort(ranges.begin(), ranges.end(),
              [](const SerialRange& a, const SerialRange& b) { return a.lo < b.lo; });
    std::vector<SerialRange> merged;
    for (const SerialRange& range : ranges) {
      if (!merged.empty() && (merged.back().hi == UINT64_MAX || range.lo <= merged.back().hi + 1)) {
        merged.back().hi = std::max(merged.back().hi, range.hi);
      } else {
        merged.push_back(range);
      }
    }
    ranges = std::move(merged);
    std::sort(revocations.bitmaps.begin(), revocations.bitmaps.end(),
              [](const SerialBitmap& a, const SerialBitmap& b) { return a.offset < b.offset; });
  }
}

bool RevocationList::empty() const {
  return keys_.empty() && sha1_.empty() && sha256_.empty() && by_ca_.empty();
}

bool RevocationList::IsKeyRevoked(std::string_view plain_key_blob) const {
  if (keys_.contains(Sv(plain_key_blob))) return true;
  if (!sha1_.empty() && sha1_.contains(Digest(EVP_sha1(), plain_key_blob))) return true;
  if (!sha256_.empty() && sha256_.contains(Digest(EVP_sha256(), plain_key_blob))) return true;
  return false;
}

bool RevocationList::IsRevokedFor(const CaRevocations& revocations,
                                  const Certificate& certificate) const {
  if (revocations.key_ids.contains(certificate.key_id)) return true;
  // Serial 0 means "no serial" (sshd ignores it).
  const uint64_t serial = certificate.serial;
  if (serial == 0) return false;
  const std::vector<SerialRange>& ranges = revocations.ranges;
  auto after = std::upper_bound(ranges.begin(), ranges.end(), serial,
                                [](uint64_t value, const SerialRange& range) { return value < range.lo; });
  if (after != ranges.begin() && std::prev(after)->hi >= serial) return true;
  for (const SerialBitmap& bitmap : revocations.bitmaps) {
    if (bitmap.offset > serial) break;  // sorted by offset
    const uint64_t index = serial - bitmap.offset;
    if (index / 8 >= bitmap.bits.size()) continue;
    const auto byte = static_cast<unsigned char>(bitmap.bits[bitmap.bits.size() - 1 - index / 8]);
    if (((byte >> (index % 8)) & 1) != 0) return true;
  }
  return false;
}

bool RevocationList::IsCertificateRevoked(const Certificate& certificate) const {
  if (IsKeyRevoked(certificate.public_key) || IsKeyRevoked(certificate.ca_key)) return true;
  if (auto it = by_ca_.find(certificate.ca_key); it != by_ca_.end() && IsRevokedFor(it->second, certificate)) {
    return true;
  }
  if (auto it = by_ca_.find(std::string()); it != by_ca_.end() && IsRevokedFor(it->second, certificate)) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Parsers.

bool IsKrl(std::string_view data) { return data.substr(0, kKrlMagic.size()) == kKrlMagic; }

absl::Status ParseKrl(std::string_view data, RevocationList& into) {
  if (!IsKrl(data)) return Invalid("not a KRL (bad magic)");
  SshWireReader reader(data.substr(kKrlMagic.size()));
  uint32_t format_version = 0;
  uint64_t krl_version = 0;
  uint64_t generated = 0;
  uint64_t flags = 0;
  std::string_view reserved;
  std::string_view comment;
  if (!reader.ReadUint32(format_version)) return Invalid("KRL header is truncated");
  if (format_version != kKrlFormatVersion) {
    return Invalid(absl::StrFormat("unsupported KRL format version %d", format_version));
  }
  if (!reader.ReadUint64(krl_version) || !reader.ReadUint64(generated) || !reader.ReadUint64(flags) ||
      !reader.ReadString(reserved) || !reader.ReadString(comment)) {
    return Invalid("KRL header is truncated");
  }
  bool signature_seen = false;
  while (!reader.empty()) {
    uint8_t type = 0;
    std::string_view body;
    if (!reader.ReadByte(type) || !reader.ReadString(body)) return Invalid("KRL section is truncated");
    if (type != kSectionSignature && signature_seen) {
      return Invalid("KRL has a section after its signature");
    }
    switch (type) {
      case kSectionCertificates:
        if (absl::Status s = ParseCertificatesSection(body, into); !s.ok()) return s;
        break;
      case kSectionExplicitKey:
      case kSectionFingerprintSha1:
      case kSectionFingerprintSha256:
        if (absl::Status s = ParseBlobSection(body, type, into); !s.ok()) return s;
        break;
      case kSectionSignature: {
        // Body is the signing key; the signature string follows. Skipped, not verified.
        signature_seen = true;
        std::string_view signature;
        if (body.empty() || !reader.ReadString(signature)) return Invalid("KRL signature section is truncated");
        break;
      }
      case kSectionExtension:
        if (absl::Status s = SkipExtension(body, "KRL"); !s.ok()) return s;
        break;
      default:
        return Invalid(absl::StrFormat("unsupported KRL section type %d", type));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseRevokedKeyList(std::string_view text, std::string_view file_name,
                                 RevocationList& into) {
  size_t line_number = 0;
  for (absl::string_view piece : absl::StrSplit(Sv(text), '\n')) {
    ++line_number;
    std::string_view line = StdSv(absl::StripAsciiWhitespace(piece));
    if (line.empty() || line.front() == '#') continue;
    if (absl::Status s = ParseRevokedKeyLine(line, into); !s.ok()) {
      return Invalid(absl::StrCat(Sv(file_name), ":", line_number, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseRevocationFile(std::string_view data, std::string_view file_name,
                                 RevocationList& into) {
  if (IsKrl(data)) {
    if (absl::Status s = ParseKrl(data, into); !s.ok()) {
      return Invalid(absl::StrCat(Sv(file_name), ": invalid KRL: ", s.message()));
    }
    return absl::OkStatus();
  }
  return ParseRevokedKeyList(data, file_name, into);
}

absl::StatusOr<std::string> ReadRegularFile(const std::string& path, size_t max_size,
                                            std::string_view what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat(Sv(what), " ", path), errno);
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return ErrnoStatus(absl::StrCat(Sv(what), " ", path), errno);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(Sv(what), " ", path, ": not a regular file"));
  }
  std::string content;
  std::array<char, 64 * 1024> buffer;
  while (true) {
    const ssize_t got = ::read(fd.get(), buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat(Sv(what), " ", path), errno);
    }
    if (got == 0) break;
    content.append(buffer.data(), static_cast<size_t>(got));
    if (content.size() > max_size) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s %s: too large (more than %d bytes)", Sv(what), path, max_size));
    }
  }
  return content;
}

absl::StatusOr<std::shared_ptr<const RevocationList>> LoadRevocationFiles(
    const std::vector<std::string>& paths) {
  auto list = std::make_shared<RevocationList>();
  for (const std::string& path : paths) {
    absl::StatusOr<std::string> content = ReadRegularFile(path, kMaxRevocationFileSize, "revoked keys file");
    if (!content.ok()) return content.status();
    if (absl::Status s = ParseRevocationFile(*content, path, *list); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("revoked keys file ", s.message()));
    }
  }
  list->Finish();
  return std::shared_ptr<const RevocationList>(std::move(list));
}

// ---------------------------------------------------------------------------------------------
// FileWatch.

FileWatch::FileWatch(std::vector<std::string> paths) : paths_(std::move(paths)) { Mark(); }

FileWatch::Stamp FileWatch::Take(const std::string& path) {
  Stamp stamp;
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return stamp;
  stamp.exists = true;
  stamp.device = info.st_dev;
  stamp.inode = info.st_ino;
  stamp.size = info.st_size;
  stamp.mtime_ns = static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec;
  stamp.ctime_ns = static_cast<int64_t>(info.st_ctim.tv_sec) * 1000000000 + info.st_ctim.tv_nsec;
  return stamp;
}

bool FileWatch::Changed() const {
  for (size_t i = 0; i < paths_.size(); ++i) {
    if (!(Take(paths_[i]) == stamps_[i])) return true;
  }
  return false;
}

void FileWatch::Mark() {
  stamps_.clear();
  for (const std::string& path : paths_) stamps_.push_back(Take(path));
}

}  // namespace alknet::auth
