// The engine's Prometheus metrics: every family, its labels and their bounded value sets.
#include "server/metrics/engine_metrics.h"

#include <libssh/libssh.h>

namespace alknet {
namespace {

constexpr std::array<std::string_view, 8> kQuicEventNames = {
    "handshake", "handshake_failed", "retry", "stateless_reset", "migration", "congestion",
    "probe_timeout", "upgrade_relayed"};
constexpr std::array<std::string_view, static_cast<size_t>(TransportLabel::kCount)> kTransportNames = {
    "tcp", "tls", "quic", "other"};
constexpr std::array<std::string_view, static_cast<size_t>(SessionResult::kCount)> kSessionResults = {
    "authenticated", "auth_failed", "login_timeout", "closed_before_auth"};
constexpr std::array<std::string_view, static_cast<size_t>(AuthResult::kCount)> kAuthResults = {
    "accepted", "rejected"};
constexpr std::array<std::string_view, static_cast<size_t>(AuthMethod::kCount)> kAuthMethods = {
    "publickey", "password", "keyboard_interactive", "other"};
constexpr std::array<std::string_view, static_cast<size_t>(ChannelKind::kCount)> kChannelKinds = {
    "direct_tcpip", "forwarded_tcpip", "socks"};
constexpr std::array<std::string_view, static_cast<size_t>(ChannelResult::kCount)> kChannelResults = {
    "opened", "connect_failed", "prohibited"};
constexpr std::array<std::string_view, static_cast<size_t>(Direction::kCount)> kDirections = {
    "upstream", "downstream"};
constexpr std::array<std::string_view, static_cast<size_t>(RejectReason::kCount)> kRejectReasons = {
    "max_startups",          "per_source_max_startups", "max_sessions",
    "login_grace_timeout",   "too_many_auth_attempts",  "too_many_channels",
    "port_forwarding_disabled", "permitopen",           "reserved_destination",
    "key_revoked",           "shutting_down",           "permitlisten",
    "tls_handshakes",        "web_connections",
    // rate_limits (issue 15)
    "conn_rate", "channel_rate", "session_rate", "sessions_per_key", "rforwards_per_key",
    "key_table_full",
    // penalties (issue 15)
    "penalty"};

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return buckets;
}

template <typename E>
size_t Index(E value) {
  return static_cast<size_t>(value);
}

}  // namespace

TransportLabel TransportFromName(std::string_view name) {
  for (size_t i = 0; i < kTransportNames.size(); ++i) {
    if (kTransportNames[i] == name) return static_cast<TransportLabel>(i);
  }
  return TransportLabel::kOther;
}

std::string_view RejectReasonName(RejectReason reason) { return kRejectReasons[Index(reason)]; }

EngineMetrics::EngineMetrics(std::shared_ptr<prometheus::Registry> registry,
                             const std::vector<std::pair<std::string, std::string>>& key_labels,
                             std::string_view version)
    : registry_(std::move(registry)) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto s = [](std::string_view v) { return std::string(v); };

  BuildGauge().Name("alknet_build_info").Help("Build information; always 1.")
      .Register(*registry_)
      .Add({{"version", s(version)}, {"libssh_version", ssh_version(0)}})
      .Set(1);

  auto& sessions_active = BuildGauge().Name("alknet_sessions_active")
      .Help("SSH sessions currently open, authenticated or not.").Register(*registry_);
  auto& sessions_total = BuildCounter().Name("alknet_sessions_total")
      .Help("SSH sessions ended, by how far they got.").Register(*registry_);
  auto& handshake = BuildHistogram().Name("alknet_handshake_duration_seconds")
      .Help("Time from accepted connection to successful authentication.").Register(*registry_);
  auto& bytes = BuildCounter().Name("alknet_forwarded_bytes_total")
      .Help("Bytes relayed through channels; upstream is client to target.").Register(*registry_);
  for (size_t t = 0; t < kTransports; ++t) {
    sessions_active_[t] = &sessions_active.Add({{"transport", s(kTransportNames[t])}});
    handshake_seconds_[t] = &handshake.Add({{"transport", s(kTransportNames[t])}}, LatencyBuckets());
    for (size_t r = 0; r < kSessionResults.size(); ++r) {
      sessions_total_[t][r] = &sessions_total.Add(
          {{"transport", s(kTransportNames[t])}, {"result", s(kSessionResults[r])}});
    }
    auto& row = byte_series_.emplace_back();
    for (size_t d = 0; d < kDirections.size(); ++d) {
      row[d] = &bytes.Add({{"transport", s(kTransportNames[t])}, {"direction", s(kDirections[d])}});
    }
  }

  auto& auth = BuildCounter().Name("alknet_auth_attempts_total")
      .Help("Authentication attempts by result and method.").Register(*registry_);
  for (size_t r = 0; r < kAuthResults.size(); ++r) {
    for (size_t m = 0; m < kAuthMethods.size(); ++m) {
      auth_attempts_[r][m] = &auth.Add({{"result", s(kAuthResults[r])}, {"method", s(kAuthMethods[m])}});
    }
  }

  auto& channels_active = BuildGauge().Name("alknet_channels_active")
      .Help("Channels currently relaying data, by kind.").Register(*registry_);
  auto& channels_opened = BuildCounter().Name("alknet_channels_opened_total")
      .Help("Channel open requests by kind and outcome.").Register(*registry_);
  for (size_t k = 0; k < kChannelKinds.size(); ++k) {
    channels_active_[k] = &channels_active.Add({{"kind", s(kChannelKinds[k])}});
    for (size_t r = 0; r < kChannelResults.size(); ++r) {
      channels_opened_[k][r] =
          &channels_opened.Add({{"kind", s(kChannelKinds[k])}, {"result", s(kChannelResults[r])}});
    }
  }

  connect_seconds_ = &BuildHistogram().Name("alknet_outbound_connect_duration_seconds")
      .Help("Time to resolve and connect to a channel's target.").Register(*registry_)
      .Add({}, LatencyBuckets());

  auto& rejections = BuildCounter().Name("alknet_rejections_total")
      .Help("Connections and channels turned away by pre-auth limits or policy.").Register(*registry_);
  for (size_t r = 0; r < kRejectReasons.size(); ++r) {
    rejections_[r] = &rejections.Add({{"reason", s(kRejectReasons[r])}});
  }
  rejections_family_ = &rejections;

  auto& quic_events = BuildCounter().Name("alknet_quic_events_total")
      .Help("QUIC endpoint events: handshake, handshake_failed, retry, stateless_reset, migration, "
            "congestion (a recovery episode: loss or ECN-CE), probe_timeout, upgrade_relayed (a packet "
            "passed to the process before or after this one in a binary upgrade).")
      .Register(*registry_);
  for (size_t i = 0; i < kQuicEventNames.size(); ++i) {
    quic_events_[i] = &quic_events.Add({{"event", s(kQuicEventNames[i])}});
  }
  quic_rtt_ = &BuildHistogram().Name("alknet_quic_rtt_seconds")
      .Help("Smoothed RTT of QUIC connections when they ended (handshake completed).")
      .Register(*registry_).Add({}, LatencyBuckets());
  quic_cwnd_ = &BuildHistogram().Name("alknet_quic_cwnd_bytes")
      .Help("Congestion window of QUIC connections when they ended (handshake completed).")
      .Register(*registry_)
      // Every bound above 65535, so no `le` value can read like a port number (the scrape test's
      // privacy check looks for destination ports in label values).
      .Add({}, prometheus::Histogram::BucketBoundaries{1e5, 2.5e5, 1e6, 4e6, 16e6, 64e6});

  unauthenticated_ = &BuildGauge().Name("alknet_unauthenticated_connections")
      .Help("Connections accepted but not yet authenticated (MaxStartups pool).")
      .Register(*registry_).Add({});
  listener_up_ = &BuildGauge().Name("alknet_listener_up")
      .Help("1 while the listener accepts connections, 0 otherwise.").Register(*registry_);

  upstream_connected_ = &BuildGauge().Name("alknet_upstream_connected")
      .Help("Client role: 1 while the SSH session to this upstream is up, 0 otherwise.")
      .Register(*registry_);
  upstream_reconnects_ = &BuildCounter().Name("alknet_upstream_reconnects_total")
      .Help("Client role: connection attempts to this upstream after the first.")
      .Register(*registry_);
  state_store_up_ = &BuildGauge().Name("alknet_state_store_up")
      .Help("1 while the admin API's state store (file or etcd) can be written, 0 otherwise.")
      .Register(*registry_).Add({});
  state_store_up_->Set(1);
  state_store_outages_ = &BuildCounter().Name("alknet_state_store_outages_total")
      .Help("Times the admin API's state store (etcd) became unreachable.")
      .Register(*registry_).Add({});

  auto& key_bytes = BuildCounter().Name("alknet_key_forwarded_bytes_total")
      .Help("Bytes relayed for operator-labelled keys (metrics.key_labels).").Register(*registry_);
  auto& key_sessions = BuildGauge().Name("alknet_key_sessions_active")
      .Help("Authenticated sessions of operator-labelled keys.").Register(*registry_);
  for (const auto& [fingerprint, label] : key_labels) {
    if (key_series_.size() >= kMaxKeyLabels) break;
    if (key_series_.contains(fingerprint)) continue;
    key_series_[fingerprint] = KeySeries{byte_series_.size(), &key_sessions.Add({{"key", label}})};
    byte_series_.push_back({&key_bytes.Add({{"key", label}, {"direction", "upstream"}}),
                            &key_bytes.Add({{"key", label}, {"direction", "downstream"}})});
  }
  folded_.assign(byte_series_.size(), {});
}

ByteTally& EngineMetrics::NewByteTally() {
  std::lock_guard<std::mutex> lock(tallies_mutex_);
  return *tallies_.emplace_back(std::make_unique<ByteTally>(byte_series_.size()));
}

std::vector<prometheus::MetricFamily> EngineMetrics::Collect() {
  {
    std::lock_guard<std::mutex> lock(tallies_mutex_);
    for (size_t series = 0; series < byte_series_.size(); ++series) {
      for (size_t d = 0; d < ByteTally::kDirections; ++d) {
        uint64_t total = 0;
        for (const auto& tally : tallies_) total += tally->value(series, d);
        byte_series_[series][d]->Increment(static_cast<double>(total - folded_[series][d]));
        folded_[series][d] = total;
      }
    }
  }
  return registry_->Collect();
}

void EngineMetrics::SetStateStoreUp(bool up) {
  if (!up && state_store_up_->Value() != 0) state_store_outages_->Increment();
  state_store_up_->Set(up ? 1 : 0);
}

prometheus::Gauge& EngineMetrics::ListenerUp(const std::string& listener) {
  return listener_up_->Add({{"listener", listener}});
}

EngineMetrics::UpstreamSeries EngineMetrics::Upstream(const std::string& upstream) {
  return {&upstream_connected_->Add({{"upstream", upstream}}),
          &upstream_reconnects_->Add({{"upstream", upstream}})};
}

void EngineMetrics::SessionStarted(TransportLabel transport) {
  sessions_active_[Index(transport)]->Increment();
}

void EngineMetrics::SessionEnded(TransportLabel transport, SessionResult result) {
  sessions_active_[Index(transport)]->Decrement();
  sessions_total_[Index(transport)][Index(result)]->Increment();
}

void EngineMetrics::HandshakeCompleted(TransportLabel transport, double seconds) {
  handshake_seconds_[Index(transport)]->Observe(seconds);
}

void EngineMetrics::AuthAttempt(AuthResult result, AuthMethod method) {
  auth_attempts_[Index(result)][Index(method)]->Increment();
}

void EngineMetrics::ChannelOpenFinished(ChannelKind kind, ChannelResult result) {
  channels_opened_[Index(kind)][Index(result)]->Increment();
  if (result == ChannelResult::kOpened) channels_active_[Index(kind)]->Increment();
}

void EngineMetrics::ChannelClosed(ChannelKind kind) { channels_active_[Index(kind)]->Decrement(); }

void EngineMetrics::OutboundConnect(double seconds) { connect_seconds_->Observe(seconds); }

void EngineMetrics::Rejected(RejectReason reason) { rejections_[Index(reason)]->Increment(); }

void EngineMetrics::QuicConnectionEnded(double rtt_seconds, double cwnd_bytes) {
  quic_rtt_->Observe(rtt_seconds);
  quic_cwnd_->Observe(cwnd_bytes);
}

void EngineMetrics::QuicEvent(std::string_view event) {
  for (size_t i = 0; i < kQuicEventNames.size(); ++i) {
    if (kQuicEventNames[i] == event) quic_events_[i]->Increment();
  }
}

void EngineMetrics::ForwardingRuleRejected(std::string_view rule) {
  // Family::Add returns the existing series for known labels (one lookup, only on refusal).
  rejections_family_->Add({{"reason", "forwarding_policy"}, {"rule", std::string(rule)}}).Increment();
}

ByteCounters EngineMetrics::BytesFor(ByteTally& tally, TransportLabel transport,
                                     std::string_view key_fingerprint) {
  ByteCounters counters;
  counters.upstream = tally.cell(Index(transport), Index(Direction::kUpstream));
  counters.downstream = tally.cell(Index(transport), Index(Direction::kDownstream));
  auto it = key_series_.find(std::string(key_fingerprint));
  if (it != key_series_.end()) {
    counters.key_upstream = tally.cell(it->second.tally_series, Index(Direction::kUpstream));
    counters.key_downstream = tally.cell(it->second.tally_series, Index(Direction::kDownstream));
  }
  return counters;
}

void EngineMetrics::KeySessionDelta(std::string_view key_fingerprint, int delta) {
  auto it = key_series_.find(std::string(key_fingerprint));
  if (it != key_series_.end()) it->second.sessions->Increment(delta);
}

}  // namespace alknet
