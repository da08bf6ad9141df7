// A small client of etcd's own v3 gRPC API (KV, Watch, Lease), generated from etcd's .proto files:
// what the etcd state backend needs, with grpc::Status turned into absl::Status in one place.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/config/state_store_url.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace alknet::state {

struct EtcdOptions {
  config::StateStoreUrl url;  // kind kEtcd: endpoints and TLS
  std::string ca_file;        // etcds://: PEM roots (empty: the system's)
  std::string cert_file;      // etcds://: client certificate (optional)
  std::string key_file;
  absl::Duration call_timeout = absl::Seconds(3);
};

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
};

// One change seen by a watch.
struct EtcdEvent {
  bool deleted = false;  // DELETE (else PUT)
  EtcdKeyValue kv;
};

// Lets another thread end a running Watch (it then returns CANCELLED).
class EtcdWatchCancel {
 public:
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class EtcdClient;
  void Attach(grpc::ClientContext* context);
  absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::atomic<bool> cancelled_{false};
};

class EtcdClient {
 public:
  // Reads the TLS files and builds the channel (no connection yet). Endpoints that are names
  // are resolved now.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(const EtcdOptions& options);
  ~EtcdClient();

  // The value of `key`, nullopt if it does not exist; *store_revision: the store's revision then.
  absl::StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& key, int64_t* store_revision);
  // Every key under `prefix`.
  absl::StatusOr<std::vector<EtcdKeyValue>> List(const std::string& prefix);
  // Stores key = value if the key's mod revision is still `expected_mod_revision` (0: only if the
  // key does not exist). The new mod revision; ABORTED if the comparison failed.
  absl::StatusOr<int64_t> PutIf(const std::string& key, const std::string& value,
                                int64_t expected_mod_revision);
  // Unconditional put, attached to `lease` (0: none).
  absl::Status Put(const std::string& key, const std::string& value, int64_t lease);
  absl::Status Delete(const std::string& key);

  // A lease of `ttl`; its id.
  absl::StatusOr<int64_t> GrantLease(absl::Duration ttl);
  // Renews `lease` once; NOT_FOUND when it expired.
  absl::Status KeepAlive(int64_t lease);
  absl::Status RevokeLease(int64_t lease);

  // Watches `key` (or every key under it when `prefix`) from `start_revision`: `on_created` once
  // etcd has accepted the watch, then `on_event` for each change, until the stream ends; returns
  // why (UNAVAILABLE and such when etcd went away, OUT_OF_RANGE when start_revision was
  // compacted, CANCELLED by `cancel`).
  absl::Status Watch(const std::string& key, bool prefix, int64_t start_revision,
                     const std::function<void()>& on_created,
                     const std::function<void(const EtcdEvent&)>& on_event,
                     EtcdWatchCancel& cancel);

 private:
  explicit EtcdClient(std::shared_ptr<grpc::Channel> channel, absl::Duration call_timeout);
  struct Stubs;
  std::shared_ptr<grpc::Channel> channel_;
  absl::Duration call_timeout_;
  std::unique_ptr<Stubs> stubs_;
};

}  // namespace alknet::state
