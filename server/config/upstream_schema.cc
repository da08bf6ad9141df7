// The field table of one upstream (client role) and its validation.
#include "server/config/upstream_schema.h"

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/reserved_names.h"
#include "server/common/strings.h"
#include "server/config/duration.h"

namespace alknet::config {

std::string ForwardSpec::ToString() const {
  auto bracket = [](const std::string& host) {
    return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]") : host;
  };
  // The bind is always written, an empty one (every address) as ":port:...": without it the
  // text would parse back with the default bind (found by forward_spec_fuzzer).
  std::string out = absl::StrCat(bracket(bind_host), ":");
  absl::StrAppend(&out, bind_port, ":", bracket(host), ":", host_port);
  return out;
}

namespace {

absl::Status Bad(std::string_view message) { return absl::InvalidArgumentError(Sv(message)); }

std::string Shown(std::string_view value) {
  constexpr size_t kMaxShown = 100;
  if (value.size() > kMaxShown) {
    return absl::StrCat(absl::CHexEscape(Sv(value.substr(0, kMaxShown))), "...");
  }
  return absl::CHexEscape(Sv(value));
}

bool HasControl(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

absl::Status ParseText(std::string_view text, std::string& out, bool allow_empty = true) {
  if (!allow_empty && text.empty()) return Bad("must not be empty");
  if (HasControl(text)) return Bad(absl::StrCat("'", Shown(text), "' contains a control character"));
  if (text.size() > 4096) return Bad("is too long");
  out = std::string(text);
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

absl::Status ParseBoundedDuration(std::string_view text, absl::Duration max, absl::Duration& out) {
  absl::StatusOr<absl::Duration> value = ParseDuration(text);
  if (!value.ok()) return value.status();
  if (*value <= absl::ZeroDuration() || *value > max) {
    return Bad(absl::StrCat("'", Shown(text), "' is out of range (must be > 0s and <= ",
                            config::FormatDuration(max), ")"));
  }
  out = *value;
  return absl::OkStatus();
}

absl::Status ParseIntRange(std::string_view text, int min, int max, int& out) {
  int64_t value = 0;
  if (text.empty() || text.size() > 9) return Bad(absl::StrCat("'", Shown(text), "' is not an integer"));
  for (char c : text) {
    if (c < '0' || c > '9') return Bad(absl::StrCat("'", Shown(text), "' is not an integer"));
    value = value * 10 + (c - '0');
  }
  if (value < min || value > max) {
    return Bad(absl::StrCat("'", Shown(text), "' is out of range (", min, "..", max, ")"));
  }
  out = static_cast<int>(value);
  return absl::OkStatus();
}

// Host names and literals as they may appear in addresses: no spaces or controls.
absl::Status CheckHost(std::string_view text, std::string_view host) {
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':' || c == '%' || c == '*';
    if (!ok) {
      return Bad(absl::StrCat("'", Shown(text), "': the host '", Shown(host),
                              "' may only contain letters, digits and . - _ : % *"));
    }
  }
  if (host.size() > 255) return Bad(absl::StrCat("'", Shown(text), "': the host is too long"));
  return absl::OkStatus();
}

absl::Status ParseServer(std::string_view text, EndpointUrl& out) {
  absl::StatusOr<EndpointUrl> url = ParseEndpointUrl(text);
  if (!url.ok()) return url.status();
  if (url->scheme != "tcp" && url->scheme != "tls" && url->scheme != "quic") {
    return Bad(absl::StrCat("'", Shown(text), "': upstreams are reached over tcp://, tls:// or quic:// only"));
  }
  if (url->address.port == 0) return Bad(absl::StrCat("'", Shown(text), "' needs a port"));
  if (absl::Status status = CheckHost(text, url->address.host); !status.ok()) return status;
  out = *std::move(url);
  return absl::OkStatus();
}

absl::Status ParseProxy(std::string_view text, std::optional<EndpointUrl>& out) {
  if (text.empty()) {
    out.reset();
    return absl::OkStatus();
  }
  size_t sep = text.find("://");
  std::string_view scheme = sep == std::string_view::npos ? "" : text.substr(0, sep);
  if (scheme != "socks5" && scheme != "http") {
    return Bad(absl::StrCat("'", Shown(text), "' is not socks5://host:port or http://host:port"));
  }
  std::string_view rest = text.substr(sep + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  absl::StatusOr<HostPort> address = ParseHostPort(rest, /*allow_zero=*/false);
  if (!address.ok()) return address.status();
  if (absl::Status status = CheckHost(text, address->host); !status.ok()) return status;
  out = EndpointUrl{std::string(scheme), *std::move(address)};
  return absl::OkStatus();
}

absl::Status ParseListenAddress(std::string_view text, std::optional<HostPort>& out) {
  if (text.empty() || text == "off") {
    out.reset();
    return absl::OkStatus();
  }
  absl::StatusOr<HostPort> address = ParseHostPort(text);
  if (!address.ok()) return address.status();
  if (absl::Status status = CheckHost(text, address->host); !status.ok()) return status;
  out = *std::move(address);
  return absl::OkStatus();
}

absl::Status ParseFingerprint(std::string_view text, std::string& out) {
  if (text.empty()) {
    out.clear();
    return absl::OkStatus();
  }
  if (text.substr(0, 7) != "SHA256:" || text.size() != 50) {
    return Bad(absl::StrCat("'", Shown(text), "' is not a SHA256:... key fingerprint"));
  }
  for (char c : text.substr(7)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/';
    if (!ok) return Bad(absl::StrCat("'", Shown(text), "' is not a SHA256:... key fingerprint"));
  }
  out = std::string(text);
  return absl::OkStatus();
}

// A TLS certificate pin: "SHA256:" + 64 hex digits, with or without ':' between the pairs, or
// the "AB:CD:..." form the server logs (sha256=...) and `openssl x509 -fingerprint -sha256`
// prints. Stored as that last form, upper case, which is what the client compares.
absl::Status ParseTlsFingerprint(std::string_view text, std::string& out) {
  if (text.empty()) {
    out.clear();
    return absl::OkStatus();
  }
  auto bad = [&] {
    return Bad(absl::StrCat("'", Shown(text),
                            "' is not a SHA256:<64 hex digits> or AB:CD:... certificate fingerprint"));
  };
  std::string_view hex = text;
  if (hex.size() >= 7 && absl::AsciiStrToUpper(Sv(hex.substr(0, 7))) == "SHA256:") hex.remove_prefix(7);
  std::string digits;
  bool colons = hex.size() == 32 * 3 - 1;
  if (!colons && hex.size() != 64) return bad();
  for (size_t i = 0; i < hex.size(); ++i) {
    char c = hex[i];
    if (colons && i % 3 == 2) {
      if (c != ':') return bad();
      continue;
    }
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return bad();
    digits.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
  }
  out.clear();
  for (size_t i = 0; i < digits.size(); i += 2) {
    if (i > 0) out.push_back(':');
    out.append(digits, i, 2);
  }
  return absl::OkStatus();
}

absl::Status ParseServerName(std::string_view text, std::string& out) {
  if (!text.empty()) {
    if (absl::Status status = CheckHost(text, text); !status.ok()) return status;
  }
  out = std::string(text);
  return absl::OkStatus();
}

using Setter = absl::Status (*)(UpstreamConfig&, std::string_view);
using Clearer = void (*)(UpstreamConfig&);
using Printer = std::vector<std::string> (*)(const UpstreamConfig&);

struct UpstreamFieldDef {
  UpstreamFieldSpec spec;
  Setter set;
  Clearer clear;
  Printer print;
};

std::vector<std::string> One(std::string value) { return {std::move(value)}; }

std::vector<std::string> Forwards(const std::vector<ForwardSpec>& forwards) {
  std::vector<std::string> out;
  for (const ForwardSpec& forward : forwards) out.push_back(forward.ToString());
  return out;
}

#define ALKNET_UPSTREAM_TEXT(member)                                                      \
  [](UpstreamConfig& u, std::string_view v) { return ParseText(v, u.member); }, nullptr, \
      [](const UpstreamConfig& u) { return One(u.member); }
#define ALKNET_UPSTREAM_DURATION(member, max)                                                   \
  [](UpstreamConfig& u, std::string_view v) { return ParseBoundedDuration(v, max, u.member); }, \
      nullptr, [](const UpstreamConfig& u) { return One(config::FormatDuration(u.member)); }

const std::array<UpstreamFieldDef, 24>& Table() {
  static const std::array<UpstreamFieldDef, 24> table = {{
      {{"name", "--name", FieldKind::kScalar, true,
        "label of this upstream in logs and metrics, [A-Za-z0-9_.:-]{1,64} "
        "(default the server's host:port)"},
       ALKNET_UPSTREAM_TEXT(name)},
      {{"server", "--server", FieldKind::kScalar, true,
        "SSH server to connect to, tcp://HOST:PORT or tls://HOST:PORT (SSH inside TLS, e.g. "
        "an agent's tls:// listener) (required; default none)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseServer(v, u.server); }, nullptr,
       [](const UpstreamConfig& u) {
         return One(u.server.address.host.empty() ? std::string() : u.server.ToString());
       }},
      {{"user", "--user", FieldKind::kScalar, true,
        "user name to log in as (default the local user's name)"},
       ALKNET_UPSTREAM_TEXT(user)},
      {{"identity", "--identity", FieldKind::kScalar, true,
        "private key file for public-key authentication (required; default none)"},
       ALKNET_UPSTREAM_TEXT(identity)},
      {{"socks5", "--socks5", FieldKind::kScalar, true,
        "local SOCKS5 listener host:port, or off; port 0 picks one (default off)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseListenAddress(v, u.socks5); },
       nullptr,
       [](const UpstreamConfig& u) { return One(u.socks5 ? u.socks5->ToString() : "off"); }},
      {{"socks5_username", "--socks5-username", FieldKind::kScalar, true,
        "require RFC 1929 username/password on the SOCKS5 listener (default none)"},
       ALKNET_UPSTREAM_TEXT(socks5_username)},
      {{"socks5_password", "--socks5-password", FieldKind::kScalar, true,
        "the SOCKS5 password that goes with socks5_username (default none)"},
       ALKNET_UPSTREAM_TEXT(socks5_password)},
      {{"local_forwards", "-L", FieldKind::kList, true,
        "[bind:]port:host:hostport: listen locally, connect to host:hostport from the server; "
        "repeatable (default none; bind defaults to 127.0.0.1)"},
       [](UpstreamConfig& u, std::string_view v) -> absl::Status {
         absl::StatusOr<ForwardSpec> spec = ParseForwardSpec(v, "127.0.0.1");
         if (!spec.ok()) return spec.status();
         if (absl::Status status = CheckLocalForwardTarget(*spec); !status.ok()) {
           return Bad(absl::StrCat("'", Shown(v), "': ", status.message()));
         }
         u.local_forwards.push_back(*std::move(spec));
         return absl::OkStatus();
       },
       [](UpstreamConfig& u) { u.local_forwards.clear(); },
       [](const UpstreamConfig& u) { return Forwards(u.local_forwards); }},
      {{"remote_forwards", "-R", FieldKind::kList, true,
        "[bind:]port:host:hostport: the server listens, connections come to host:hostport here; "
        "repeatable (default none; bind defaults to localhost)"},
       [](UpstreamConfig& u, std::string_view v) -> absl::Status {
         absl::StatusOr<ForwardSpec> spec = ParseForwardSpec(v, "localhost");
         if (!spec.ok()) return spec.status();
         u.remote_forwards.push_back(*std::move(spec));
         return absl::OkStatus();
       },
       [](UpstreamConfig& u) { u.remote_forwards.clear(); },
       [](const UpstreamConfig& u) { return Forwards(u.remote_forwards); }},
      {{"known_hosts", "--known-hosts", FieldKind::kScalar, true,
        "OpenSSH known_hosts file the server's host key must be in (default none)"},
       ALKNET_UPSTREAM_TEXT(known_hosts)},
      {{"host_key_fingerprint", "--host-key-fingerprint", FieldKind::kScalar, true,
        "pinned SHA256:... fingerprint of the server's host key (default none)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseFingerprint(v, u.host_key_fingerprint); },
       nullptr, [](const UpstreamConfig& u) { return One(u.host_key_fingerprint); }},
      {{"insecure_accept_any_host_key", "--insecure-accept-any-host-key", FieldKind::kScalar, false,
        "accept any host key without checking (testing only; default false)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseBool(v, u.insecure_accept_any_host_key); },
       nullptr,
       [](const UpstreamConfig& u) { return One(u.insecure_accept_any_host_key ? "true" : "false"); }},
      {{"proxy", "--proxy", FieldKind::kScalar, true,
        "reach the server through socks5://HOST:PORT (no auth) or http://HOST:PORT (CONNECT) "
        "(default none)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseProxy(v, u.proxy); }, nullptr,
       [](const UpstreamConfig& u) { return One(u.proxy ? u.proxy->ToString() : ""); }},
      {{"tls_server_name", "--tls-server-name", FieldKind::kScalar, true,
        "tls:// only: the name sent as SNI and checked in the server's certificate (default "
        "the server's host; an IP literal is checked as an IP address, without SNI)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseServerName(v, u.tls_server_name); },
       nullptr, [](const UpstreamConfig& u) { return One(u.tls_server_name); }},
      {{"tls_ca_file", "--tls-ca-file", FieldKind::kScalar, true,
        "tls:// only: PEM CA bundle the server's certificate must chain to (default the "
        "system's roots)"},
       ALKNET_UPSTREAM_TEXT(tls_ca_file)},
      {{"tls_fingerprint", "--tls-fingerprint", FieldKind::kScalar, true,
        "tls:// only: pinned SHA-256 of the server's certificate, SHA256:<hex> or AB:CD:... as "
        "the server logs it (sha256=); replaces the chain and name check (default none)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseTlsFingerprint(v, u.tls_fingerprint); },
       nullptr, [](const UpstreamConfig& u) { return One(u.tls_fingerprint); }},
      {{"tls_insecure", "--tls-insecure", FieldKind::kScalar, false,
        "tls:// only: accept any server certificate without checking (testing only; default "
        "false)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseBool(v, u.tls_insecure); }, nullptr,
       [](const UpstreamConfig& u) { return One(u.tls_insecure ? "true" : "false"); }},
      {{"quic_max_udp_payload", "--quic-max-udp-payload", FieldKind::kScalar, true,
        "quic:// only: 0 (datagrams of 1200 bytes, path MTU discovery up to 1452) or "
        "1200..65507: the largest UDP payload sent, for a path known to carry it (loopback, "
        "jumbo frames; default 0)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseQuicMaxUdpPayload(v, u.quic_max_udp_payload); },
       nullptr, [](const UpstreamConfig& u) { return One(absl::StrCat(u.quic_max_udp_payload)); }},
      {{"quic_congestion_control", "--quic-congestion-control", FieldKind::kScalar, true,
        "quic:// only: congestion control of what this client sends, bbr or cubic (default bbr)"},
       [](UpstreamConfig& u, std::string_view v) { return ParseQuicCongestion(v, u.quic_congestion_control); },
       nullptr,
       [](const UpstreamConfig& u) { return One(std::string(QuicCongestionName(u.quic_congestion_control))); }},
      {{"handshake_timeout", "--handshake-timeout", FieldKind::kScalar, true,
        "TCP connect, proxy, SSH handshake and authentication must finish within this, "
        ">0 and <=5m (default 15s)"},
       ALKNET_UPSTREAM_DURATION(handshake_timeout, absl::Minutes(5))},
      {{"keepalive_interval", "--keepalive-interval", FieldKind::kScalar, true,
        "send keepalive@openssh.com this often, >0 and <=1h (default 15s)"},
       ALKNET_UPSTREAM_DURATION(keepalive_interval, absl::Hours(1))},
      {{"keepalive_timeout", "--keepalive-timeout", FieldKind::kScalar, true,
        "reconnect when nothing arrived from the server for this long, > keepalive_interval "
        "and <=3h (default 45s)"},
       ALKNET_UPSTREAM_DURATION(keepalive_timeout, absl::Hours(3))},
      {{"request_timeout", "--request-timeout", FieldKind::kScalar, true,
        "a SOCKS5 handshake or a queued SOCKS5/-L connection waiting for the session and its "
        "channel, >0 and <=5m (default 10s)"},
       ALKNET_UPSTREAM_DURATION(request_timeout, absl::Minutes(5))},
      {{"max_pending_requests", "--max-pending-requests", FieldKind::kScalar, true,
        "SOCKS5/-L connections queued while (re)connecting, 1..10000 (default 128)"},
       [](UpstreamConfig& u, std::string_view v) {
         return ParseIntRange(v, 1, 10000, u.max_pending_requests);
       },
       nullptr, [](const UpstreamConfig& u) { return One(absl::StrCat(u.max_pending_requests)); }},
  }};
  return table;
}

#undef ALKNET_UPSTREAM_TEXT
#undef ALKNET_UPSTREAM_DURATION

const UpstreamFieldDef* FindDef(const UpstreamFieldSpec& field) {
  for (const UpstreamFieldDef& def : Table()) {
    if (def.spec.key == field.key) return &def;
  }
  return nullptr;
}

}  // namespace

absl::Status CheckLocalForwardTarget(const ForwardSpec& spec) {
  if (IsReservedDestination(spec.host)) {
    return Bad(absl::StrCat("the target host '", Shown(spec.host),
                            "' is reserved for the agent's own services (alknet-*) and is never "
                            "forwarded"));
  }
  if (spec.host_port == 0) return Bad("the target port must not be 0");
  return absl::OkStatus();
}

absl::StatusOr<ForwardSpec> ParseForwardSpec(std::string_view text, std::string_view default_bind) {
  // Split on ':' outside brackets.
  std::vector<std::string_view> parts;
  size_t start = 0;
  bool in_bracket = false;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || (text[i] == ':' && !in_bracket)) {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    } else if (text[i] == '[') {
      in_bracket = true;
    } else if (text[i] == ']') {
      in_bracket = false;
    }
  }
  if (parts.size() != 3 && parts.size() != 4) {
    return Bad(absl::StrCat("'", Shown(text),
                            "' is not [bind:]port:host:hostport (IPv6 addresses in brackets)"));
  }
  auto unbracket = [](std::string_view host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') return host.substr(1, host.size() - 2);
    return host;
  };
  auto port = [&](std::string_view p, bool allow_zero, uint16_t& out) -> absl::Status {
    int value = 0;
    if (!ParseIntRange(p, allow_zero ? 0 : 1, 65535, value).ok()) {
      return Bad(absl::StrCat("'", Shown(text), "' has an invalid port '", Shown(p), "'"));
    }
    out = static_cast<uint16_t>(value);
    return absl::OkStatus();
  };
  ForwardSpec spec;
  size_t i = 0;
  spec.bind_host = parts.size() == 4 ? std::string(unbracket(parts[i++])) : std::string(default_bind);
  if (parts.size() == 4 && spec.bind_host.empty()) spec.bind_host = "";
  if (absl::Status status = port(parts[i++], true, spec.bind_port); !status.ok()) return status;
  spec.host = std::string(unbracket(parts[i++]));
  if (absl::Status status = port(parts[i++], false, spec.host_port); !status.ok()) return status;
  if (spec.host.empty()) return Bad(absl::StrCat("'", Shown(text), "' has an empty host"));
  if (absl::Status status = CheckHost(text, spec.host); !status.ok()) return status;
  if (absl::Status status = CheckHost(text, spec.bind_host); !status.ok()) return status;
  return spec;
}

const std::vector<UpstreamFieldSpec>& UpstreamFields() {
  static const std::vector<UpstreamFieldSpec> fields = [] {
    std::vector<UpstreamFieldSpec> out;
    for (const UpstreamFieldDef& def : Table()) out.push_back(def.spec);
    return out;
  }();
  return fields;
}

const UpstreamFieldSpec* FindUpstreamFieldByKey(std::string_view key) {
  for (const UpstreamFieldSpec& field : UpstreamFields()) {
    if (field.key == key) return &field;
  }
  return nullptr;
}

const UpstreamFieldSpec* FindUpstreamFieldByFlag(std::string_view flag) {
  for (const UpstreamFieldSpec& field : UpstreamFields()) {
    if (field.flag == flag) return &field;
  }
  return nullptr;
}

absl::Status SetUpstreamField(UpstreamConfig& upstream, const UpstreamFieldSpec& field,
                              std::string_view value) {
  const UpstreamFieldDef* def = FindDef(field);
  if (def == nullptr) return Bad(absl::StrCat("unknown upstream field '", Sv(field.key), "'"));
  return def->set(upstream, value);
}

void ClearUpstreamListField(UpstreamConfig& upstream, const UpstreamFieldSpec& field) {
  const UpstreamFieldDef* def = FindDef(field);
  if (def != nullptr && def->clear != nullptr) def->clear(upstream);
}

std::vector<std::string> PrintUpstreamField(const UpstreamConfig& upstream,
                                            const UpstreamFieldSpec& field) {
  const UpstreamFieldDef* def = FindDef(field);
  return def != nullptr ? def->print(upstream) : std::vector<std::string>{};
}

void ResolveUpstreamDefaults(std::vector<UpstreamConfig>& upstreams) {
  for (UpstreamConfig& upstream : upstreams) {
    if (upstream.name.empty() && !upstream.server.address.host.empty()) {
      upstream.name = upstream.server.address.ToString();
    }
  }
}

absl::Status ValidateUpstreamTls(const UpstreamConfig& u) {
  auto error = [](std::string_view field, std::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(field), ": ", Sv(message)));
  };
  if (u.server.scheme != "tls" && u.server.scheme != "quic") {
    const std::pair<std::string_view, bool> tls_fields[] = {
        {"tls_server_name", !u.tls_server_name.empty()},
        {"tls_ca_file", !u.tls_ca_file.empty()},
        {"tls_fingerprint", !u.tls_fingerprint.empty()},
        {"tls_insecure", u.tls_insecure}};
    for (const auto& [field, set] : tls_fields) {
      if (set) return error(field, "applies to a tls:// or quic:// server only");
    }
  }
  if (u.server.scheme != "quic" && u.quic_max_udp_payload != 0) {
    return error("quic_max_udp_payload", "applies to a quic:// server only");
  }
  if (u.server.scheme != "quic" && u.quic_congestion_control != QuicCongestion::kBbr) {
    return error("quic_congestion_control", "applies to a quic:// server only");
  }
  if (u.server.scheme == "quic" && u.proxy) {
    return error("proxy", "a quic:// server is reached over UDP, never through a proxy");
  }
  if (u.tls_insecure && !u.tls_fingerprint.empty()) {
    return error("tls_insecure", "tls_insecure and tls_fingerprint are exclusive");
  }
  if (!u.tls_ca_file.empty() && (u.tls_insecure || !u.tls_fingerprint.empty())) {
    return error("tls_ca_file", absl::StrCat("is not used with ",
                                             u.tls_insecure ? "tls_insecure" : "tls_fingerprint",
                                             " (give one way to check the certificate)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateUpstreams(const std::vector<UpstreamConfig>& upstreams) {
  for (size_t i = 0; i < upstreams.size(); ++i) {
    const UpstreamConfig& u = upstreams[i];
    auto error = [&](std::string_view field, std::string_view message) {
      return absl::InvalidArgumentError(absl::StrCat("upstreams[", i, "].", Sv(field), ": ", Sv(message)));
    };
    if (u.server.address.host.empty()) {
      return error("server", "is required (tcp://HOST:PORT, tls://HOST:PORT or quic://HOST:PORT)");
    }
    if (u.identity.empty()) return error("identity", "is required (a private key file)");
    if (u.name.empty() || u.name.size() > 64) return error("name", "must be 1..64 characters");
    for (char c : u.name) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '.' || c == ':' || c == '-' || c == '[' || c == ']';
      if (!ok) return error("name", absl::StrCat("'", Shown(u.name), "' may only contain letters, digits and _ . : - [ ]"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (upstreams[j].name == u.name) {
        return error("name", absl::StrCat("'", u.name, "' is used by upstreams[", j,
                                          "] too (give each upstream its own name)"));
      }
    }
    int checks = (u.known_hosts.empty() ? 0 : 1) + (u.host_key_fingerprint.empty() ? 0 : 1);
    if (checks > 1) {
      return error("known_hosts", "known_hosts and host_key_fingerprint are exclusive");
    }
    if (checks == 0 && !u.insecure_accept_any_host_key) {
      return error("known_hosts",
                   "the server's host key must be checked: give known_hosts (--known-hosts) or "
                   "host_key_fingerprint (--host-key-fingerprint), or explicitly "
                   "insecure_accept_any_host_key (--insecure-accept-any-host-key)");
    }
    if (u.socks5_username.empty() != u.socks5_password.empty()) {
      return error("socks5_username", "socks5_username and socks5_password go together");
    }
    if (u.socks5_username.size() > 255 || u.socks5_password.size() > 255) {
      return error("socks5_username", "RFC 1929 allows at most 255 bytes each");
    }
    if (!u.socks5_username.empty() && !u.socks5) {
      return error("socks5_username", "needs a socks5 listener");
    }
    if (absl::Status tls = ValidateUpstreamTls(u); !tls.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("upstreams[", i, "].", tls.message()));
    }
    if (u.keepalive_timeout <= u.keepalive_interval) {
      return error("keepalive_timeout", "must be longer than keepalive_interval");
    }
  }
  return absl::OkStatus();
}

}  // namespace alknet::config
