// The agent's durable state file: header + protobuf payload + SHA-256, replaced atomically.
#include "agent/state/state_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include <openssl/sha.h>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"
#include "server/common/unique_fd.h"

namespace alknet::state {
namespace {

constexpr std::string_view kMagic = "ALKSTATE";
constexpr size_t kHeaderSize = 8 + 4 + 8;
constexpr size_t kDigestSize = SHA256_DIGEST_LENGTH;
constexpr uint64_t kMaxPayload = uint64_t{1} << 30;  // 1 GiB: far beyond any real state

void PutBigEndian(std::string& out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t GetBigEndian(std::string_view in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value = (value << 8) | static_cast<unsigned char>(in[i]);
  return value;
}

std::string Digest(std::string_view data) {
  unsigned char digest[kDigestSize];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), kDigestSize);
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

absl::Status Corrupted(std::string_view name, std::string_view what) {
  return absl::DataLossError(absl::StrCat(
      "state file ", Sv(name), " is corrupted (", Sv(what),
      "); refusing to start and leaving it untouched: restore it from a backup or move it away"));
}

absl::Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write state", errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SyncDirectory(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("open directory ", dir), errno);
  if (::fsync(fd.get()) != 0) return ErrnoStatus(absl::StrCat("fsync directory ", dir), errno);
  return absl::OkStatus();
}

}  // namespace

std::string StateFilePath(const std::string& state_dir) {
  if (!state_dir.empty() && state_dir.back() == '/') return state_dir + "state.pb";
  return state_dir + "/state.pb";
}

std::string EncodeStateFile(const v1::State& state) {
  std::string payload;
  state.SerializeToString(&payload);
  std::string out;
  out.reserve(kHeaderSize + payload.size() + kDigestSize);
  out.append(kMagic);
  PutBigEndian(out, kStateFormatVersion, 4);
  PutBigEndian(out, payload.size(), 8);
  out.append(payload);
  out.append(Digest(out));
  return out;
}

absl::StatusOr<v1::State> DecodeStateFile(std::string_view bytes, std::string_view name) {
  if (bytes.size() < kMagic.size() || bytes.substr(0, kMagic.size()) != kMagic) {
    return Corrupted(name, "not an alknet state file: bad magic");
  }
  if (bytes.size() < kHeaderSize + kDigestSize) return Corrupted(name, "truncated header");
  uint64_t version = GetBigEndian(bytes.substr(8), 4);
  if (version == 0) return Corrupted(name, "format version 0");
  if (version > kStateFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "state file ", Sv(name), " has format version ", version,
        ", newer than this agent understands (", kStateFormatVersion,
        "); refusing to start and leaving it untouched: run a newer alknet-agent"));
  }
  uint64_t length = GetBigEndian(bytes.substr(12), 8);
  if (length > kMaxPayload || bytes.size() != kHeaderSize + length + kDigestSize) {
    return Corrupted(name, absl::StrCat("length mismatch: header says ", length,
                                        " payload bytes, file has ", bytes.size()));
  }
  std::string_view covered = bytes.substr(0, kHeaderSize + length);
  if (Digest(covered) != bytes.substr(kHeaderSize + length)) {
    return Corrupted(name, "checksum mismatch");
  }
  v1::State state;
  std::string_view payload = bytes.substr(kHeaderSize, length);
  if (!state.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Corrupted(name, "payload does not parse");
  }
  return state;
}

absl::StatusOr<std::optional<v1::State>> ReadStateFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::optional<v1::State>();
    return ErrnoStatus(absl::StrCat("open state file ", path), errno);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return ErrnoStatus(absl::StrCat("stat ", path), errno);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("state file ", path, " is not a regular file"));
  }
  if (static_cast<uint64_t>(info.st_size) > kMaxPayload + kHeaderSize + kDigestSize) {
    return Corrupted(path, "file too large");
  }
  std::string bytes;
  bytes.resize(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat("read ", path), errno);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  absl::StatusOr<v1::State> state = DecodeStateFile(bytes, path);
  if (!state.ok()) return state.status();
  return std::optional<v1::State>(*std::move(state));
}

absl::StatusOr<WriteResult> WriteStateFile(const std::string& path, const v1::State& state,
                                           const WriteStepHook& hook,
                                           const DirectorySync& sync_directory) {
  static std::atomic<uint64_t> counter{0};
  auto step = [&](std::string_view name) {
    if (hook) hook(name);
  };
  const std::string dir = DirName(path);
  const std::string temp =
      absl::StrCat(path, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
  std::string bytes = EncodeStateFile(state);
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus(absl::StrCat("create ", temp), errno);
  step("temp-created");
  absl::Status status = WriteAll(fd.get(), bytes);
  if (status.ok()) {
    step("temp-written");
    if (::fsync(fd.get()) != 0) status = ErrnoStatus(absl::StrCat("fsync ", temp), errno);
  }
  if (status.ok()) step("temp-synced");
  if (::close(fd.release()) != 0 && status.ok()) {
    status = ErrnoStatus(absl::StrCat("close ", temp), errno);
  }
  if (status.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus(absl::StrCat("rename ", temp, " to ", path), errno);
  }
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  step("renamed");
  // From here on the new file is what a restart reads: the change is committed, whatever the
  // directory fsync says. It makes the rename durable; its failure is reported, not undone.
  WriteResult result;
  absl::Status synced = sync_directory ? sync_directory(dir) : SyncDirectory(dir);
  if (!synced.ok()) {
    result.durability_warning = std::string(synced.message());
    return result;
  }
  step("dir-synced");
  return result;
}

int RemoveStaleTempFiles(const std::string& path) {
  const std::string dir = DirName(path);
  const std::string prefix = BaseName(path) + ".tmp.";
  DIR* handle = ::opendir(dir.c_str());
  if (handle == nullptr) return 0;
  int removed = 0;
  while (dirent* entry = ::readdir(handle)) {
    std::string_view name = entry->d_name;
    if (name.substr(0, prefix.size()) != prefix) continue;
    if (::unlinkat(::dirfd(handle), entry->d_name, 0) == 0) ++removed;
  }
  ::closedir(handle);
  return removed;
}

}  // namespace alknet::state
