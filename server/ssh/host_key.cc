// Loads the server's host keys and creates a missing one as Ed25519 with mode 0600.
#include "server/ssh/host_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <memory>

#include <libssh/libssh.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/auth/fingerprint.h"
#include "server/common/errno_status.h"

namespace alknet {
namespace {

struct KeyDeleter {
  void operator()(ssh_key key) const { ssh_key_free(key); }
};
using KeyPtr = std::unique_ptr<ssh_key_struct, KeyDeleter>;

absl::StatusOr<HostKeyInfo> Describe(const std::string& path, ssh_key key) {
  ssh_key public_key = nullptr;
  if (ssh_pki_export_privkey_to_pubkey(key, &public_key) != SSH_OK) {
    return absl::InternalError(absl::StrCat(path, ": cannot derive the public key"));
  }
  KeyPtr public_guard(public_key);
  char* base64 = nullptr;
  if (ssh_pki_export_pubkey_base64(public_key, &base64) != SSH_OK) {
    return absl::InternalError(absl::StrCat(path, ": cannot export the public key"));
  }
  std::string encoded(base64);
  ssh_string_free_char(base64);
  auto blob = auth::Base64Decode(encoded);
  HostKeyInfo info;
  info.path = path;
  info.type = ssh_key_type_to_char(ssh_key_type(key));
  info.fingerprint = blob ? auth::Sha256Fingerprint(*blob) : "";
  return info;
}

absl::StatusOr<HostKeyInfo> Generate(const std::string& path) {
  ssh_key raw = nullptr;
  if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &raw) != SSH_OK) {
    return absl::InternalError("cannot generate an Ed25519 host key");
  }
  KeyPtr key(raw);
  // Create the file 0600 first so the private key is never readable by others, even briefly.
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create host key ", path), errno);
  close(fd);
  if (ssh_pki_export_privkey_file(key.get(), nullptr, nullptr, nullptr, path.c_str()) != SSH_OK) {
    unlink(path.c_str());
    return absl::InternalError(absl::StrCat("cannot write host key ", path));
  }
  auto info = Describe(path, key.get());
  if (!info.ok()) return info.status();
  ssh_key public_key = nullptr;
  char* base64 = nullptr;
  if (ssh_pki_export_privkey_to_pubkey(key.get(), &public_key) == SSH_OK &&
      ssh_pki_export_pubkey_base64(public_key, &base64) == SSH_OK) {
    std::ofstream pub(path + ".pub", std::ios::trunc);
    pub << info->type << " " << base64 << " alknet-host-key\n";
  }
  ssh_string_free_char(base64);
  ssh_key_free(public_key);
  info->generated = true;
  return info;
}

absl::StatusOr<HostKeyInfo> Load(const std::string& path, const struct stat& st) {
  // Others may never read the key. Group access is refused only on a key the agent owns (it can
  // chmod it); a key owned by another user and readable through our group is how that user hands
  // a key over: `root:alknet 0640`, or a Kubernetes Secret volume under fsGroup (root:<fsGroup>
  // 0440). OpenSSH's sshd applies the same owner rule.
  if ((st.st_mode & 007) != 0 || ((st.st_mode & 070) != 0 && st.st_uid == geteuid())) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "host key %s is accessible by others (mode %04o); run: chmod 600 %s", path,
        st.st_mode & 07777, path));
  }
  ssh_key raw = nullptr;
  if (ssh_pki_import_privkey_file(path.c_str(), nullptr, nullptr, nullptr, &raw) != SSH_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a readable unencrypted OpenSSH/PEM private key"));
  }
  KeyPtr key(raw);
  switch (ssh_key_type(key.get())) {
    case SSH_KEYTYPE_ED25519:
    case SSH_KEYTYPE_RSA:
    case SSH_KEYTYPE_ECDSA_P256:
    case SSH_KEYTYPE_ECDSA_P384:
    case SSH_KEYTYPE_ECDSA_P521: break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": unsupported host key type (use ed25519, rsa or ecdsa)"));
  }
  return Describe(path, key.get());
}

}  // namespace

absl::StatusOr<std::vector<HostKeyInfo>> LoadOrCreateHostKeys(const std::vector<std::string>& paths) {
  std::vector<HostKeyInfo> keys;
  for (const std::string& path : paths) {
    struct stat st {};
    absl::StatusOr<HostKeyInfo> info;
    if (stat(path.c_str(), &st) == 0) {
      info = Load(path, st);
    } else if (errno == ENOENT) {
      info = Generate(path);
    } else {
      info = ErrnoStatus(absl::StrCat("host key ", path), errno);
    }
    if (!info.ok()) return info.status();
    keys.push_back(*std::move(info));
  }
  return keys;
}

}  // namespace alknet
