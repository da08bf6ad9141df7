// The operator's HTTP endpoints on the metrics port: /metrics, /healthz, /readyz.
// One request per connection, bounded request size, a read deadline and a connection cap that an
// outsider cannot fill: a new connection evicts the oldest one still waiting for its request
// (from the same source first), so a health probe always gets its answer (docs/security.md, 6).
// One descriptor is kept in reserve (/dev/null) and given up to accept a probe when the process
// is out of descriptors, so /readyz can still answer 503 then.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "server/common/log.h"
#include "server/common/net_address.h"
#include "server/common/unique_fd.h"
#include "server/loop/accept_loop.h"
#include "server/loop/event_loop.h"

namespace alknet::http {

struct StatusHandlers {
  std::function<std::string()> metrics;  // Prometheus text exposition
  std::function<bool()> healthy;         // process alive, loops responsive
  std::function<bool()> ready;           // can serve: listeners accepting, state loaded
};

// How many ports after a taken default metrics address are tried before an ephemeral port.
inline constexpr int kMetricsFallbackPorts = 9;

class StatusServer final {
 public:
  static absl::StatusOr<std::unique_ptr<StatusServer>> Bind(const HostPort& address);
  // Bind(address); but when the address is the default one (`explicit_address` false) and it is
  // taken (EADDRINUSE), the next kMetricsFallbackPorts ports on the same host, then an ephemeral
  // port there, with a warning naming the address asked for and the one used. An explicit
  // address that is taken stays an error (docs/configuration.md, metrics.listen).
  static absl::StatusOr<std::unique_ptr<StatusServer>> BindOrFallBack(const HostPort& address,
                                                                       bool explicit_address,
                                                                       Logger& logger);
  ~StatusServer();

  absl::Status Start(EventLoop& loop, StatusHandlers handlers);
  void Close();
  const std::string& bound_url() const { return bound_url_; }  // "http://127.0.0.1:9464"

 private:
  class Connection;
  StatusServer(UniqueFd fd, std::string bound_url);
  void Admit(UniqueFd fd);
  // Closes the oldest connection still waiting for its request (of `source` when given); false
  // if every connection is already answering.
  bool EvictOldestWaiting(const std::string* source);
  void Finished(Connection* connection);
  // AcceptLoop::Options::release_reserve: closes the reserve (true) so accept4 can use it.
  bool ReleaseReserve();

  static constexpr size_t kMaxConnections = 64;
  static constexpr size_t kMaxPerSource = 8;
  UniqueFd fd_;
  std::string bound_url_;
  EventLoop* loop_ = nullptr;
  StatusHandlers handlers_;
  absl::flat_hash_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::map<uint64_t, Connection*> by_age_;           // arrival order, oldest first
  absl::flat_hash_map<std::string, size_t> per_source_;
  uint64_t next_sequence_ = 0;
  std::unique_ptr<AcceptLoop> accept_;
  UniqueFd reserve_;  // re-opened when a connection closes
};

}  // namespace alknet::http
