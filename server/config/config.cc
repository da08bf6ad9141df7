// AgentConfig equality, the defaults that depend on other fields, and cross-field validation.
#include "server/config/config.h"

#include <algorithm>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/strings.h"
#include "server/config/duration.h"
#include "server/config/upstream_schema.h"

namespace alknet::config {
namespace {

bool operator==(const Limits& a, const Limits& b) {
  return a.login_grace_time == b.login_grace_time && a.max_startups == b.max_startups &&
         a.per_source_max_startups == b.per_source_max_startups &&
         a.max_sessions == b.max_sessions &&
         a.max_channels_per_session == b.max_channels_per_session &&
         a.connect_timeout == b.connect_timeout && a.shutdown_grace == b.shutdown_grace &&
         a.upgrade_drain == b.upgrade_drain;
}

bool operator==(const LogConfig& a, const LogConfig& b) {
  return a.level == b.level && a.format == b.format;
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  if (!dir.empty() && dir.back() == '/') return absl::StrCat(dir, Sv(name));
  return absl::StrCat(dir, "/", Sv(name));
}

absl::Status FieldError(std::string_view field, const absl::Status& status) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(field), ": ", status.message()));
}

// tls.*: stealth=true needs a tls:// listener, cert and key come together, the backend is
// http://host:port.
absl::Status ValidateTls(const AgentConfig& config) {
  const TlsConfig& tls = config.tls;
  bool has_tls_listener = std::any_of(config.listen.begin(), config.listen.end(),
                                      [](const EndpointUrl& url) { return url.scheme == "tls"; });
  if (tls.stealth == true && !has_tls_listener) {
    return absl::InvalidArgumentError(
        "tls.stealth (--stealth) is set to true but no listener is tls:// "
        "(add --listen tls://HOST:PORT or drop --stealth)");
  }
  if (tls.per_source_max_handshakes > tls.max_handshakes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.per_source_max_handshakes (", tls.per_source_max_handshakes,
                     ") must not exceed tls.max_handshakes (", tls.max_handshakes, ")"));
  }
  if (tls.web_per_source_max_connections > tls.web_max_connections) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls.web_per_source_max_connections (", tls.web_per_source_max_connections,
        ") must not exceed tls.web_max_connections (", tls.web_max_connections, ")"));
  }
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError(
        "tls.cert (--tls-cert) and tls.key (--tls-key) must be given together");
  }
  if (!tls.stealth_backend.empty()) {
    std::string_view backend = tls.stealth_backend;
    if (backend.substr(0, 7) != "http://") {
      return absl::InvalidArgumentError(absl::StrCat(
          "tls.stealth_backend (--stealth-backend): '", Sv(backend), "' is not http://host:port"));
    }
    backend.remove_prefix(7);
    if (!backend.empty() && backend.back() == '/') backend.remove_suffix(1);
    if (absl::StatusOr<HostPort> address = ParseHostPort(backend, /*allow_zero=*/false);
        !address.ok()) {
      return FieldError("tls.stealth_backend", address.status());
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateState(const StateConfig& state) {
  bool etcd = state.store.kind == StateStoreUrl::Kind::kEtcd;
  if (state.etcd_cert.empty() != state.etcd_key.empty()) {
    return absl::InvalidArgumentError("state.etcd_cert and state.etcd_key: set both or neither");
  }
  bool tls_files = !state.etcd_ca.empty() || !state.etcd_cert.empty();
  if (tls_files && !(etcd && state.store.tls)) {
    return absl::InvalidArgumentError(
        "state.etcd_ca/etcd_cert/etcd_key: only for an etcds:// state.store");
  }
  if (!state.replica_id.empty() && !etcd) {
    return absl::InvalidArgumentError("state.replica_id: only for an etcd state.store");
  }
  return absl::OkStatus();
}

}  // namespace

bool AgentConfig::operator==(const AgentConfig& other) const {
  return state_dir == other.state_dir && listen == other.listen && host_keys == other.host_keys &&
         authorized_keys == other.authorized_keys && workers == other.workers &&
         trusted_user_ca_keys == other.trusted_user_ca_keys && revoked_keys == other.revoked_keys &&
         certificate_clock_skew == other.certificate_clock_skew && limits == other.limits &&
         rate_limits == other.rate_limits &&
         log == other.log && metrics == other.metrics && tls == other.tls &&
         upstreams == other.upstreams && forwarding == other.forwarding &&
         admin == other.admin && ssh == other.ssh && penalties == other.penalties &&
         state == other.state && quic == other.quic;
}

absl::Status ParseQuicMaxUdpPayload(std::string_view text, int& out) {
  constexpr int kMin = 1200;   // QUIC's smallest datagram
  constexpr int kMax = 65507;  // IPv4's largest UDP payload
  std::string shown = absl::CHexEscape(Sv(text.substr(0, 100)));
  int value = 0;
  bool digits = !text.empty() && text.size() <= 9 &&
                std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || !absl::SimpleAtoi(Sv(text), &value)) {
    return absl::InvalidArgumentError(absl::StrCat("'", shown, "' is not an integer"));
  }
  if (value > kMax) {
    return absl::InvalidArgumentError(absl::StrCat("'", shown, "' is out of range (0..", kMax, ")"));
  }
  if (value != 0 && value < kMin) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", shown, "' is below QUIC's ", kMin, "-byte minimum (0: discover)"));
  }
  out = value;
  return absl::OkStatus();
}

absl::Status ParseQuicCongestion(std::string_view text, QuicCongestion& out) {
  if (text == "bbr") {
    out = QuicCongestion::kBbr;
  } else if (text == "cubic") {
    out = QuicCongestion::kCubic;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("'", absl::CHexEscape(Sv(text.substr(0, 100))),
                                                   "' is not bbr or cubic"));
  }
  return absl::OkStatus();
}

std::string_view QuicCongestionName(QuicCongestion congestion) {
  return congestion == QuicCongestion::kCubic ? "cubic" : "bbr";
}

absl::Status CheckRange(int value, IntRange range) {
  if (value < range.min || value > range.max) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", value, "' is out of range (", range.min, "..", range.max, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(absl::Duration value, DurationRange range) {
  bool low = range.min_exclusive ? value <= range.min : value < range.min;
  if (low || value > range.max) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", config::FormatDuration(value), "' is out of range (must be ",
                     range.min_exclusive ? "> " : ">= ", config::FormatDuration(range.min),
                     " and <= ", config::FormatDuration(range.max), ")"));
  }
  return absl::OkStatus();
}

void ResolveDefaults(AgentConfig& config) {
  if (config.listen.empty()) {
    config.listen.push_back(EndpointUrl{"tcp", HostPort{"127.0.0.1", 2222}});
  }
  if (config.host_keys.empty()) {
    config.host_keys.push_back(JoinPath(config.state_dir, "ssh_host_ed25519_key"));
  }
  if (config.authorized_keys.empty()) {
    config.authorized_keys.push_back(JoinPath(config.state_dir, "authorized_keys"));
  }
  if (config.admin.socket.empty()) config.admin.socket = JoinPath(config.state_dir, "admin.sock");
  ResolveUpstreamDefaults(config.upstreams);
  if (config.workers == 0) {
    unsigned cores = std::thread::hardware_concurrency();
    config.workers =
        static_cast<int>(std::clamp<unsigned>(cores, 1, static_cast<unsigned>(kWorkersRange.max)));
  }
}

absl::Status Validate(const AgentConfig& config) {
  if (config.state_dir.empty()) return absl::InvalidArgumentError("state_dir: must not be empty");
  if (config.listen.empty()) return absl::InvalidArgumentError("listen: no listen address");
  if (absl::Status status = ValidateState(config.state); !status.ok()) return status;
  if (absl::Status status = fwd::ValidateRules(config.forwarding.rules); !status.ok()) return status;
  for (size_t i = 0; i < config.listen.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (config.listen[i] == config.listen[j]) {
        return absl::InvalidArgumentError(
            absl::StrCat("listen: '", config.listen[i].ToString(), "' is listed more than once"));
      }
    }
  }
  if (config.host_keys.empty()) return absl::InvalidArgumentError("host_keys: no host key");
  for (const std::string& path : config.host_keys) {
    if (path.empty()) return absl::InvalidArgumentError("host_keys: empty path");
  }
  if (config.authorized_keys.empty()) {
    return absl::InvalidArgumentError("authorized_keys: no authorized_keys file");
  }
  for (const std::string& path : config.authorized_keys) {
    if (path.empty()) return absl::InvalidArgumentError("authorized_keys: empty path");
  }

  struct IntCheck {
    std::string_view field;
    int value;
    IntRange range;
  };
  const Limits& limits = config.limits;
  for (const IntCheck& check : {
           IntCheck{"workers", config.workers, kWorkersRange},
           IntCheck{"limits.max_startups", limits.max_startups, kMaxStartupsRange},
           IntCheck{"limits.per_source_max_startups", limits.per_source_max_startups,
                    kPerSourceMaxStartupsRange},
           IntCheck{"limits.max_sessions", limits.max_sessions, kMaxSessionsRange},
           IntCheck{"limits.max_channels_per_session", limits.max_channels_per_session,
                    kMaxChannelsPerSessionRange},
           IntCheck{"tls.max_handshakes", config.tls.max_handshakes, kTlsConnectionCapRange},
           IntCheck{"tls.per_source_max_handshakes", config.tls.per_source_max_handshakes,
                    kTlsConnectionCapRange},
           IntCheck{"tls.web_max_connections", config.tls.web_max_connections,
                    kTlsConnectionCapRange},
           IntCheck{"tls.web_per_source_max_connections",
                    config.tls.web_per_source_max_connections, kTlsConnectionCapRange},
       }) {
    if (absl::Status status = CheckRange(check.value, check.range); !status.ok()) {
      return FieldError(check.field, status);
    }
  }

  struct DurationCheck {
    std::string_view field;
    absl::Duration value;
    DurationRange range;
  };
  for (const DurationCheck& check : {
           DurationCheck{"limits.login_grace_time", limits.login_grace_time, kLoginGraceTimeRange},
           DurationCheck{"limits.connect_timeout", limits.connect_timeout, kConnectTimeoutRange},
           DurationCheck{"limits.shutdown_grace", limits.shutdown_grace, kShutdownGraceRange},
           DurationCheck{"limits.upgrade_drain", limits.upgrade_drain, kUpgradeDrainRange},
           DurationCheck{"tls.web_lifetime", config.tls.web_lifetime, kWebLifetimeRange},
           DurationCheck{"tls.web_idle_timeout", config.tls.web_idle_timeout,
                         kWebIdleTimeoutRange},
       }) {
    if (absl::Status status = CheckRange(check.value, check.range); !status.ok()) {
      return FieldError(check.field, status);
    }
  }

  if (config.admin.listen) {
    if (config.admin.client_ca.empty()) {
      return absl::InvalidArgumentError(
          "admin.listen: a TCP admin listener needs admin.client_ca (clients must present a "
          "certificate: mutual TLS)");
    }
    if (config.admin.tls_cert.empty() || config.admin.tls_key.empty()) {
      return absl::InvalidArgumentError(
          "admin.listen: a TCP admin listener needs admin.tls_cert and admin.tls_key");
    }
  }
  if (absl::Status status = ValidateUpstreams(config.upstreams); !status.ok()) return status;
  if (limits.per_source_max_startups > limits.max_startups) {
    return absl::InvalidArgumentError(
        absl::StrCat("limits.per_source_max_startups (", limits.per_source_max_startups,
                     ") must not exceed limits.max_startups (", limits.max_startups, ")"));
  }
  if (absl::Status status = ValidateTls(config); !status.ok()) return status;
  if (config.penalties.min > config.penalties.max) {
    return absl::InvalidArgumentError(
        "penalties.min must not exceed penalties.max (no source could ever be refused)");
  }
  return absl::OkStatus();
}

}  // namespace alknet::config
