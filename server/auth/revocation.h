// Revoked keys and certificates (sshd's RevokedKeys): OpenSSH binary KRLs (PROTOCOL.krl, as
// `ssh-keygen -k` writes them) and plain files of public keys, merged into one immutable
// RevocationList that workers read through a RevocationStore snapshot.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/auth/certificate.h"
#include "server/auth/snapshot_store.h"

namespace alknet::auth {

class RevocationList {
 public:
  // A plain key (blob as on the wire) is revoked by an explicit key entry, by the SHA-1 or
  // SHA-256 hash of its blob, or by being listed in a plain revoked-keys file.
  bool IsKeyRevoked(std::string_view plain_key_blob) const;

  // A certificate is revoked when its certified key or its CA key is revoked, or when its key id
  // or its (non-zero) serial is revoked for its CA or for any CA.
  bool IsCertificateRevoked(const Certificate& certificate) const;

  bool empty() const;
  size_t key_count() const { return keys_.size() + sha1_.size() + sha256_.size(); }
  size_t certificate_section_count() const { return by_ca_.size(); }

  // Building: used by the parsers before the list is published as a const snapshot.
  void RevokeKey(std::string_view plain_key_blob);
  void RevokeSha1(std::string_view digest);    // 20 bytes
  void RevokeSha256(std::string_view digest);  // 32 bytes
  // `ca_key` empty: certificates signed by any CA. Serials are 1..UINT64_MAX, lo <= hi.
  void RevokeSerialRange(std::string_view ca_key, uint64_t lo, uint64_t hi);
  // Bit i of the big-endian `bitmap` (bit 0 = lowest bit of the last byte) revokes offset + i.
  void RevokeSerialBitmap(std::string_view ca_key, uint64_t offset, std::string_view bitmap);
  void RevokeKeyId(std::string_view ca_key, std::string_view key_id);
  // Sorts and merges the serial ranges; call once after the last Revoke*.
  void Finish();

 private:
  struct SerialRange {
    uint64_t lo;
    uint64_t hi;
  };
  struct SerialBitmap {
    uint64_t offset;
    std::string bits;  // big-endian, no leading zero bytes
  };
  struct CaRevocations {
    std::vector<SerialRange> ranges;  // sorted, merged after Finish()
    std::vector<SerialBitmap> bitmaps;
    absl::flat_hash_set<std::string> key_ids;
  };
  bool IsRevokedFor(const CaRevocations& revocations, const Certificate& certificate) const;

  absl::flat_hash_set<std::string> keys_;
  absl::flat_hash_set<std::string> sha1_;
  absl::flat_hash_set<std::string> sha256_;
  absl::flat_hash_map<std::string, CaRevocations> by_ca_;  // "" = any CA
};

using RevocationStore = SnapshotStore<RevocationList>;

// "SSHKRL\n\0" at the start: an OpenSSH KRL rather than a plain list.
bool IsKrl(std::string_view data);

// Parses an OpenSSH KRL into `into`. Strict like OpenSSH's ssh_krl_from_blob: format version 1,
// known sections only (unknown critical extensions refused), no unparsed bytes in any section,
// serial 0 / reversed ranges / wrapping bitmaps refused, hashes of the right length; signature
// sections are skipped (they must come last) and not verified.
absl::Status ParseKrl(std::string_view data, RevocationList& into);

// Parses a plain revoked-keys file: one public key per line ("type base64 [comment]"; blank
// lines and # comments skipped). A certificate line revokes its certified key. Any other line
// is an error naming file:line.
absl::Status ParseRevokedKeyList(std::string_view text, std::string_view file_name,
                                 RevocationList& into);

// Either of the above, chosen by the KRL magic.
absl::Status ParseRevocationFile(std::string_view data, std::string_view file_name,
                                 RevocationList& into);

// Reads and parses every file into one finished list. Missing, unreadable or malformed files
// are errors that name the file (the caller fails closed).
absl::StatusOr<std::shared_ptr<const RevocationList>> LoadRevocationFiles(
    const std::vector<std::string>& paths);

// Reads a whole regular file of at most `max_size` bytes; errors read "<what> <path>: ...".
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, size_t max_size,
                                            std::string_view what);

// Notices when files change, by stat (device, inode, size, mtime and ctime in nanoseconds;
// a missing file is a state too). Cheap: one stat per file per call of Changed().
class FileWatch {
 public:
  explicit FileWatch(std::vector<std::string> paths);
  // True when any file differs from the last Mark().
  bool Changed() const;
  // Records the files' current state (call before reading them).
  void Mark();
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  struct Stamp {
    bool exists = false;
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  static Stamp Take(const std::string& path);

  std::vector<std::string> paths_;
  std::vector<Stamp> stamps_;
};

}  // namespace alknet::auth
