// Parses OpenSSH authorized_keys text (sshd(8) "AUTHORIZED_KEYS FILE FORMAT") into key entries.
#include "server/auth/authorized_keys.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"
#include "server/auth/address_patterns.h"
#include "server/auth/fingerprint.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"
#include "server/common/unique_fd.h"

namespace alknet::auth {
namespace {

constexpr size_t kMaxLineLength = 8 * 1024;
constexpr off_t kMaxFileSize = 16 * 1024 * 1024;
constexpr size_t kMaxShownLength = 100;    // longest user text quoted in an error message
constexpr size_t kMaxHostLength = 1024;    // sshd: strlen(host) < NI_MAXHOST
constexpr size_t kRsaMinimumBits = 1024;   // sshd's SSH_RSA_MINIMUM_MODULUS_SIZE
constexpr size_t kRsaMaximumBits = 16384;  // sshd's SSH_RSA_MAXIMUM_MODULUS_SIZE
// The public exponent's size: 65537 and 2^32+1 fit. A huge exponent (up to the modulus size)
// makes every signature check with the key as slow as a private-key operation, so a
// certificate's CA key could burn CPU before its trust is known.
constexpr size_t kRsaMaximumExponentBits = 33;
constexpr size_t kEd25519KeySize = 32;
constexpr std::string_view kCertificateSuffix = "-cert-v01@openssh.com";

// ---------------------------------------------------------------------------------------------
// Small text helpers.

// Passes std::string_view to Abseil as absl::string_view (see server/common/strings.h).
absl::string_view AbslArg(std::string_view text) { return Sv(text); }
template <typename T>
const T& AbslArg(const T& value) {
  return value;
}

// absl::StrCat that also takes std::string_view.
template <typename... Parts>
std::string Cat(const Parts&... parts) {
  return absl::StrCat(AbslArg(parts)...);
}

// User text for an error message: escaped (no control bytes reach logs) and bounded.
std::string Show(std::string_view text) {
  if (text.size() <= kMaxShownLength) return absl::CHexEscape(Sv(text));
  return Cat(absl::CHexEscape(Sv(text.substr(0, kMaxShownLength))), "...");
}

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

std::string_view SkipBlanks(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && IsBlank(text[i])) ++i;
  return text.substr(i);
}

// Splits off the leading run of non-blank characters; `text` keeps the rest, blanks skipped.
std::string_view TakeWord(std::string_view& text) {
  size_t end = 0;
  while (end < text.size() && !IsBlank(text[end])) ++end;
  std::string_view word = text.substr(0, end);
  text = SkipBlanks(text.substr(end));
  return word;
}

absl::Status LineError(std::string_view message) { return absl::InvalidArgumentError(Sv(message)); }

// ---------------------------------------------------------------------------------------------
// Key types.

enum class KeyKind { kEd25519, kRsa, kEcdsa, kSkEd25519, kSkEcdsa };

struct KeyTypeInfo {
  std::string_view name;
  KeyKind kind;
  std::string_view curve;          // ECDSA only: the curve name inside the blob
  size_t point_size = 0;           // ECDSA only: uncompressed point length
  const char* openssl_group = "";  // ECDSA only: OpenSSL group name
};

constexpr std::array<KeyTypeInfo, 7> kSupportedKeyTypes = {{
    {"ssh-ed25519", KeyKind::kEd25519, "", 0, ""},
    {"ssh-rsa", KeyKind::kRsa, "", 0, ""},
    {"ecdsa-sha2-nistp256", KeyKind::kEcdsa, "nistp256", 65, "prime256v1"},
    {"ecdsa-sha2-nistp384", KeyKind::kEcdsa, "nistp384", 97, "secp384r1"},
    {"ecdsa-sha2-nistp521", KeyKind::kEcdsa, "nistp521", 133, "secp521r1"},
    {"sk-ssh-ed25519@openssh.com", KeyKind::kSkEd25519, "", 0, ""},
    {"sk-ecdsa-sha2-nistp256@openssh.com", KeyKind::kSkEcdsa, "nistp256", 65, "prime256v1"},
}};

// Key type names OpenSSH knows that we refuse; listed so that a line starting with one is
// reported as a key-type problem rather than as an unknown option.
constexpr std::array<std::string_view, 5> kRefusedKeyTypes = {
    "ssh-dss", "ssh-xmss@openssh.com", "rsa-sha2-256", "rsa-sha2-512", "ssh-rsa1"};

const KeyTypeInfo* FindSupportedKeyType(std::string_view name) {
  for (const KeyTypeInfo& info : kSupportedKeyTypes) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

bool IsCertificateType(std::string_view name) {
  return absl::EndsWith(Sv(name), Sv(kCertificateSuffix)) ||
         absl::EndsWith(Sv(name), "-cert-v00@openssh.com");
}

bool IsKnownKeyTypeName(std::string_view name) {
  return FindSupportedKeyType(name) != nullptr || IsCertificateType(name) ||
         std::find(kRefusedKeyTypes.begin(), kRefusedKeyTypes.end(), name) !=
             kRefusedKeyTypes.end();
}

absl::StatusOr<const KeyTypeInfo*> AcceptableKeyType(std::string_view name) {
  if (IsCertificateType(name)) {
    return LineError(Cat("certificate key type '", Show(name),
                         "' is not accepted in authorized_keys (list the CA key with "
                         "cert-authority instead)"));
  }
  const KeyTypeInfo* info = FindSupportedKeyType(name);
  if (info == nullptr) return LineError(Cat("unsupported key type '", Show(name), "'"));
  return info;
}

// ---------------------------------------------------------------------------------------------
// Key blob validation (RFC 4253 section 6.6, RFC 5656, OpenSSH PROTOCOL.u2f).

// Reads SSH wire-format strings; every length is checked against the bytes left.
class WireReader {
 public:
  explicit WireReader(std::string_view data) : rest_(data) {}

  bool ReadString(std::string_view& out) {
    if (rest_.size() < 4) return false;
    const uint32_t length = (static_cast<uint32_t>(static_cast<unsigned char>(rest_[0])) << 24) |
                            (static_cast<uint32_t>(static_cast<unsigned char>(rest_[1])) << 16) |
                            (static_cast<uint32_t>(static_cast<unsigned char>(rest_[2])) << 8) |
                            static_cast<uint32_t>(static_cast<unsigned char>(rest_[3]));
    if (length > rest_.size() - 4) return false;
    out = rest_.substr(4, length);
    rest_.remove_prefix(4 + static_cast<size_t>(length));
    return true;
  }

  size_t remaining() const { return rest_.size(); }

 private:
  std::string_view rest_;
};

absl::Status Truncated(std::string_view missing) {
  return LineError(Cat("key blob is truncated (missing ", missing, ")"));
}

// An RSA mpint must be non-negative and minimally encoded (RFC 4251 section 5). We insist on
// the minimal form so that the blob, which is our lookup key, is canonical.
absl::Status CheckMpint(std::string_view value, std::string_view what) {
  if (value.empty()) return LineError(Cat("RSA ", what, " is zero"));
  const auto first = static_cast<unsigned char>(value[0]);
  if ((first & 0x80) != 0) return LineError(Cat("RSA ", what, " is negative"));
  if (first == 0 && (value.size() == 1 || (static_cast<unsigned char>(value[1]) & 0x80) == 0)) {
    return LineError(Cat("RSA ", what, " is not minimally encoded"));
  }
  return absl::OkStatus();
}

// Bit length of a non-negative, minimally encoded, non-empty mpint.
size_t MpintBits(std::string_view value) {
  if (!value.empty() && value[0] == 0) value.remove_prefix(1);
  if (value.empty()) return 0;
  return (value.size() - 1) * 8 +
         static_cast<size_t>(std::bit_width(static_cast<unsigned char>(value[0])));
}

absl::Status ValidateRsaKey(WireReader& reader) {
  std::string_view exponent;
  std::string_view modulus;
  if (!reader.ReadString(exponent)) return Truncated("RSA public exponent");
  if (!reader.ReadString(modulus)) return Truncated("RSA modulus");
  if (absl::Status s = CheckMpint(exponent, "public exponent"); !s.ok()) return s;
  if (absl::Status s = CheckMpint(modulus, "modulus"); !s.ok()) return s;
  const bool exponent_is_one = MpintBits(exponent) == 1;
  if (exponent_is_one || (static_cast<unsigned char>(exponent.back()) & 1) == 0) {
    return LineError("RSA public exponent is invalid (must be odd and at least 3)");
  }
  if (MpintBits(exponent) > kRsaMaximumExponentBits) {
    return LineError(absl::StrFormat("RSA public exponent is too large (%d bits, at most %d)",
                                     MpintBits(exponent), kRsaMaximumExponentBits));
  }
  if ((static_cast<unsigned char>(modulus.back()) & 1) == 0) {
    return LineError("RSA modulus is invalid (even)");
  }
  const size_t bits = MpintBits(modulus);
  if (bits < kRsaMinimumBits) {
    return LineError(absl::StrFormat("RSA key too short (%d bits)", bits));
  }
  if (bits > kRsaMaximumBits) return LineError(absl::StrFormat("RSA key too long (%d bits)", bits));
  return absl::OkStatus();
}

// Asks OpenSSL whether `point` is a valid public point on the curve (on the curve, not the
// point at infinity, right order), like sshd's sshkey_ec_validate_public.
bool IsValidEcPublicPoint(const KeyTypeInfo& info, std::string_view point) {
  struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
  };
  struct PkeyFree {
    void operator()(EVP_PKEY* pkey) const { EVP_PKEY_free(pkey); }
  };
  std::array<OSSL_PARAM, 3> params = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                       const_cast<char*>(info.openssl_group), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, const_cast<char*>(point.data()),
                                        point.size()),
      OSSL_PARAM_construct_end()};
  bool valid = false;
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw_pkey = nullptr;
  if (ctx != nullptr && EVP_PKEY_fromdata_init(ctx.get()) == 1 &&
      EVP_PKEY_fromdata(ctx.get(), &raw_pkey, EVP_PKEY_PUBLIC_KEY, params.data()) == 1) {
    std::unique_ptr<EVP_PKEY, PkeyFree> pkey(raw_pkey);
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> check(
        EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
    valid = check != nullptr && EVP_PKEY_public_check(check.get()) == 1;
  }
  // Failures leave entries in this thread's OpenSSL error queue; they are not ours to report.
  ERR_clear_error();
  return valid;
}

absl::Status ValidateEcdsaKey(const KeyTypeInfo& info, WireReader& reader) {
  std::string_view curve;
  std::string_view point;
  if (!reader.ReadString(curve)) return Truncated("ECDSA curve name");
  if (curve != info.curve) {
    return LineError(
        Cat("ECDSA curve '", Show(curve), "' does not match key type '", info.name, "'"));
  }
  if (!reader.ReadString(point)) return Truncated("ECDSA public key");
  if (point.size() != info.point_size) {
    return LineError(absl::StrFormat("ECDSA public key for %s must be %d bytes, got %d", info.curve,
                                     info.point_size, point.size()));
  }
  if (point[0] != 0x04) return LineError("ECDSA public key must be an uncompressed point");
  if (!IsValidEcPublicPoint(info, point)) {
    return LineError(Cat("ECDSA public key is not a valid point on ", info.curve));
  }
  return absl::OkStatus();
}

absl::Status ValidateEd25519Key(WireReader& reader) {
  std::string_view public_key;
  if (!reader.ReadString(public_key)) return Truncated("Ed25519 public key");
  if (public_key.size() != kEd25519KeySize) {
    return LineError(absl::StrFormat("Ed25519 public key must be %d bytes, got %d", kEd25519KeySize,
                                     public_key.size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateSecurityKeyApplication(WireReader& reader) {
  std::string_view application;
  if (!reader.ReadString(application)) return Truncated("security key application");
  if (application.find('\0') != std::string_view::npos) {
    return LineError("security key application contains a NUL byte");
  }
  return absl::OkStatus();
}

absl::Status ValidateKeyBlob(const KeyTypeInfo& info, std::string_view blob) {
  WireReader reader(blob);
  std::string_view inner_type;
  if (!reader.ReadString(inner_type)) return Truncated("key type");
  if (inner_type != info.name) {
    return LineError(Cat("key type '", info.name,
                         "' does not match the type inside the key blob ('", Show(inner_type),
                         "')"));
  }
  absl::Status status;
  switch (info.kind) {
    case KeyKind::kEd25519:
      status = ValidateEd25519Key(reader);
      break;
    case KeyKind::kRsa:
      status = ValidateRsaKey(reader);
      break;
    case KeyKind::kEcdsa:
      status = ValidateEcdsaKey(info, reader);
      break;
    case KeyKind::kSkEd25519:
      status = ValidateEd25519Key(reader);
      if (status.ok()) status = ValidateSecurityKeyApplication(reader);
      break;
    case KeyKind::kSkEcdsa:
      status = ValidateEcdsaKey(info, reader);
      if (status.ok()) status = ValidateSecurityKeyApplication(reader);
      break;
  }
  if (!status.ok()) return status;
  if (reader.remaining() != 0) {
    return LineError(absl::StrFormat("key blob has %d trailing bytes", reader.remaining()));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Options.

// Where the options field ends: the first blank outside double quotes (a \" does not toggle
// quoting), as sshd's sshkey_advance_past_options. npos when a quote is left open.
size_t FindOptionsEnd(std::string_view line) {
  bool quoted = false;
  size_t i = 0;
  for (; i < line.size() && (quoted || !IsBlank(line[i])); ++i) {
    if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '"') {
      ++i;
    } else if (line[i] == '"') {
      quoted = !quoted;
    }
  }
  return quoted ? std::string_view::npos : i;
}

// Flags that take a "no-" prefix. `restrict` and `cert-authority` take none.
enum class Permission { kPortForwarding, kAgentForwarding, kX11Forwarding, kPty, kUserRc };

struct PermissionFlag {
  std::string_view name;
  Permission permission;
};

constexpr std::array<PermissionFlag, 5> kPermissionFlags = {{
    {"port-forwarding", Permission::kPortForwarding},
    {"agent-forwarding", Permission::kAgentForwarding},
    {"x11-forwarding", Permission::kX11Forwarding},
    {"pty", Permission::kPty},
    {"user-rc", Permission::kUserRc},
}};

// sshd options we refuse because we would not enforce them.
constexpr std::array<std::string_view, 6> kUnsupportedOptions = {
    "environment",        "tunnel",         "verify-required",
    "no-verify-required", "touch-required", "no-touch-required"};

constexpr std::array<std::string_view, 6> kValueOptions = {
    "command", "principals", "from", "expiry-time", "permitopen", "permitlisten"};

bool& PermissionField(KeyOptions& options, Permission permission) {
  switch (permission) {
    case Permission::kPortForwarding:
      return options.port_forwarding;
    case Permission::kAgentForwarding:
      return options.agent_forwarding;
    case Permission::kX11Forwarding:
      return options.x11_forwarding;
    case Permission::kPty:
      return options.pty;
    case Permission::kUserRc:
      return options.user_rc;
  }
  return options.user_rc;  // unreachable
}

// The permission flag a lower-case option name sets, and to what.
std::optional<std::pair<Permission, bool>> LookupPermissionFlag(std::string_view lower_name) {
  bool value = true;
  if (absl::StartsWith(Sv(lower_name), "no-")) {
    lower_name.remove_prefix(3);
    value = false;
  }
  for (const PermissionFlag& flag : kPermissionFlags) {
    if (flag.name == lower_name) return std::make_pair(flag.permission, value);
  }
  return std::nullopt;
}

template <size_t N>
bool Contains(const std::array<std::string_view, N>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool IsKnownOptionName(std::string_view lower_name) {
  return lower_name == "restrict" || lower_name == "cert-authority" ||
         LookupPermissionFlag(lower_name).has_value() ||
         Contains(kUnsupportedOptions, lower_name) || Contains(kValueOptions, lower_name);
}

// Reads a double-quoted option value starting at text[pos]; `pos` ends after the closing quote.
// Inside the quotes \" stands for a quote; every other character is literal (sshd opt_dequote).
absl::StatusOr<std::string> ReadQuotedValue(std::string_view text, size_t& pos,
                                            std::string_view option_name) {
  if (pos >= text.size() || text[pos] != '"') {
    return LineError(Cat("option '", Show(option_name), "': value must be in double quotes"));
  }
  std::string value;
  size_t i = pos + 1;
  while (i < text.size() && text[i] != '"') {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == '"') ++i;
    value += text[i++];
  }
  if (i >= text.size()) {
    return LineError(Cat("option '", Show(option_name), "': missing closing quote"));
  }
  pos = i + 1;
  return value;
}

bool IsValidPermitHostChar(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte > 0x20 && byte != 0x7f && c != '"' && c != '[' && c != ']' && c != '/' && c != ',' &&
         c != ':';
}

// permitopen="host:port" and permitlisten="[host:]port", one per option, as sshd's
// handle_permit: host may be "*" or a bracketed IPv6 literal, port may be "*", port 0 is invalid.
absl::StatusOr<HostPortPattern> ParsePermitValue(std::string_view option, std::string_view value,
                                                 bool allow_bare_port) {
  std::string_view host;
  std::string_view port;
  bool bracketed = false;
  if (allow_bare_port && value.find(':') == std::string_view::npos) {
    host = "*";
    port = value;
  } else if (!value.empty() && value[0] == '[') {
    const size_t close = value.find(']');
    if (close == std::string_view::npos) {
      return LineError(Cat(option, ": missing ']' in '", Show(value), "'"));
    }
    if (close + 1 >= value.size() || value[close + 1] != ':') {
      return LineError(Cat(option, ": expected ':port' after ']' in '", Show(value), "'"));
    }
    host = value.substr(1, close - 1);
    port = value.substr(close + 2);
    bracketed = true;
  } else {
    const size_t colon = value.find(':');
    if (colon == std::string_view::npos) {
      return LineError(Cat(option, ": missing port in '", Show(value), "' (expected host:port)"));
    }
    host = value.substr(0, colon);
    port = value.substr(colon + 1);
    if (port.find(':') != std::string_view::npos && value.find(',') == std::string_view::npos) {
      return LineError(
          Cat(option, ": IPv6 address must be in brackets ('[addr]:port') in '", Show(value), "'"));
    }
  }
  if (host.empty()) return LineError(Cat(option, ": missing host in '", Show(value), "'"));
  if (host.size() > kMaxHostLength) return LineError(Cat(option, ": host is too long"));
  if (bracketed) {
    const std::string terminated(host);
    std::array<unsigned char, 16> ignored{};
    if (inet_pton(AF_INET6, terminated.c_str(), ignored.data()) != 1) {
      return LineError(Cat(option, ": invalid IPv6 address '", Show(host), "'"));
    }
  } else if (!std::all_of(host.begin(), host.end(), IsValidPermitHostChar)) {
    return LineError(Cat(option, ": invalid host '", Show(host), "'"));
  }
  HostPortPattern pattern;
  pattern.host = std::string(host);
  if (port == "*") {
    pattern.any_port = true;
    return pattern;
  }
  uint32_t number = 0;
  const bool digits_only =
      !port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      });
  if (digits_only) {
    for (char digit : port) number = number * 10 + static_cast<uint32_t>(digit - '0');
  }
  if (!digits_only || number == 0 || number > 65535) {
    std::string hint;
    if (port.find(',') != std::string_view::npos) {
      hint = Cat(" (one host:port per ", option, " option)");
    }
    return LineError(Cat(option, ": invalid port '", Show(port), "'", hint));
  }
  pattern.port = static_cast<uint16_t>(number);
  return pattern;
}

absl::TimeZone ExpiryLocalTimeZone() {
  absl::TimeZone zone;
  if (!absl::LoadTimeZone("localtime", &zone)) return absl::UTCTimeZone();
  return zone;
}

// expiry-time="YYYYMMDD[HHMM[SS]]" with an optional "Z" (or "UTC", as sshd) suffix for UTC;
// without it the time is local. Calendar-invalid values are errors (sshd's mktime would
// normalise them silently), as are times not after 1970 (sshd treats 0 as invalid).
absl::StatusOr<absl::Time> ParseExpiryTime(std::string_view text) {
  std::string_view digits = text;
  bool utc = false;
  if (digits.size() > 1 && (digits.back() == 'Z' || digits.back() == 'z')) {
    utc = true;
    digits.remove_suffix(1);
  } else if (digits.size() > 3 && absl::EndsWithIgnoreCase(Sv(digits), "UTC")) {
    utc = true;
    digits.remove_suffix(3);
  }
  const bool well_formed = (digits.size() == 8 || digits.size() == 12 || digits.size() == 14) &&
                           std::all_of(digits.begin(), digits.end(), [](char c) {
                             return absl::ascii_isdigit(static_cast<unsigned char>(c));
                           });
  if (!well_formed) {
    return LineError(Cat("expiry-time: invalid time '", Show(text),
                         "' (expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, "
                         "optionally followed by Z for UTC)"));
  }
  auto field = [&](size_t offset, size_t length) {
    int value = 0;
    if (offset + length > digits.size()) return 0;
    for (char c : digits.substr(offset, length)) value = value * 10 + (c - '0');
    return value;
  };
  const int year = field(0, 4);
  const int month = field(4, 2);
  const int day = field(6, 2);
  const int hour = field(8, 2);
  const int minute = field(10, 2);
  const int second = field(12, 2);
  const absl::CivilSecond civil(year, month, day, hour, minute, second);
  if (civil.year() != year || civil.month() != month || civil.day() != day ||
      civil.hour() != hour || civil.minute() != minute || civil.second() != second) {
    return LineError(Cat("expiry-time: '", Show(text), "' is not a valid calendar date and time"));
  }
  const absl::Time time = absl::FromCivil(civil, utc ? absl::UTCTimeZone() : ExpiryLocalTimeZone());
  if (time <= absl::UnixEpoch()) {
    return LineError(Cat("expiry-time: '", Show(text), "' is not after 1970"));
  }
  return time;
}

// Applies option `name` (as written; `lower` is its lower-case form) with an optional value.
class OptionParser {
 public:
  explicit OptionParser(KeyOptions& options) : options_(options) {}

  absl::Status Parse(std::string_view text) {
    size_t pos = 0;
    while (true) {
      size_t name_end = text.find_first_of("=,", pos);
      if (name_end == std::string_view::npos) name_end = text.size();
      const std::string_view name = text.substr(pos, name_end - pos);
      if (name.empty()) return LineError("empty option in the option list");
      pos = name_end;
      std::optional<std::string> value;
      if (pos < text.size() && text[pos] == '=') {
        ++pos;
        absl::StatusOr<std::string> quoted = ReadQuotedValue(text, pos, name);
        if (!quoted.ok()) return quoted.status();
        value = *std::move(quoted);
      }
      if (absl::Status s = Apply(name, value); !s.ok()) return s;
      if (pos == text.size()) return absl::OkStatus();
      if (text[pos] != ',') {
        return LineError(Cat("unexpected '", Show(text.substr(pos, 1)),
                             "' after the value of option '", Show(name), "'"));
      }
      ++pos;
      if (pos == text.size()) return LineError("unexpected end of options after ','");
    }
  }

 private:
  absl::Status Apply(std::string_view name, const std::optional<std::string>& value) {
    const std::string lower = absl::AsciiStrToLower(Sv(name));
    if (Contains(kUnsupportedOptions, lower)) {
      return LineError(Cat("unsupported option '", Show(name), "'"));
    }
    if (Contains(kValueOptions, lower)) {
      if (!value.has_value()) {
        return LineError(Cat("option '", Show(name), "' needs a value (", lower, "=\"...\")"));
      }
      return ApplyValue(lower, *value);
    }
    if (!IsKnownOptionName(lower)) {
      return LineError(Cat("unknown option '", Show(name), "'"));
    }
    if (value.has_value()) {
      return LineError(Cat("option '", Show(name), "' does not take a value"));
    }
    if (lower == "restrict") {
      options_.restrict = true;
      options_.port_forwarding = false;
      options_.agent_forwarding = false;
      options_.x11_forwarding = false;
      options_.pty = false;
      options_.user_rc = false;
    } else if (lower == "cert-authority") {
      options_.cert_authority = true;
    } else if (auto flag = LookupPermissionFlag(lower); flag.has_value()) {
      PermissionField(options_, flag->first) = flag->second;
    }
    return absl::OkStatus();
  }

  absl::Status ApplyValue(std::string_view option, const std::string& value) {
    if (option == "command") {
      if (options_.command.has_value()) return Duplicate(option);
      options_.command = value;
    } else if (option == "principals") {
      if (seen_principals_) return Duplicate(option);
      seen_principals_ = true;
      for (absl::string_view piece : absl::StrSplit(value, ',')) {
        const std::string_view principal = StdSv(piece);
        // An empty name would match nothing in sshd; dropping it could widen the list.
        if (principal.empty()) return LineError("principals: empty principal name");
        options_.principals.emplace_back(principal);
      }
    } else if (option == "from") {
      if (seen_from_) return Duplicate(option);
      seen_from_ = true;
      for (absl::string_view piece : absl::StrSplit(value, ',')) {
        const std::string_view entry = StdSv(piece);
        if (absl::Status s = CheckSourcePattern(entry); !s.ok()) {
          return LineError(Cat("from: invalid pattern '", Show(entry), "': ", s.message()));
        }
        options_.from.emplace_back(entry);
      }
    } else if (option == "expiry-time") {
      absl::StatusOr<absl::Time> expiry = ParseExpiryTime(value);
      if (!expiry.ok()) return expiry.status();
      // Several expiry-time options: the earliest wins, as in sshd.
      if (!options_.expiry.has_value() || *expiry < *options_.expiry) options_.expiry = *expiry;
    } else if (option == "permitopen" || option == "permitlisten") {
      const bool listen = option == "permitlisten";
      absl::StatusOr<HostPortPattern> pattern = ParsePermitValue(option, value, listen);
      if (!pattern.ok()) return pattern.status();
      (listen ? options_.permit_listen : options_.permit_open).push_back(*std::move(pattern));
    }
    return absl::OkStatus();
  }

  static absl::Status Duplicate(std::string_view option) {
    return LineError(Cat("duplicate option '", option, "'"));
  }

  KeyOptions& options_;
  bool seen_principals_ = false;
  bool seen_from_ = false;
};

// A first field that is a bare word (no '=', ',' or quote), not an option name, and followed
// by something that looks like base64 key data is a key type we do not know, not an option.
bool LooksLikeUnknownKeyType(std::string_view first_word, std::string_view after) {
  if (first_word.find_first_of("=,\"") != std::string_view::npos) return false;
  if (IsKnownOptionName(absl::AsciiStrToLower(Sv(first_word)))) return false;
  return absl::StartsWith(Sv(after), "AAAA");
}

absl::Status CheckLineBasics(std::string_view line) {
  if (line.size() > kMaxLineLength) {
    return LineError(
        absl::StrFormat("line too long (%d bytes, at most %d)", line.size(), kMaxLineLength));
  }
  if (line.find('\0') != std::string_view::npos) return LineError("line contains a NUL byte");
  return absl::OkStatus();
}

bool IsBlankOrComment(std::string_view line) {
  const std::string_view content = StdSv(absl::StripLeadingAsciiWhitespace(Sv(line)));
  return content.empty() || content.front() == '#';
}

}  // namespace

absl::StatusOr<AuthorizedKey> ParseAuthorizedKeyLine(std::string_view line) {
  if (absl::Status s = CheckLineBasics(line); !s.ok()) return s;
  std::string_view rest = StdSv(absl::StripTrailingAsciiWhitespace(Sv(SkipBlanks(line))));
  if (rest.empty()) return LineError("empty line");
  if (rest.front() == '#') return LineError("comment line");

  AuthorizedKey key;
  std::string_view probe = rest;
  const std::string_view first_word = TakeWord(probe);
  if (!IsKnownKeyTypeName(first_word)) {
    if (LooksLikeUnknownKeyType(first_word, probe)) {
      return LineError(Cat("unsupported key type '", Show(first_word), "'"));
    }
    const size_t options_end = FindOptionsEnd(rest);
    if (options_end == std::string_view::npos) {
      return LineError("options: missing closing quote");
    }
    if (absl::Status s = OptionParser(key.options).Parse(rest.substr(0, options_end)); !s.ok()) {
      return s;
    }
    rest = SkipBlanks(rest.substr(options_end));
    if (rest.empty()) return LineError("missing key type after the options");
  }

  const std::string_view key_type = TakeWord(rest);
  absl::StatusOr<const KeyTypeInfo*> type_info = AcceptableKeyType(key_type);
  if (!type_info.ok()) return type_info.status();
  const std::string_view encoded_blob = TakeWord(rest);
  if (encoded_blob.empty()) {
    return LineError(Cat("missing base64 key data after key type '", key_type, "'"));
  }
  std::optional<std::string> blob = Base64Decode(encoded_blob);
  if (!blob.has_value()) return LineError("base64 key data is invalid");
  if (absl::Status s = ValidateKeyBlob(**type_info, *blob); !s.ok()) return s;

  key.key_type = std::string(key_type);
  key.blob = *std::move(blob);
  key.comment = std::string(rest);
  key.fingerprint = Sha256Fingerprint(key.blob);
  return key;
}

ParsedKeys ParseAuthorizedKeys(std::string_view text, std::string_view file_name) {
  ParsedKeys parsed;
  size_t line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    std::string source = Cat(file_name, ":", line_number);
    if (absl::Status s = CheckLineBasics(line); !s.ok()) {
      parsed.problems.push_back({std::move(source), std::string(s.message())});
      continue;
    }
    if (IsBlankOrComment(line)) continue;
    absl::StatusOr<AuthorizedKey> key = ParseAuthorizedKeyLine(line);
    if (!key.ok()) {
      parsed.problems.push_back({std::move(source), std::string(key.status().message())});
      continue;
    }
    key->source = std::move(source);
    parsed.keys.push_back(*std::move(key));
  }
  return parsed;
}

absl::StatusOr<ParsedKeys> LoadAuthorizedKeysFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    if (errno == ENOENT) return ParsedKeys{};
    return ErrnoStatus(Cat("open ", path), errno);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return ErrnoStatus(Cat("stat ", path), errno);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(Cat(path, ": not a regular file"));
  }
  if (info.st_size > kMaxFileSize) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: file too large (%d bytes, at most %d)", path, info.st_size, kMaxFileSize));
  }
  std::string content;
  std::array<char, 64 * 1024> buffer;
  while (true) {
    const ssize_t got = ::read(fd.get(), buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(Cat("read ", path), errno);
    }
    if (got == 0) break;
    content.append(buffer.data(), static_cast<size_t>(got));
    if (content.size() > static_cast<size_t>(kMaxFileSize)) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s: file too large (more than %d bytes)", path, kMaxFileSize));
    }
  }
  return ParseAuthorizedKeys(content, path);
}

absl::Status ValidatePublicKeyBlob(std::string_view blob) {
  WireReader reader(blob);
  std::string_view type;
  if (!reader.ReadString(type)) return Truncated("key type");
  if (IsCertificateType(type)) return LineError(Cat("'", Show(type), "' is a certificate, not a plain key"));
  const KeyTypeInfo* info = FindSupportedKeyType(type);
  if (info == nullptr) return LineError(Cat("unsupported key type '", Show(type), "'"));
  return ValidateKeyBlob(*info, blob);
}

}  // namespace alknet::auth
