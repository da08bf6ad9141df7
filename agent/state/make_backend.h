// Builds the state backend that state.store names: the state file, or etcd with its local copy.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "agent/state/state_backend.h"
#include "agent/state/state_store.h"
#include "server/common/log.h"
#include "server/config/config.h"

namespace alknet::state {

// file: a FileStateBackend for config.state_dir (`sync_directory` its test seam, may be null).
// etcd[s]://: an EtcdStateBackend whose local copy is <state_dir>/etcd-state.pb and whose lock is
// the state directory's. Unreadable TLS files and unresolvable endpoints are errors here.
absl::StatusOr<std::unique_ptr<StateBackend>> MakeStateBackend(const config::AgentConfig& config,
                                                               Logger& logger,
                                                               DirectorySync sync_directory = nullptr);

}  // namespace alknet::state
