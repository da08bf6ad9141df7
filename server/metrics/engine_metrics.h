// The engine's Prometheus metrics: every family, its labels and their bounded value sets.
// Label values come only from the enums and transport names below, or from operator-given key
// labels (metrics.key_labels): never from tunnel destinations or client input.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/container/flat_hash_map.h"
#include "server/metrics/byte_tally.h"

namespace alknet {

// Transports with their own series. Unknown names fall into "other".
enum class TransportLabel { kTcp = 0, kTls, kQuic, kOther, kCount };
TransportLabel TransportFromName(std::string_view name);

enum class SessionResult { kAuthenticated = 0, kAuthFailed, kLoginTimeout, kClosedBeforeAuth, kCount };
enum class AuthResult { kAccepted = 0, kRejected, kCount };
enum class AuthMethod { kPublicKey = 0, kPassword, kKeyboardInteractive, kOther, kCount };
enum class ChannelKind { kDirectTcpip = 0, kForwardedTcpip, kSocks, kCount };
enum class ChannelResult { kOpened = 0, kConnectFailed, kProhibited, kCount };
enum class Direction { kUpstream = 0, kDownstream, kCount };  // client->target, target->client

// Why a connection or channel was turned away before it did any work.
enum class RejectReason {
  kMaxStartups = 0, kPerSourceMaxStartups, kMaxSessions, kLoginGraceTimeout, kTooManyAuthAttempts,
  kTooManyChannels, kPortForwardingDisabled, kPermitOpen, kReservedDestination, kKeyRevoked,
  kShuttingDown, kPermitListen,
  kTlsHandshakes,   // tls:// before the SSH/web decision: tls.max_handshakes (or per source)
  kWebConnections,  // tls:// web-looking: tls.web_max_connections (or per source)
  // rate_limits (issue 15): the label is the rule's name.
  kConnRate, kChannelRate, kSessionRate, kSessionsPerKey, kRemoteForwardsPerKey, kKeyTableFull,
  kPenalty,         // at accept: the source's netblock is penalised (penalties:, ADR 0013)
  kCount
};

std::string_view RejectReasonName(RejectReason reason);

// Cells a relay adds to per chunk (ByteTally::Add): its worker's, resolved once per channel.
struct ByteCounters {
  ByteTally::Cell* upstream = nullptr;
  ByteTally::Cell* downstream = nullptr;
  ByteTally::Cell* key_upstream = nullptr;    // null unless the key is labelled
  ByteTally::Cell* key_downstream = nullptr;
};

class EngineMetrics {
 public:
  // `key_labels`: fingerprint ("SHA256:...") -> operator-chosen label; at most kMaxKeyLabels.
  static constexpr size_t kMaxKeyLabels = 200;
  EngineMetrics(std::shared_ptr<prometheus::Registry> registry,
                const std::vector<std::pair<std::string, std::string>>& key_labels,
                std::string_view version);

  prometheus::Registry& registry() { return *registry_; }
  // Every family, with the workers' byte tallies folded in first: what a scrape serves.
  std::vector<prometheus::MetricFamily> Collect();
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

  void SessionStarted(TransportLabel transport);
  void SessionEnded(TransportLabel transport, SessionResult result);
  void HandshakeCompleted(TransportLabel transport, double seconds);
  void AuthAttempt(AuthResult result, AuthMethod method);
  void ChannelOpenFinished(ChannelKind kind, ChannelResult result);
  void ChannelClosed(ChannelKind kind);
  void OutboundConnect(double seconds);
  void Rejected(RejectReason reason);
  // alknet_rejections_total{reason="forwarding_policy",rule=NAME}: a forwarding rule (or
  // "default") refused a channel or -R listener. Names come from the policy, never a destination.
  void ForwardingRuleRejected(std::string_view rule);
  // A worker's own byte tally (thread-safe; it lives as long as this object).
  ByteTally& NewByteTally();
  // The cells of `tally` that a channel of this transport and key adds its bytes to.
  ByteCounters BytesFor(ByteTally& tally, TransportLabel transport, std::string_view key_fingerprint);
  // Per-key sessions gauge (no-op for unlabelled keys).
  void KeySessionDelta(std::string_view key_fingerprint, int delta);
  void SetUnauthenticated(int count) { unauthenticated_->Set(count); }
  // One gauge per configured listener URL (bounded by the config).
  prometheus::Gauge& ListenerUp(const std::string& listener);

  // Client role: the series of one configured upstream (label values come from the config).
  struct UpstreamSeries {
    prometheus::Gauge* connected = nullptr;    // alknet_upstream_connected{upstream}
    prometheus::Counter* reconnects = nullptr;  // alknet_upstream_reconnects_total{upstream}
  };
  UpstreamSeries Upstream(const std::string& upstream);

  // The admin API's state store (file, or etcd for a fleet): alknet_state_store_up is 1 while it
  // can be written, alknet_state_store_outages_total counts the times it went away.
  void SetStateStoreUp(bool up);

  // QUIC (issue 14). alknet_quic_events_total{event}: QUIC handshakes done and failed, Retry packets sent,
  // stateless resets sent, validated client migrations, congestion recovery episodes (packets
  // lost or ECN-CE) and probe timeouts, the loss signals. Unknown names are ignored.
  void QuicEvent(std::string_view event);
  // A QUIC connection that completed its handshake ended: its smoothed RTT
  // (alknet_quic_rtt_seconds) and last congestion window (alknet_quic_cwnd_bytes).
  void QuicConnectionEnded(double rtt_seconds, double cwnd_bytes);

 private:
  template <size_t N>
  using Row = std::array<prometheus::Counter*, N>;

  std::shared_ptr<prometheus::Registry> registry_;
  static constexpr size_t kTransports = static_cast<size_t>(TransportLabel::kCount);
  std::array<prometheus::Gauge*, kTransports> sessions_active_{};
  std::array<Row<static_cast<size_t>(SessionResult::kCount)>, kTransports> sessions_total_{};
  std::array<prometheus::Histogram*, kTransports> handshake_seconds_{};
  std::array<Row<static_cast<size_t>(AuthMethod::kCount)>, static_cast<size_t>(AuthResult::kCount)>
      auth_attempts_{};
  std::array<prometheus::Gauge*, static_cast<size_t>(ChannelKind::kCount)> channels_active_{};
  std::array<Row<static_cast<size_t>(ChannelResult::kCount)>, static_cast<size_t>(ChannelKind::kCount)>
      channels_opened_{};
  prometheus::Histogram* connect_seconds_ = nullptr;
  Row<static_cast<size_t>(RejectReason::kCount)> rejections_{};
  prometheus::Family<prometheus::Counter>* rejections_family_ = nullptr;
  prometheus::Gauge* unauthenticated_ = nullptr;
  prometheus::Family<prometheus::Gauge>* listener_up_ = nullptr;
  prometheus::Family<prometheus::Gauge>* upstream_connected_ = nullptr;
  prometheus::Family<prometheus::Counter>* upstream_reconnects_ = nullptr;
  prometheus::Gauge* state_store_up_ = nullptr;
  prometheus::Counter* state_store_outages_ = nullptr;
  static constexpr size_t kQuicEvents = 8;
  std::array<prometheus::Counter*, kQuicEvents> quic_events_{};
  prometheus::Histogram* quic_rtt_ = nullptr;
  prometheus::Histogram* quic_cwnd_ = nullptr;

  struct KeySeries {
    size_t tally_series;  // its row in every ByteTally (after the transports')
    prometheus::Gauge* sessions;
  };
  absl::flat_hash_map<std::string, KeySeries> key_series_;  // fixed after construction
  // Byte counters, one row per transport then one per labelled key: what the tallies fold into.
  std::vector<std::array<prometheus::Counter*, ByteTally::kDirections>> byte_series_;
  std::mutex tallies_mutex_;
  std::vector<std::unique_ptr<ByteTally>> tallies_;  // guarded by tallies_mutex_
  std::vector<std::array<uint64_t, ByteTally::kDirections>> folded_;  // guarded by tallies_mutex_
};

}  // namespace alknet
