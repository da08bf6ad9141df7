// The field table of AgentConfig: YAML path, flag, kind, help, and how to set, clear and print.
#include "server/config/config_schema.h"

#include <array>
#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/netblock.h"
#include "server/common/strings.h"
#include "server/config/duration.h"
#include "server/config/rate_units.h"
#include "server/config/upstream_schema.h"
#include "yaml-cpp/yaml.h"

namespace alknet::config {
namespace {

// Error text of a setter: no field name, SetField prefixes it.
absl::Status Bad(std::string_view message) { return absl::InvalidArgumentError(Sv(message)); }

std::string Shown(std::string_view value) {
  constexpr size_t kMaxShown = 100;
  if (value.size() > kMaxShown)
    return absl::StrCat(absl::CHexEscape(Sv(value.substr(0, kMaxShown))), "...");
  return absl::CHexEscape(Sv(value));
}

// Strict decimal: optional '-', then digits; nothing else (no '+', spaces, hex or '_').
absl::Status ParseInt(std::string_view text, IntRange range, int& out) {
  std::string_view digits = text;
  bool negative = !digits.empty() && digits.front() == '-';
  if (negative) digits.remove_prefix(1);
  if (digits.empty()) return Bad(absl::StrCat("'", Shown(text), "' is not an integer"));
  for (char c : digits) {
    if (c < '0' || c > '9') return Bad(absl::StrCat("'", Shown(text), "' is not an integer"));
  }
  int64_t value = 0;
  for (char c : digits) {
    value = value * 10 + (c - '0');
    if (value > int64_t{1} << 40) {
      return Bad(
          absl::StrCat("'", Shown(text), "' is out of range (", range.min, "..", range.max, ")"));
    }
  }
  if (negative) value = -value;
  if (value < range.min || value > range.max) {
    return Bad(
        absl::StrCat("'", Shown(text), "' is out of range (", range.min, "..", range.max, ")"));
  }
  out = static_cast<int>(value);
  return absl::OkStatus();
}

absl::Status ParseBoundedDuration(std::string_view text, DurationRange range, absl::Duration& out) {
  absl::StatusOr<absl::Duration> value = ParseDuration(text);
  if (!value.ok()) return value.status();
  if (!CheckRange(*value, range).ok()) {
    return Bad(absl::StrCat("'", Shown(text), "' is out of range (must be ",
                            range.min_exclusive ? "> " : ">= ", config::FormatDuration(range.min),
                            " and <= ", config::FormatDuration(range.max), ")"));
  }
  out = *value;
  return absl::OkStatus();
}

// Strict UTF-8: no overlong forms, surrogates or code points above U+10FFFF.
bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t code_point = 0;
    uint32_t min = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, code_point = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, code_point = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, code_point = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (text.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < min || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

// Paths are kept as given, but must print as YAML that reads back the same: valid UTF-8 and no
// ASCII control characters (a stray CR or tab in a path is a mistake, not a file name).
absl::Status ParsePath(std::string_view text, std::string& out) {
  if (text.empty()) return Bad("the path must not be empty");
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Bad(absl::StrCat("'", Shown(text), "' contains a control character"));
    }
  }
  if (!IsValidUtf8(text)) return Bad(absl::StrCat("'", Shown(text), "' is not valid UTF-8"));
  out = std::string(text);
  return absl::OkStatus();
}

// A listen address: a host name or IP literal (an IPv6 zone after '%'), as ParseEndpointUrl
// reads it, limited to the characters those can contain.
absl::Status ParseListen(std::string_view text, std::vector<EndpointUrl>& out) {
  absl::StatusOr<EndpointUrl> url = ParseEndpointUrl(text);
  if (!url.ok()) return url.status();
  for (char c : url->address.host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':' || c == '%';
    if (!ok) {
      return Bad(absl::StrCat("'", Shown(text), "': the host '", Shown(url->address.host),
                              "' may only contain letters, digits and . - _ : %"));
    }
  }
  out.push_back(*std::move(url));
  return absl::OkStatus();
}

// "label=SHA256:base64": the label becomes a Prometheus label value, so it is restricted.
absl::Status ParseKeyLabel(std::string_view text, std::vector<MetricsConfig::KeyLabel>& out) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos) {
    return Bad(absl::StrCat("'", Shown(text), "' is not LABEL=SHA256:fingerprint"));
  }
  std::string_view label = text.substr(0, eq);
  std::string_view fingerprint = text.substr(eq + 1);
  if (label.empty() || label.size() > 64) return Bad("the label must be 1..64 characters");
  for (char c : label) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return Bad(absl::StrCat("label '", Shown(label), "' may only contain letters, digits and _ . -"));
  }
  if (fingerprint.substr(0, 7) != "SHA256:" || fingerprint.size() != 50) {
    return Bad(absl::StrCat("'", Shown(fingerprint), "' is not a SHA256:... key fingerprint"));
  }
  if (out.size() >= 200) return Bad("at most 200 key labels");
  out.push_back({std::string(label), std::string(fingerprint)});
  return absl::OkStatus();
}

absl::Status ParseBool(std::string_view text, bool& out) {
  if (text == "true" || text == "yes" || text == "on") {
    out = true;
  } else if (text == "false" || text == "no" || text == "off") {
    out = false;
  } else {
    return Bad(absl::StrCat("'", Shown(text), "' is not true or false"));
  }
  return absl::OkStatus();
}

std::string_view LogLevelText(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string_view LogFormatText(LogFormat format) {
  return format == LogFormat::kJson ? "json" : "text";
}

using Setter = absl::Status (*)(AgentConfig&, std::string_view);
using Clearer = void (*)(AgentConfig&);
using Printer = std::vector<std::string> (*)(const AgentConfig&);  // one string per element

struct FieldDef {
  FieldSpec spec;
  Setter set;
  Clearer clear;  // list fields only
  Printer print;
};

template <typename T>
std::vector<std::string> Strings(const std::vector<T>& values) {
  std::vector<std::string> out;
  for (const T& value : values) {
    if constexpr (std::is_same_v<T, std::string>) {
      out.push_back(value);
    } else {
      out.push_back(value.ToString());
    }
  }
  return out;
}

#define ALKNET_PATH_LIST_FIELD(member)                          \
  [](AgentConfig& c, std::string_view v) {                       \
    std::string path;                                            \
    absl::Status status = ParsePath(v, path);                    \
    if (status.ok()) c.member.push_back(std::move(path));        \
    return status;                                               \
  },                                                             \
      [](AgentConfig& c) { c.member.clear(); },                  \
      [](const AgentConfig& c) { return Strings(c.member); }
// A path or URL that may be unset: "" prints as "" and reads back as unset.
#define ALKNET_OPTIONAL_PATH_FIELD(member)                                            \
  [](AgentConfig& c, std::string_view v) -> absl::Status {                          \
    if (v.empty()) {                                                                \
      c.member.clear();                                                             \
      return absl::OkStatus();                                                      \
    }                                                                               \
    return ParsePath(v, c.member);                                                  \
  },                                                                                \
      nullptr, [](const AgentConfig& c) { return std::vector<std::string>{c.member}; }
// An optional host:port that reads and prints "off" when unset.
#define ALKNET_OFF_OR_ADDRESS_FIELD(member)                                                   \
  [](AgentConfig& c, std::string_view v) -> absl::Status {                                    \
    if (v == "off") {                                                                         \
      c.member.reset();                                                                       \
      return absl::OkStatus();                                                                \
    }                                                                                         \
    absl::StatusOr<HostPort> address = ParseHostPort(v);                                      \
    if (!address.ok()) return address.status();                                               \
    c.member = *std::move(address);                                                           \
    return absl::OkStatus();                                                                  \
  },                                                                                          \
      nullptr, [](const AgentConfig& c) {                                                     \
        return std::vector<std::string>{c.member ? c.member->ToString() : "off"};            \
      }
#define ALKNET_INT_FIELD(member, range)                                                     \
  [](AgentConfig& c, std::string_view v) { return ParseInt(v, range, c.member); }, nullptr, \
      [](const AgentConfig& c) { return std::vector<std::string>{absl::StrCat(c.member)}; }
// An sshd-style algorithm list: "a,b" replaces it, "+a" appends, "-a" removes, "^a" puts first.
#define ALKNET_ALGORITHMS_FIELD(member, kind)                                                \
  [](AgentConfig& c, std::string_view v) { return ApplyAlgorithmSpec(kind, v, c.member); },  \
      nullptr, [](const AgentConfig& c) {                                                    \
        return std::vector<std::string>{JoinAlgorithms(c.member)};                           \
      }
// rate_limits (issue 15): a rate ("30/m") or a byte size ("10MB"), see config/rate_units.h.
#define ALKNET_RATE_FIELD(member)                                                      \
  [](AgentConfig& c, std::string_view v) { return ParseRate(v, c.member); }, nullptr,   \
      [](const AgentConfig& c) { return std::vector<std::string>{FormatRate(c.member)}; }
#define ALKNET_BYTES_FIELD(member)                                                         \
  [](AgentConfig& c, std::string_view v) { return ParseByteSize(v, c.member); }, nullptr,   \
      [](const AgentConfig& c) { return std::vector<std::string>{FormatByteSize(c.member)}; }
#define ALKNET_DURATION_FIELD(member, range)                                                   \
  [](AgentConfig& c, std::string_view v) { return ParseBoundedDuration(v, range, c.member); }, \
      nullptr, [](const AgentConfig& c) {                                                      \
        return std::vector<std::string>{config::FormatDuration(c.member)};                     \
      }

const std::array<FieldDef, 78>& Table() {
  static const std::array<FieldDef, 78> table = {{
      {{"state_dir", "--state-dir", FieldKind::kScalar,
        "directory for the generated host key and other state (default ./var)"},
       [](AgentConfig& c, std::string_view v) { return ParsePath(v, c.state_dir); },
       nullptr,
       [](const AgentConfig& c) { return std::vector<std::string>{c.state_dir}; }},
      {{"listen", "--listen", FieldKind::kList,
        "address to accept SSH on, tcp://host:port, tls://host:port or quic://host:port (UDP); repeatable "
        "(default tcp://127.0.0.1:2222)"},
       [](AgentConfig& c, std::string_view v) { return ParseListen(v, c.listen); },
       [](AgentConfig& c) { c.listen.clear(); },
       [](const AgentConfig& c) { return Strings(c.listen); }},
      {{"host_keys", "--host-key", FieldKind::kList,
        "host private key file; repeatable (default <state_dir>/ssh_host_ed25519_key)"},
       [](AgentConfig& c, std::string_view v) {
         std::string path;
         absl::Status status = ParsePath(v, path);
         if (status.ok()) c.host_keys.push_back(std::move(path));
         return status;
       },
       [](AgentConfig& c) { c.host_keys.clear(); },
       [](const AgentConfig& c) { return Strings(c.host_keys); }},
      {{"authorized_keys", "--authorized-keys", FieldKind::kList,
        "authorized_keys file of the clients allowed in; repeatable "
        "(default <state_dir>/authorized_keys)"},
       [](AgentConfig& c, std::string_view v) {
         std::string path;
         absl::Status status = ParsePath(v, path);
         if (status.ok()) c.authorized_keys.push_back(std::move(path));
         return status;
       },
       [](AgentConfig& c) { c.authorized_keys.clear(); },
       [](const AgentConfig& c) { return Strings(c.authorized_keys); }},
      {{"trusted_user_ca_keys", "--trusted-user-ca-keys", FieldKind::kList,
        "file of CA public keys trusted to sign user certificates; repeatable (default none)"},
       ALKNET_PATH_LIST_FIELD(trusted_user_ca_keys)},
      {{"revoked_keys", "--revoked-keys", FieldKind::kList,
        "OpenSSH KRL (ssh-keygen -k) or file of revoked public keys, reloaded on change; repeatable "
        "(default none)"},
       ALKNET_PATH_LIST_FIELD(revoked_keys)},
      {{"certificate_clock_skew", "--certificate-clock-skew", FieldKind::kScalar,
        "tolerance on certificate validity times, 0..1h (default 1m)"},
       ALKNET_DURATION_FIELD(certificate_clock_skew, kCertificateClockSkewRange)},
      {{"workers", "--workers", FieldKind::kScalar,
        "event-loop threads, 0..256; 0 means one per CPU core (default 0)"},
       ALKNET_INT_FIELD(workers, kWorkersRange)},
      {{"limits.login_grace_time", "--login-grace-time", FieldKind::kScalar,
        "drop connections not authenticated within this time, >0 and <=1h (default 30s)"},
       ALKNET_DURATION_FIELD(limits.login_grace_time, kLoginGraceTimeRange)},
      {{"limits.max_startups", "--max-startups", FieldKind::kScalar,
        "unauthenticated connections across all sources, 1..100000 (default 100)"},
       ALKNET_INT_FIELD(limits.max_startups, kMaxStartupsRange)},
      {{"limits.per_source_max_startups", "--per-source-max-startups", FieldKind::kScalar,
        "unauthenticated connections from one source IP, 1..100000 and <= max_startups "
        "(default 10)"},
       ALKNET_INT_FIELD(limits.per_source_max_startups, kPerSourceMaxStartupsRange)},
      {{"limits.max_sessions", "--max-sessions", FieldKind::kScalar,
        "authenticated sessions, 0..1000000; 0 means unlimited (default 10000)"},
       ALKNET_INT_FIELD(limits.max_sessions, kMaxSessionsRange)},
      {{"limits.max_channels_per_session", "--max-channels-per-session", FieldKind::kScalar,
        "open channels per session, 1..100000 (default 1024)"},
       ALKNET_INT_FIELD(limits.max_channels_per_session, kMaxChannelsPerSessionRange)},
      {{"limits.connect_timeout", "--connect-timeout", FieldKind::kScalar,
        "timeout of outbound connects for direct-tcpip, >0 and <=5m (default 10s)"},
       ALKNET_DURATION_FIELD(limits.connect_timeout, kConnectTimeoutRange)},
      {{"limits.shutdown_grace", "--shutdown-grace", FieldKind::kScalar,
        "on SIGTERM, let open channels drain this long, 0..1h (default 10s)"},
       ALKNET_DURATION_FIELD(limits.shutdown_grace, kShutdownGraceRange)},
      // Issue 20: binary upgrade.
      {{"limits.upgrade_drain", "--upgrade-drain", FieldKind::kScalar,
        "after a binary upgrade, the old process keeps its sessions this long, 0..168h "
        "(default 6h)"},
       ALKNET_DURATION_FIELD(limits.upgrade_drain, kUpgradeDrainRange)},
      {{"log.level", "--log-level", FieldKind::kScalar,
        "log level: debug, info, warn or error (default info)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         absl::StatusOr<LogLevel> level = ParseLogLevel(v);
         if (!level.ok()) return level.status();
         c.log.level = *level;
         return absl::OkStatus();
       },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{std::string(LogLevelText(c.log.level))};
       }},
      {{"log.format", "--log-format", FieldKind::kScalar,
        "log line format: text or json (default text)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         absl::StatusOr<LogFormat> format = ParseLogFormat(v);
         if (!format.ok()) return format.status();
         c.log.format = *format;
         return absl::OkStatus();
       },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{std::string(LogFormatText(c.log.format))};
       }},
      {{"tls.cert", "--tls-cert", FieldKind::kScalar,
        "PEM certificate (chain) for tls:// listeners (default <state_dir>/tls_cert.pem, "
        "self-signed and generated)"},
       ALKNET_OPTIONAL_PATH_FIELD(tls.cert)},
      {{"tls.key", "--tls-key", FieldKind::kScalar,
        "PEM private key for tls:// listeners (default <state_dir>/tls_key.pem, generated)"},
       ALKNET_OPTIONAL_PATH_FIELD(tls.key)},
      {{"tls.stealth", "--stealth", FieldKind::kScalar,
        "answer non-SSH clients on tls:// like a web server (404): true, false or auto "
        "(default auto: on; an explicit true needs a tls:// listener)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         if (v == "auto") {
           c.tls.stealth.reset();
           return absl::OkStatus();
         }
         bool on = true;
         absl::Status status = ParseBool(v, on);
         if (status.ok()) c.tls.stealth = on;
         return status;
       },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{!c.tls.stealth ? "auto" : *c.tls.stealth ? "true" : "false"};
       }},
      {{"tls.stealth_timeout", "--stealth-timeout", FieldKind::kScalar,
        "how long a TLS client may take to send an SSH banner, >0 and <=5m (default 10s)"},
       ALKNET_DURATION_FIELD(tls.stealth_timeout, kStealthTimeoutRange)},
      {{"tls.stealth_backend", "--stealth-backend", FieldKind::kScalar,
        "http://host:port to proxy non-SSH TLS traffic to instead of the 404 (default none)"},
       ALKNET_OPTIONAL_PATH_FIELD(tls.stealth_backend)},
      {{"tls.max_handshakes", "--tls-max-handshakes", FieldKind::kScalar,
        "TLS connections not yet known as SSH or web (handshake, banner wait) across all "
        "sources, 1..100000 (default 200)"},
       ALKNET_INT_FIELD(tls.max_handshakes, kTlsConnectionCapRange)},
      {{"tls.per_source_max_handshakes", "--tls-per-source-max-handshakes", FieldKind::kScalar,
        "such TLS connections from one source IP (IPv6: one /64), 1..100000 and <= "
        "max_handshakes (default 10)"},
       ALKNET_INT_FIELD(tls.per_source_max_handshakes, kTlsConnectionCapRange)},
      {{"tls.web_max_connections", "--web-max-connections", FieldKind::kScalar,
        "web-looking TLS connections (404 imitation or stealth backend) across all sources, "
        "1..100000 (default 256)"},
       ALKNET_INT_FIELD(tls.web_max_connections, kTlsConnectionCapRange)},
      {{"tls.web_per_source_max_connections", "--web-per-source-max-connections",
        FieldKind::kScalar,
        "web-looking TLS connections from one source IP (IPv6: one /64), 1..100000 and <= "
        "web_max_connections (default 10)"},
       ALKNET_INT_FIELD(tls.web_per_source_max_connections, kTlsConnectionCapRange)},
      {{"tls.web_lifetime", "--web-lifetime", FieldKind::kScalar,
        "a web-looking TLS connection is closed this long after it started, busy or not, "
        ">0 and <=24h (default 5m)"},
       ALKNET_DURATION_FIELD(tls.web_lifetime, kWebLifetimeRange)},
      {{"tls.web_idle_timeout", "--web-idle-timeout", FieldKind::kScalar,
        "a web-looking TLS connection with no byte either way for this long is closed, "
        ">0 and <=1h (default 1m)"},
       ALKNET_DURATION_FIELD(tls.web_idle_timeout, kWebIdleTimeoutRange)},
      {{"tls.profile", "--tls-profile", FieldKind::kScalar,
        "what the TLS handshake presents: nginx (a stock Debian nginx 1.22.1: its versions, "
        "ciphers, order, extensions, tickets), modern (TLS 1.2+, ECDHE-AEAD only) or auto "
        "(default auto: nginx with stealth on, modern with stealth off)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         if (v == "auto") {
           c.tls.profile.reset();
         } else if (v == "nginx") {
           c.tls.profile = TlsProfile::kNginx;
         } else if (v == "modern") {
           c.tls.profile = TlsProfile::kModern;
         } else {
           return Bad(absl::StrCat("'", Shown(v), "' is not nginx, modern or auto"));
         }
         return absl::OkStatus();
       },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{!c.tls.profile                        ? "auto"
                                         : *c.tls.profile == TlsProfile::kNginx ? "nginx"
                                                                                : "modern"};
       }},
      {{"quic.retry", "--quic-retry", FieldKind::kScalar,
        "quic:// address validation by Retry before any connection state: auto (once a "
        "worker has quic.retry_threshold handshakes in progress), always or never (default auto)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         if (v == "auto") {
           c.quic.retry = QuicRetry::kAuto;
         } else if (v == "always") {
           c.quic.retry = QuicRetry::kAlways;
         } else if (v == "never") {
           c.quic.retry = QuicRetry::kNever;
         } else {
           return Bad(absl::StrCat("'", Shown(v), "' is not auto, always or never"));
         }
         return absl::OkStatus();
       },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{c.quic.retry == QuicRetry::kAuto     ? "auto"
                                         : c.quic.retry == QuicRetry::kAlways ? "always"
                                                                              : "never"};
       }},
      {{"quic.retry_threshold", "--quic-retry-threshold", FieldKind::kScalar,
        "with quic.retry auto: QUIC handshakes in progress on one worker from which new "
        "clients get a Retry first, 0..100000 (default 16)"},
       ALKNET_INT_FIELD(quic.retry_threshold, kQuicRetryThresholdRange)},
      {{"quic.stream_window", "--quic-stream-window", FieldKind::kScalar,
        "a QUIC connection's stream window and unacknowledged send buffer, 64KiB..256MiB "
        "(default 16MiB)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         int64_t bytes = 0;
         if (absl::Status status = ParseByteSize(v, bytes); !status.ok()) return status;
         if (bytes < 64 * 1024 || bytes > 256 * 1024 * 1024) {
           return Bad(absl::StrCat("'", Shown(v), "' is not between 64KiB and 256MiB"));
         }
         c.quic.stream_window = bytes;
         return absl::OkStatus();
       },
       nullptr,
       [](const AgentConfig& c) { return std::vector<std::string>{FormatByteSize(c.quic.stream_window)}; }},
      {{"quic.max_udp_payload", "--quic-max-udp-payload", FieldKind::kScalar,
        "0 (datagrams of 1200 bytes, path MTU discovery up to 1452) or 1200..65507: the "
        "largest UDP payload quic:// sends, for paths known to carry it (loopback, jumbo "
        "frames; default 0)"},
       [](AgentConfig& c, std::string_view v) { return ParseQuicMaxUdpPayload(v, c.quic.max_udp_payload); },
       nullptr,
       [](const AgentConfig& c) { return std::vector<std::string>{absl::StrCat(c.quic.max_udp_payload)}; }},
      {{"quic.congestion_control", "--quic-congestion-control", FieldKind::kScalar,
        "quic:// congestion control: bbr (paced to the measured bottleneck; random loss is not "
        "congestion) or cubic (default bbr)"},
       [](AgentConfig& c, std::string_view v) { return ParseQuicCongestion(v, c.quic.congestion_control); },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{std::string(QuicCongestionName(c.quic.congestion_control))};
       }},
      {{"quic.idle_timeout", "--quic-idle-timeout", FieldKind::kScalar,
        "a QUIC connection silent this long is closed, >0 and <=1h (default 1m)"},
       ALKNET_DURATION_FIELD(quic.idle_timeout, kQuicIdleTimeoutRange)},
      {{"metrics.listen", "--metrics-listen", FieldKind::kScalar,
        "host:port of /metrics, /healthz and /readyz, or off (default 127.0.0.1:9464)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         c.metrics.listen_explicit = true;
         if (v == "off") {
           c.metrics.listen.reset();
           return absl::OkStatus();
         }
         absl::StatusOr<HostPort> address = ParseHostPort(v);
         if (!address.ok()) return address.status();
         c.metrics.listen = *std::move(address);
         return absl::OkStatus();
       },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{c.metrics.listen ? c.metrics.listen->ToString() : "off"};
       }},
      {{"metrics.key_labels", "--metrics-key-label", FieldKind::kList,
        "LABEL=SHA256:fingerprint: give this key its own metric series; repeatable, at most 200 "
        "(default none)"},
       [](AgentConfig& c, std::string_view v) { return ParseKeyLabel(v, c.metrics.key_labels); },
       [](AgentConfig& c) { c.metrics.key_labels.clear(); },
       [](const AgentConfig& c) {
         std::vector<std::string> out;
         for (const auto& key : c.metrics.key_labels) out.push_back(key.label + "=" + key.fingerprint);
         return out;
       }},
      {{"admin.socket", "--admin-socket", FieldKind::kScalar,
        "Unix socket of the admin API, created mode 0600 (default <state_dir>/admin.sock)"},
       ALKNET_OPTIONAL_PATH_FIELD(admin.socket)},
      {{"admin.listen", "--admin-listen", FieldKind::kScalar,
        "host:port of a TCP admin API listener (mutual TLS only), or off (default off)"},
       ALKNET_OFF_OR_ADDRESS_FIELD(admin.listen)},
      {{"admin.tls_cert", "--admin-tls-cert", FieldKind::kScalar,
        "PEM certificate (chain) of the TCP admin listener (default none)"},
       ALKNET_OPTIONAL_PATH_FIELD(admin.tls_cert)},
      {{"admin.tls_key", "--admin-tls-key", FieldKind::kScalar,
        "PEM private key of admin.tls_cert (default none)"},
       ALKNET_OPTIONAL_PATH_FIELD(admin.tls_key)},
      {{"admin.client_ca", "--admin-client-ca", FieldKind::kScalar,
        "PEM CA certificates that admin clients' certificates must chain to; required with "
        "admin.listen (default none)"},
       ALKNET_OPTIONAL_PATH_FIELD(admin.client_ca)},
      {{"state.store", "--state", FieldKind::kScalar,
        "where the admin API's keys, policy and forwards are kept: file (in state_dir) or "
        "etcd://host:port[,host:port...][/prefix], etcds:// for TLS (default file)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         absl::StatusOr<StateStoreUrl> url = ParseStateStoreUrl(v);
         if (!url.ok()) return url.status();
         c.state.store = *std::move(url);
         return absl::OkStatus();
       },
       nullptr,
       [](const AgentConfig& c) { return std::vector<std::string>{c.state.store.ToString()}; }},
      {{"state.etcd_ca", "--state-etcd-ca", FieldKind::kScalar,
        "PEM CA certificates the etcd members' certificates must chain to (default: the "
        "system's)"},
       ALKNET_OPTIONAL_PATH_FIELD(state.etcd_ca)},
      {{"state.etcd_cert", "--state-etcd-cert", FieldKind::kScalar,
        "PEM client certificate for etcd, with state.etcd_key (default none)"},
       ALKNET_OPTIONAL_PATH_FIELD(state.etcd_cert)},
      {{"state.etcd_key", "--state-etcd-key", FieldKind::kScalar,
        "PEM private key of state.etcd_cert (default none)"},
       ALKNET_OPTIONAL_PATH_FIELD(state.etcd_key)},
      {{"state.replica_id", "--state-replica-id", FieldKind::kScalar,
        "this replica's name in an etcd fleet: letters, digits, '.', '_', '-' (default: the "
        "host name)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         for (char ch : v) {
           bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
           if (!ok) return Bad("may only hold letters, digits, '.', '_' and '-'");
         }
         if (v.size() > 128) return Bad("longer than 128 characters");
         c.state.replica_id = std::string(v);
         return absl::OkStatus();
       },
       nullptr, [](const AgentConfig& c) { return std::vector<std::string>{c.state.replica_id}; }},
      {{"ssh.kex", "--ssh-kex", FieldKind::kScalar,
        "key exchange algorithms, comma-separated; +a appends, -a removes, ^a puts first "
        "(default curve25519-sha256,curve25519-sha256@libssh.org)"},
       ALKNET_ALGORITHMS_FIELD(ssh.kex, AlgorithmKind::kKex)},
      {{"ssh.ciphers", "--ssh-ciphers", FieldKind::kScalar,
        "ciphers, comma-separated; +a appends, -a removes, ^a puts first (default "
        "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,"
        "aes256-ctr,aes192-ctr,aes128-ctr)"},
       ALKNET_ALGORITHMS_FIELD(ssh.ciphers, AlgorithmKind::kCiphers)},
      {{"ssh.macs", "--ssh-macs", FieldKind::kScalar,
        "MACs, comma-separated; +a appends, -a removes, ^a puts first (default "
        "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com)"},
       ALKNET_ALGORITHMS_FIELD(ssh.macs, AlgorithmKind::kMacs)},
      {{"ssh.host_key_algorithms", "--ssh-host-key-algorithms", FieldKind::kScalar,
        "host key algorithms, comma-separated; +a appends, -a removes, ^a puts first (default "
        "ssh-ed25519,rsa-sha2-512,rsa-sha2-256, plus the ECDSA one of a configured ECDSA host key)"},
       ALKNET_ALGORITHMS_FIELD(ssh.host_key_algorithms, AlgorithmKind::kHostKeys)},
      // ---- rate_limits (issue 15): 0 turns a rule off; a burst of 0 is one second of the rate.
      {{"rate_limits.connections_per_source", "--connections-per-source", FieldKind::kScalar,
        "new connections per source IP (IPv6: one /64), N/s, N/m or N/h; refused at accept, "
        "before any banner (default 0: off)"},
       ALKNET_RATE_FIELD(rate_limits.connections_per_source)},
      {{"rate_limits.connections_per_source_burst", "--connections-per-source-burst",
        FieldKind::kScalar, "connections a source may open at once, 0..1000000 (default 0: one "
        "second of the rate)"},
       ALKNET_INT_FIELD(rate_limits.connections_per_source_burst, kRateBurstRange)},
      {{"rate_limits.channels_per_session", "--channels-per-session", FieldKind::kScalar,
        "new channels per session, N/s, N/m or N/h (default 0: off)"},
       ALKNET_RATE_FIELD(rate_limits.channels_per_session)},
      {{"rate_limits.channels_per_session_burst", "--channels-per-session-burst",
        FieldKind::kScalar, "channels a session may open at once, 0..1000000 (default 0: one "
        "second of the rate)"},
       ALKNET_INT_FIELD(rate_limits.channels_per_session_burst, kRateBurstRange)},
      {{"rate_limits.sessions_per_key", "--sessions-per-key", FieldKind::kScalar,
        "new sessions per key, N/s, N/m or N/h, checked at authentication (default 0: off)"},
       ALKNET_RATE_FIELD(rate_limits.sessions_per_key)},
      {{"rate_limits.sessions_per_key_burst", "--sessions-per-key-burst", FieldKind::kScalar,
        "sessions a key may start at once, 0..1000000 (default 0: one second of the rate)"},
       ALKNET_INT_FIELD(rate_limits.sessions_per_key_burst, kRateBurstRange)},
      {{"rate_limits.max_sessions_per_key", "--max-sessions-per-key", FieldKind::kScalar,
        "concurrent sessions per key, 0..1000000 (default 0: unlimited)"},
       ALKNET_INT_FIELD(rate_limits.max_sessions_per_key, kPerKeyCapRange)},
      {{"rate_limits.max_remote_forwards_per_key", "--max-remote-forwards-per-key",
        FieldKind::kScalar, "-R listeners per key across its sessions, 0..1000000 (default 0: "
        "unlimited; each session still has at most 64)"},
       ALKNET_INT_FIELD(rate_limits.max_remote_forwards_per_key, kPerKeyCapRange)},
      {{"rate_limits.bandwidth_per_key", "--bandwidth-per-key", FieldKind::kScalar,
        "bytes per second per direction for all sessions of a key together, e.g. 10MB or "
        "512KiB, by backpressure (default 0: unlimited)"},
       ALKNET_BYTES_FIELD(rate_limits.bandwidth_per_key)},
      {{"rate_limits.bandwidth_per_key_burst", "--bandwidth-per-key-burst", FieldKind::kScalar,
        "bytes a key may send at once above its bandwidth, e.g. 16MB (default 0: one second of "
        "the rate)"},
       ALKNET_BYTES_FIELD(rate_limits.bandwidth_per_key_burst)},
      {{"rate_limits.bandwidth_exempt_keys", "--bandwidth-exempt-keys", FieldKind::kScalar,
        "comma-separated SHA256:... fingerprints of keys the bandwidth rule does not apply to, "
        "at most 200 (default none)"},
       [](AgentConfig& c, std::string_view v) {
         return ParseFingerprintList(v, c.rate_limits.bandwidth_exempt_keys);
       },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{FormatFingerprintList(c.rate_limits.bandwidth_exempt_keys)};
       }},
      // ---- penalties: per-source penalties (ADR 0013) ----
      {{"penalties.enabled", "--penalties", FieldKind::kScalar,
        "per-source penalties (OpenSSH 9.8 PerSourcePenalties): true or false (default true)"},
       [](AgentConfig& c, std::string_view v) { return ParseBool(v, c.penalties.enabled); },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{c.penalties.enabled ? "true" : "false"};
       }},
      {{"penalties.authfail", "--penalty-authfail", FieldKind::kScalar,
        "penalty for a connection that ends after failed authentication, 0..24h (default 5s)"},
       ALKNET_DURATION_FIELD(penalties.authfail, kPenaltyRange)},
      {{"penalties.noauth", "--penalty-noauth", FieldKind::kScalar,
        "penalty for a connection that ends without authenticating, 0..24h (default 1s)"},
       ALKNET_DURATION_FIELD(penalties.noauth, kPenaltyRange)},
      {{"penalties.grace_exceeded", "--penalty-grace-exceeded", FieldKind::kScalar,
        "penalty for exceeding limits.login_grace_time, 0..24h (default 20s)"},
       ALKNET_DURATION_FIELD(penalties.grace_exceeded, kPenaltyRange)},
      {{"penalties.probe", "--penalty-probe", FieldKind::kScalar,
        "penalty for non-SSH traffic on a tls:// listener (answered by the stealth), 0..24h "
        "(default 5s)"},
       ALKNET_DURATION_FIELD(penalties.probe, kPenaltyRange)},
      {{"penalties.min", "--penalty-min", FieldKind::kScalar,
        "a source is refused once its penalty reaches this, 0..24h and <= penalties.max "
        "(default 15s)"},
       ALKNET_DURATION_FIELD(penalties.min, kPenaltyRange)},
      {{"penalties.max", "--penalty-max", FieldKind::kScalar,
        "a source's penalty never exceeds this, 0..24h (default 10m)"},
       ALKNET_DURATION_FIELD(penalties.max, kPenaltyRange)},
      {{"penalties.max_sources", "--penalty-max-sources", FieldKind::kScalar,
        "netblocks the penalty table holds, 1..10000000 (default 65536)"},
       ALKNET_INT_FIELD(penalties.max_sources, kPenaltyMaxSourcesRange)},
      {{"penalties.overflow", "--penalty-overflow", FieldKind::kScalar,
        "a full table: permissive (new sources go unpenalised) or deny-all (refuse every "
        "source not exempt until an entry expires) (default permissive)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         if (v != "permissive" && v != "deny-all") {
           return Bad(absl::StrCat("'", Shown(v), "' must be permissive or deny-all"));
         }
         c.penalties.overflow = std::string(v);
         return absl::OkStatus();
       },
       nullptr,
       [](const AgentConfig& c) { return std::vector<std::string>{c.penalties.overflow}; }},
      {{"penalties.ipv4_netblock", "--penalty-ipv4-netblock", FieldKind::kScalar,
        "IPv4 prefix length that counts as one source, 8..32 (default 32)"},
       ALKNET_INT_FIELD(penalties.ipv4_netblock, kIpv4NetblockRange)},
      {{"penalties.ipv6_netblock", "--penalty-ipv6-netblock", FieldKind::kScalar,
        "IPv6 prefix length that counts as one source, 16..128 (default 64)"},
       ALKNET_INT_FIELD(penalties.ipv6_netblock, kIpv6NetblockRange)},
      {{"penalties.exempt", "--penalty-exempt", FieldKind::kList,
        "address or CIDR never penalised; repeatable (default none)"},
       [](AgentConfig& c, std::string_view v) -> absl::Status {
         absl::StatusOr<Netblock> block = ParseCidr(v);
         if (!block.ok()) return Bad(StdSv(block.status().message()));
         c.penalties.exempt.push_back(block->ToString());
         return absl::OkStatus();
       },
       [](AgentConfig& c) { c.penalties.exempt.clear(); },
       [](const AgentConfig& c) { return Strings(c.penalties.exempt); }},
      // Forwarding policy (ADR 0014); its `rules:` list goes through fwd::SetRuleField.
      {{"forwarding.default_action", "--forwarding-default-action", FieldKind::kScalar,
        "action when no forwarding rule matches, allow or deny (default allow)"},
       [](AgentConfig& c, std::string_view v) {
         absl::StatusOr<bool> allow = fwd::ParseAction(v);
         if (!allow.ok()) return allow.status();
         c.forwarding.default_allow = *allow;
         return absl::OkStatus();
       },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{c.forwarding.default_allow ? "allow" : "deny"};
       }},
      {{"forwarding.default_rules", "--forwarding-default-rules", FieldKind::kScalar,
        "built-in denies after the rules: link-local, loopback, the agent's admin and metrics "
        "listeners (default true)"},
       [](AgentConfig& c, std::string_view v) { return ParseBool(v, c.forwarding.default_rules); },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{c.forwarding.default_rules ? "true" : "false"};
       }},
      {{"forwarding.allow_loopback", "--forwarding-allow-loopback", FieldKind::kScalar,
        "drop the built-in loopback deny (127.0.0.0/8, ::1, 0.0.0.0, ::) (default false)"},
       [](AgentConfig& c, std::string_view v) { return ParseBool(v, c.forwarding.allow_loopback); },
       nullptr,
       [](const AgentConfig& c) {
         return std::vector<std::string>{c.forwarding.allow_loopback ? "true" : "false"};
       }},
  }};
  return table;
}

#undef ALKNET_PATH_LIST_FIELD
#undef ALKNET_OPTIONAL_PATH_FIELD
#undef ALKNET_OFF_OR_ADDRESS_FIELD
#undef ALKNET_INT_FIELD
#undef ALKNET_DURATION_FIELD
#undef ALKNET_ALGORITHMS_FIELD
#undef ALKNET_RATE_FIELD
#undef ALKNET_BYTES_FIELD

const FieldDef* FindDef(const FieldSpec& field) {
  for (const FieldDef& def : Table()) {
    if (def.spec.yaml_path == field.yaml_path) return &def;
  }
  return nullptr;
}

}  // namespace

const std::vector<FieldSpec>& Fields() {
  static const std::vector<FieldSpec> fields = [] {
    std::vector<FieldSpec> out;
    for (const FieldDef& def : Table()) out.push_back(def.spec);
    return out;
  }();
  return fields;
}

const FieldSpec* FindFieldByYamlPath(std::string_view path) {
  for (const FieldSpec& field : Fields()) {
    if (field.yaml_path == path) return &field;
  }
  return nullptr;
}

const FieldSpec* FindFieldByFlag(std::string_view flag) {
  for (const FieldSpec& field : Fields()) {
    if (field.flag == flag) return &field;
  }
  return nullptr;
}

absl::Status SetField(AgentConfig& config, const FieldSpec& field, std::string_view value) {
  const FieldDef* def = FindDef(field);
  if (def == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown field '", Sv(field.yaml_path), "'"));
  }
  absl::Status status = def->set(config, value);
  if (status.ok()) return status;
  return absl::InvalidArgumentError(absl::StrCat(Sv(field.yaml_path), ": ", status.message()));
}

std::vector<std::string> FieldValues(const AgentConfig& config, const FieldSpec& field) {
  const FieldDef* def = FindDef(field);
  return def == nullptr ? std::vector<std::string>{} : def->print(config);
}

void ClearListField(AgentConfig& config, const FieldSpec& field) {
  const FieldDef* def = FindDef(field);
  if (def != nullptr && def->clear != nullptr) def->clear(config);
}

namespace {

// `forwarding.rules:`, each rule a mapping in fwd::RuleKeys() order (unset keys left out).
void EmitForwardingRules(YAML::Emitter& out, const AgentConfig& config) {
  out << YAML::Key << "rules" << YAML::Value;
  if (config.forwarding.rules.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const fwd::ForwardRule& rule : config.forwarding.rules) {
    out << YAML::BeginMap;
    for (std::string_view key : fwd::RuleKeys()) {
      std::vector<std::string> values = fwd::RuleFieldText(rule, key);
      if (values.empty()) continue;
      out << YAML::Key << std::string(key) << YAML::Value;
      if (fwd::IsRuleListKey(key)) {
        out << YAML::Flow << YAML::BeginSeq;
        for (const std::string& value : values) out << value;
        out << YAML::EndSeq;
      } else {
        out << values.front();
      }
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
}

}  // namespace

std::string ToYaml(const AgentConfig& config) {
  YAML::Emitter out;
  out << YAML::Comment("alknet-agent configuration; see docs/configuration.md") << YAML::Newline;
  out << YAML::BeginMap;
  std::string_view section;  // the open nested mapping ("limits"), empty at the root
  for (const FieldDef& def : Table()) {
    std::string_view path = def.spec.yaml_path;
    size_t dot = path.find('.');
    std::string_view def_section = dot == std::string_view::npos ? "" : path.substr(0, dot);
    std::string_view key = dot == std::string_view::npos ? path : path.substr(dot + 1);
    if (def_section != section) {
      if (section == "forwarding") EmitForwardingRules(out, config);
      if (!section.empty()) out << YAML::EndMap;
      if (!def_section.empty()) {
        out << YAML::Key << std::string(def_section) << YAML::Value << YAML::BeginMap;
      }
      section = def_section;
    }
    out << YAML::Key << std::string(key) << YAML::Value;
    std::vector<std::string> values = def.print(config);
    if (def.spec.kind == FieldKind::kList) {
      if (values.empty()) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const std::string& value : values) out << value;
      out << YAML::EndSeq;
    } else {
      out << values.front();
    }
  }
  if (section == "forwarding") EmitForwardingRules(out, config);
  if (!section.empty()) out << YAML::EndMap;
  // The client role's list of upstreams, each a mapping in the upstream field table's order.
  out << YAML::Key << "upstreams" << YAML::Value;
  if (config.upstreams.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const UpstreamConfig& upstream : config.upstreams) {
    out << YAML::BeginMap;
    for (const UpstreamFieldSpec& field : UpstreamFields()) {
      std::vector<std::string> values = PrintUpstreamField(upstream, field);
      out << YAML::Key << std::string(field.key) << YAML::Value;
      if (field.kind == FieldKind::kList) {
        if (values.empty()) out << YAML::Flow;
        out << YAML::BeginSeq;
        for (const std::string& value : values) out << value;
        out << YAML::EndSeq;
      } else {
        out << values.front();
      }
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;
  return absl::StrCat(out.c_str(), "\n");
}

}  // namespace alknet::config
