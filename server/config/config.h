// The one configuration structure: the YAML file, the command-line flags and (later) the
// admin API all read and write this schema. docs/configuration.md documents every field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/common/log.h"
#include "server/common/net_address.h"
#include "server/config/algorithms.h"
#include "server/config/state_store_url.h"
#include "server/forward/forwarding_rules.h"

namespace alknet::config {

// Pre-authentication and shutdown bounds (OpenSSH LoginGraceTime / MaxStartups analogues).
struct Limits {
  absl::Duration login_grace_time = absl::Seconds(30);  // drop connections not authenticated by then
  int max_startups = 100;             // unauthenticated connections across all sources
  int per_source_max_startups = 10;   // unauthenticated connections from one source IP
  int max_sessions = 10000;           // authenticated sessions (0 = unlimited)
  int max_channels_per_session = 1024;
  absl::Duration connect_timeout = absl::Seconds(10);  // outbound connect for direct-tcpip
  absl::Duration shutdown_grace = absl::Seconds(10);   // SIGTERM: drain channels up to this long
  // Binary upgrade (issue 20): how long the old process keeps its sessions after handing over.
  absl::Duration upgrade_drain = absl::Hours(6);
};

// Rate limits (YAML section `rate_limits`, issue 15; docs/configuration.md). 0 turns a rule off;
// a burst of 0 means one second of the rate. Per-key rules key on the SHA256 fingerprint of the
// key that logged in (for a certificate: the certified key's, as in the auth log and metrics).
struct RateSpec {  // "N/s", "N/m", "N/h" (a bare N: per second); config/rate_units.h
  int64_t count = 0;
  char unit = 's';
  double per_second() const;
  bool operator==(const RateSpec&) const = default;
};
struct RateLimits {
  RateSpec connections_per_source;      // new connections per source IP (IPv6: /64), at accept
  int connections_per_source_burst = 0;
  RateSpec channels_per_session;        // new direct-tcpip channels per session
  int channels_per_session_burst = 0;
  RateSpec sessions_per_key;            // new sessions per key, at authentication
  int sessions_per_key_burst = 0;
  int max_sessions_per_key = 0;         // concurrent sessions per key
  int max_remote_forwards_per_key = 0;  // -R listeners per key, all its sessions together
  int64_t bandwidth_per_key = 0;        // bytes/s per direction, shared by the key's sessions
  int64_t bandwidth_per_key_burst = 0;  // bytes
  std::vector<std::string> bandwidth_exempt_keys;  // fingerprints the bandwidth rule skips
  bool operator==(const RateLimits&) const = default;
};

enum class QuicRetry { kAuto, kAlways, kNever };
enum class QuicCongestion { kBbr, kCubic };

// QUIC transport (quic:// listeners, ADR 0018). Its certificate is tls.cert / tls.key (or the
// generated pair), shared with tls:// listeners.
struct QuicConfig {
  // Retry address validation before any per-connection state: always, never, or auto (once a
  // worker has retry_threshold handshakes in progress).
  QuicRetry retry = QuicRetry::kAuto;
  int retry_threshold = 16;
  // The stream receive window grows up to this; as much sent data may wait for its ack. About
  // twice this per connection at worst; enough for one session to fill a fast link.
  int64_t stream_window = 16 * 1024 * 1024;
  absl::Duration idle_timeout = absl::Seconds(60);
  // 0: 1200-byte datagrams, path MTU discovery up to 1452. N: the paths are known to carry
  // N-byte UDP payloads (loopback, jumbo frames); packets up to N, no discovery.
  int max_udp_payload = 0;
  // bbr (default): paced to the measured bottleneck, random loss is not read as congestion
  // (5% loss: 2.5-3.8x cubic's throughput, bench/README); cubic: the classic loss-driven window.
  QuicCongestion congestion_control = QuicCongestion::kBbr;
  bool operator==(const QuicConfig&) const = default;
};

struct LogConfig {
  LogLevel level = LogLevel::kInfo;
  LogFormat format = LogFormat::kText;
};

enum class TlsProfile { kNginx, kModern };

// TLS transport (tls:// listeners). Without cert/key a self-signed pair is made in state_dir.
struct TlsConfig {
  std::string cert;            // PEM certificate chain; empty: <state_dir>/tls_cert.pem (generated)
  std::string key;             // PEM private key; empty: <state_dir>/tls_key.pem (generated)
  // Non-SSH clients get a web server's 404. Unset ("auto") means on; only an explicit true
  // is checked against the listeners (it needs a tls:// one).
  std::optional<bool> stealth;
  bool stealth_enabled() const { return stealth.value_or(true); }
  absl::Duration stealth_timeout = absl::Seconds(10);  // wait this long for an SSH banner
  std::string stealth_backend;  // http://host:port to proxy non-SSH traffic to; empty: 404
  // Before the first bytes decide SSH or web (TLS handshake + banner wait): its own budget,
  // so it never holds a max_startups slot. IPv6 sources count per /64.
  int max_handshakes = 200;
  int per_source_max_handshakes = 10;
  // Web-looking connections (nginx imitation, stealth-backend relay): their own budget, never
  // a max_startups slot; closed after web_lifetime however busy, and the backend relay after
  // web_idle_timeout without a byte either way.
  int web_max_connections = 256;
  int web_per_source_max_connections = 10;
  absl::Duration web_lifetime = absl::Minutes(5);
  absl::Duration web_idle_timeout = absl::Minutes(1);
  // What the TLS handshake presents: nginx (a stock Debian nginx 1.22.1) or modern (TLS 1.2+,
  // ECDHE-AEAD only). Unset ("auto"): nginx when stealth is on, modern otherwise.
  std::optional<TlsProfile> profile;
  TlsProfile effective_profile() const {
    return profile.value_or(stealth_enabled() ? TlsProfile::kNginx : TlsProfile::kModern);
  }
  bool operator==(const TlsConfig&) const = default;
};

// The Prometheus/health endpoint. Key labels give chosen keys their own series (bounded).
struct MetricsConfig {
  std::optional<HostPort> listen = HostPort{"127.0.0.1", 9464};  // nullopt: "off"
  // True once a config file, ALKNET_METRICS_LISTEN or --metrics-listen set `listen` (the agent's
  // BuildConfig clears it after the embedded defaults). A default address that is taken moves
  // to the next free port with a warning; an explicit one fails the start.
  bool listen_explicit = false;
  struct KeyLabel {
    std::string label;        // [a-zA-Z0-9_.-]{1,64}
    std::string fingerprint;  // "SHA256:..."
    bool operator==(const KeyLabel&) const = default;
  };
  std::vector<KeyLabel> key_labels;  // at most 200
  // The settings, not where they came from: a config printed by --print-config and read back
  // is equal to the one printed.
  bool operator==(const MetricsConfig& other) const {
    return listen == other.listen && key_labels == other.key_labels;
  }
};

// Per-source penalties (penalties:, OpenSSH 9.8 PerSourcePenalties; ADR 0013). Exempt entries
// are CIDRs checked by the schema.
struct PenaltiesConfig {
  bool enabled = true;
  absl::Duration authfail = absl::Seconds(5);         // ended after failed auth attempts
  absl::Duration noauth = absl::Seconds(1);           // ended without authenticating
  absl::Duration grace_exceeded = absl::Seconds(20);  // login_grace_time ran out
  absl::Duration probe = absl::Seconds(5);            // tls://: not SSH, the stealth answered
  absl::Duration min = absl::Seconds(15);             // refused once the penalty reaches this
  absl::Duration max = absl::Minutes(10);             // the penalty never exceeds this
  int max_sources = 65536;
  std::string overflow = "permissive";                // or "deny-all"
  int ipv4_netblock = 32;
  int ipv6_netblock = 64;
  std::vector<std::string> exempt;                    // CIDRs or addresses
  bool operator==(const PenaltiesConfig&) const = default;
};

// The admin API (gRPC): always on a Unix socket; optionally on TCP, only with mutual TLS.
struct AdminConfig {
  std::string socket;                 // Unix socket path; empty: <state_dir>/admin.sock
  std::optional<HostPort> listen;     // TCP host:port; nullopt: "off" (no TCP listener)
  std::string tls_cert;               // PEM certificate chain of the TCP listener
  std::string tls_key;                // PEM private key of tls_cert
  std::string client_ca;              // PEM CA certificates that client certificates must chain to
  bool operator==(const AdminConfig&) const = default;
};

// One -L / -R forward of the client role: "[bind:]port:host:hostport" (IPv6 in brackets).
struct ForwardSpec {
  std::string bind_host;  // -L: local bind (default 127.0.0.1); -R: requested on the server
  uint16_t bind_port = 0;
  std::string host;       // -L: the far side dials it; -R: we dial it locally
  uint16_t host_port = 0;
  std::string ToString() const;
  bool operator==(const ForwardSpec&) const = default;
};

// The client role: one SSH connection to an upstream server (server/config/upstream_schema.cc
// holds its field table; `alknet-agent connect` flags map onto one upstream).
struct UpstreamConfig {
  std::string name;                    // metrics label; default: the server's host:port
  EndpointUrl server;                  // tcp:// or tls://host:port (required)
  std::string user;                    // empty: the local user's name
  std::string identity;                // private key file (required)
  std::optional<HostPort> socks5;      // local SOCKS5 listener
  std::string socks5_username;         // RFC 1929 credentials required when set
  std::string socks5_password;
  std::vector<ForwardSpec> local_forwards;   // -L
  std::vector<ForwardSpec> remote_forwards;  // -R
  std::string known_hosts;             // OpenSSH known_hosts file to verify the host key
  std::string host_key_fingerprint;    // or a pinned "SHA256:..." fingerprint
  bool insecure_accept_any_host_key = false;
  std::optional<EndpointUrl> proxy;    // socks5://host:port or http://host:port
  std::string tls_server_name;         // tls://: SNI and certificate name; empty: the host
  std::string tls_ca_file;             // tls://: PEM CA bundle; empty: the system roots
  std::string tls_fingerprint;         // tls://: pinned leaf SHA-256, "AB:CD:..." (normalized)
  bool tls_insecure = false;           // tls://: no certificate check at all
  absl::Duration handshake_timeout = absl::Seconds(15);   // TCP + proxy + SSH + auth
  int quic_max_udp_payload = 0;        // quic://: as QuicConfig::max_udp_payload
  QuicCongestion quic_congestion_control = QuicCongestion::kBbr;  // quic://: as QuicConfig's
  absl::Duration keepalive_interval = absl::Seconds(15);
  absl::Duration keepalive_timeout = absl::Seconds(45);   // silent peer -> reconnect
  absl::Duration request_timeout = absl::Seconds(10);     // a SOCKS/-L request waiting to open
  int max_pending_requests = 128;      // requests queued while (re)connecting
  bool operator==(const UpstreamConfig&) const = default;
};

// Where the admin API's state lives (docs/scale-out.md): the state directory, or etcd for a fleet.
struct StateConfig {
  StateStoreUrl store;      // state.store: "file" (default) or etcd[s]://host:port,.../prefix
  std::string etcd_ca;      // PEM CA certificates for etcds:// (empty: the system's)
  std::string etcd_cert;    // PEM client certificate for etcds:// (optional, with etcd_key)
  std::string etcd_key;     // PEM private key of etcd_cert
  std::string replica_id;   // this replica's name in the fleet (empty: the host name)
  bool operator==(const StateConfig&) const = default;
};

struct AgentConfig {
  std::string state_dir = "./var";             // host key and state live here
  std::vector<EndpointUrl> listen;             // empty: tcp://127.0.0.1:2222
  std::vector<std::string> host_keys;          // empty: <state_dir>/ssh_host_ed25519_key (generated)
  std::vector<std::string> authorized_keys;    // empty: <state_dir>/authorized_keys
  std::vector<std::string> trusted_user_ca_keys;  // CA public keys trusted for user certificates
  std::vector<std::string> revoked_keys;       // KRL or plain revoked key lists (reloaded)
  absl::Duration certificate_clock_skew = absl::Minutes(1);  // allowance on cert validity
  int workers = 0;                             // event-loop threads; 0 = one per core
  Limits limits;
  RateLimits rate_limits;
  LogConfig log;
  MetricsConfig metrics;
  TlsConfig tls;
  QuicConfig quic;
  AdminConfig admin;
  PenaltiesConfig penalties;
  StateConfig state;
  SshAlgorithms ssh;  // ssh.kex / ciphers / macs / host_key_algorithms (server and client role)

  std::vector<UpstreamConfig> upstreams;  // client role (YAML list; `connect` flags make one)
  // forwarding.default_action / default_rules / allow_loopback / rules (docs/configuration.md)
  fwd::ForwardingPolicy forwarding;

  bool operator==(const AgentConfig&) const;
};

// Accepted ranges (inclusive unless noted), shared by the YAML/flag setters and Validate.
struct IntRange {
  int min;
  int max;
};
inline constexpr IntRange kWorkersRange{0, 256};
inline constexpr IntRange kMaxStartupsRange{1, 100000};
inline constexpr IntRange kPerSourceMaxStartupsRange{1, 100000};
inline constexpr IntRange kMaxSessionsRange{0, 1000000};
inline constexpr IntRange kMaxChannelsPerSessionRange{1, 100000};
inline constexpr IntRange kTlsConnectionCapRange{1, 100000};  // tls.*max_handshakes, web_*
inline constexpr IntRange kQuicRetryThresholdRange{0, 100000};  // quic.retry_threshold
// quic.max_udp_payload and an upstream's quic_max_udp_payload: 0, or QUIC's minimum datagram
// (1200) up to IPv4's largest UDP payload.
absl::Status ParseQuicMaxUdpPayload(std::string_view text, int& out);
// quic.congestion_control and an upstream's quic_congestion_control: "bbr" or "cubic".
absl::Status ParseQuicCongestion(std::string_view text, QuicCongestion& out);
std::string_view QuicCongestionName(QuicCongestion congestion);
inline constexpr IntRange kRateBurstRange{0, 1000000};             // rate_limits.*_burst
inline constexpr IntRange kPerKeyCapRange{0, 1000000};             // rate_limits.max_*_per_key
inline constexpr IntRange kPenaltyMaxSourcesRange{1, 10000000};     // penalties.max_sources
inline constexpr IntRange kIpv4NetblockRange{8, 32};                // penalties.ipv4_netblock
inline constexpr IntRange kIpv6NetblockRange{16, 128};              // penalties.ipv6_netblock

struct DurationRange {
  absl::Duration min;
  bool min_exclusive;  // true: the value must be greater than min
  absl::Duration max;  // inclusive
};
inline constexpr DurationRange kLoginGraceTimeRange{absl::ZeroDuration(), true, absl::Hours(1)};
inline constexpr DurationRange kConnectTimeoutRange{absl::ZeroDuration(), true, absl::Minutes(5)};
inline constexpr DurationRange kShutdownGraceRange{absl::ZeroDuration(), false, absl::Hours(1)};
inline constexpr DurationRange kUpgradeDrainRange{absl::ZeroDuration(), false, absl::Hours(24 * 7)};
inline constexpr DurationRange kCertificateClockSkewRange{absl::ZeroDuration(), false, absl::Hours(1)};
inline constexpr DurationRange kStealthTimeoutRange{absl::ZeroDuration(), true, absl::Minutes(5)};
inline constexpr DurationRange kWebLifetimeRange{absl::ZeroDuration(), true, absl::Hours(24)};
inline constexpr DurationRange kWebIdleTimeoutRange{absl::ZeroDuration(), true, absl::Hours(1)};
inline constexpr DurationRange kQuicIdleTimeoutRange{absl::ZeroDuration(), true, absl::Hours(1)};
inline constexpr DurationRange kPenaltyRange{absl::ZeroDuration(), false, absl::Hours(24)};

// Range checks; errors read "'<value>' is out of range (...)" without a field name.
absl::Status CheckRange(int value, IntRange range);
absl::Status CheckRange(absl::Duration value, DurationRange range);

// Fills the defaults that depend on other fields (listen, host_keys, authorized_keys, workers).
void ResolveDefaults(AgentConfig& config);

// Cross-field checks after all sources are applied (positive limits, non-empty listeners...).
absl::Status Validate(const AgentConfig& config);

}  // namespace alknet::config
