// SSH algorithm lists: the defaults, the names libssh 0.10 knows, and sshd's +/-/^ list edits.
#include "server/config/algorithms.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/common/strings.h"

namespace alknet::config {
namespace {

const std::vector<std::string>& Known(AlgorithmKind kind) {
  // libssh 0.10 has no sntrup761x25519-sha512@openssh.com (added in 0.11).
  static const std::vector<std::string> kex = {
      "curve25519-sha256",
      "curve25519-sha256@libssh.org",
      "ecdh-sha2-nistp256",
      "ecdh-sha2-nistp384",
      "ecdh-sha2-nistp521",
      "diffie-hellman-group18-sha512",
      "diffie-hellman-group16-sha512",
      "diffie-hellman-group-exchange-sha256",
      "diffie-hellman-group14-sha256",
      "diffie-hellman-group14-sha1",
      "diffie-hellman-group-exchange-sha1",
      "diffie-hellman-group1-sha1",
  };
  static const std::vector<std::string> ciphers = {
      "chacha20-poly1305@openssh.com",
      "aes256-gcm@openssh.com",
      "aes128-gcm@openssh.com",
      "aes256-ctr",
      "aes192-ctr",
      "aes128-ctr",
      "aes256-cbc",
      "aes192-cbc",
      "aes128-cbc",
      "3des-cbc",
  };
  static const std::vector<std::string> macs = {
      "hmac-sha2-256-etm@openssh.com",
      "hmac-sha2-512-etm@openssh.com",
      "hmac-sha1-etm@openssh.com",
      "hmac-sha2-256",
      "hmac-sha2-512",
      "hmac-sha1",
  };
  static const std::vector<std::string> host_keys = {
      "ssh-ed25519",        "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
      "rsa-sha2-512",       "rsa-sha2-256",        "ssh-rsa",
  };
  switch (kind) {
    case AlgorithmKind::kKex: return kex;
    case AlgorithmKind::kCiphers: return ciphers;
    case AlgorithmKind::kMacs: return macs;
    case AlgorithmKind::kHostKeys: return host_keys;
  }
  return kex;
}

std::string Shown(std::string_view value) {
  constexpr size_t kMaxShown = 100;
  if (value.size() > kMaxShown)
    return absl::StrCat(absl::CHexEscape(Sv(value.substr(0, kMaxShown))), "...");
  return absl::CHexEscape(Sv(value));
}

}  // namespace

SshAlgorithms::SshAlgorithms()
    : kex(DefaultAlgorithms(AlgorithmKind::kKex)),
      ciphers(DefaultAlgorithms(AlgorithmKind::kCiphers)),
      macs(DefaultAlgorithms(AlgorithmKind::kMacs)),
      host_key_algorithms(DefaultAlgorithms(AlgorithmKind::kHostKeys)) {}

const std::vector<std::string>& DefaultAlgorithms(AlgorithmKind kind) {
  static const std::vector<std::string> kex = {"curve25519-sha256", "curve25519-sha256@libssh.org"};
  static const std::vector<std::string> ciphers = {
      "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
      "aes256-ctr", "aes192-ctr", "aes128-ctr"};
  static const std::vector<std::string> macs = {"hmac-sha2-256-etm@openssh.com",
                                                "hmac-sha2-512-etm@openssh.com"};
  static const std::vector<std::string> host_keys = {"ssh-ed25519", "rsa-sha2-512",
                                                     "rsa-sha2-256"};
  switch (kind) {
    case AlgorithmKind::kKex: return kex;
    case AlgorithmKind::kCiphers: return ciphers;
    case AlgorithmKind::kMacs: return macs;
    case AlgorithmKind::kHostKeys: return host_keys;
  }
  return kex;
}

const std::vector<std::string>& KnownAlgorithms(AlgorithmKind kind) { return Known(kind); }

std::string_view AlgorithmKindName(AlgorithmKind kind) {
  switch (kind) {
    case AlgorithmKind::kKex: return "KEX algorithm";
    case AlgorithmKind::kCiphers: return "cipher";
    case AlgorithmKind::kMacs: return "MAC";
    case AlgorithmKind::kHostKeys: return "host key algorithm";
  }
  return "algorithm";
}

absl::Status ApplyAlgorithmSpec(AlgorithmKind kind, std::string_view spec,
                                std::vector<std::string>& list) {
  char op = spec.empty() ? '\0' : spec.front();
  std::string_view names_text = spec;
  if (op == '+' || op == '-' || op == '^') {
    names_text.remove_prefix(1);
  } else {
    op = '=';
  }
  if (names_text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", Shown(spec), "' names no ", Sv(AlgorithmKindName(kind)),
        " (a comma-separated list, optionally after one of + - ^)"));
  }
  const std::vector<std::string>& known = Known(kind);
  std::vector<std::string> names;
  for (absl::string_view piece : absl::StrSplit(Sv(names_text), ',')) {
    std::string_view name = StdSv(piece);
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", Shown(spec), "' has an empty element"));
    }
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", Shown(name), "' is not a known ", Sv(AlgorithmKindName(kind)), " (known: ",
          absl::StrJoin(known, ","), ")"));
    }
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      return absl::InvalidArgumentError(absl::StrCat("'", Shown(name), "' is listed twice"));
    }
    names.emplace_back(name);
  }
  std::vector<std::string> result;
  switch (op) {
    case '=':
      result = names;
      break;
    case '+':
      result = list;
      for (const std::string& name : names) {
        if (std::find(result.begin(), result.end(), name) == result.end()) result.push_back(name);
      }
      break;
    case '-':
      for (const std::string& name : list) {
        if (std::find(names.begin(), names.end(), name) == names.end()) result.push_back(name);
      }
      break;
    case '^':
      result = names;
      for (const std::string& name : list) {
        if (std::find(names.begin(), names.end(), name) == names.end()) result.push_back(name);
      }
      break;
  }
  if (result.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", Shown(spec), "' leaves no ", Sv(AlgorithmKindName(kind)), " to offer"));
  }
  list = std::move(result);
  return absl::OkStatus();
}

std::string JoinAlgorithms(const std::vector<std::string>& list) { return absl::StrJoin(list, ","); }

}  // namespace alknet::config
