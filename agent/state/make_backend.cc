// state.store -> the StateBackend the admin service stores through.
#include "agent/state/make_backend.h"

#include "agent/state/etcd_backend.h"
#include "agent/state/file_backend.h"

namespace alknet::state {

absl::StatusOr<std::unique_ptr<StateBackend>> MakeStateBackend(const config::AgentConfig& config,
                                                               Logger& logger,
                                                               DirectorySync sync_directory) {
  auto local = std::make_unique<FileStateBackend>(config.state_dir, std::move(sync_directory));
  if (config.state.store.kind == config::StateStoreUrl::Kind::kFile) return local;
  EtcdOptions options;
  options.url = config.state.store;
  options.ca_file = config.state.etcd_ca;
  options.cert_file = config.state.etcd_cert;
  options.key_file = config.state.etcd_key;
  absl::StatusOr<std::unique_ptr<EtcdClient>> client = EtcdClient::Create(options);
  if (!client.ok()) return client.status();
  std::string copy = config.state_dir + "/etcd-state.pb";
  return std::unique_ptr<StateBackend>(std::make_unique<EtcdStateBackend>(
      *std::move(client), std::move(options), std::move(local), std::move(copy), logger));
}

}  // namespace alknet::state
