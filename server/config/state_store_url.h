// Where the admin API's state is kept (state.store): "file" (the state directory) or an etcd
// cluster, "etcd://host1:2379,host2:2379/prefix" (plain) or "etcds://..." (TLS).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/net_address.h"

namespace alknet::config {

struct StateStoreUrl {
  enum class Kind { kFile, kEtcd };
  Kind kind = Kind::kFile;
  bool tls = false;                 // etcds://
  std::vector<HostPort> endpoints;  // etcd members, in the order given
  std::string prefix;               // key prefix, "/alknet" by default; never ends in '/'

  std::string ToString() const;  // parses back to the same value
  bool operator==(const StateStoreUrl&) const = default;
};

// "file", or etcd[s]://host:port[,host:port...][/prefix]. Every endpoint needs a port (1..65535);
// the prefix is '/'-separated words of [A-Za-z0-9._-] (no empty, "." or ".." segment).
absl::StatusOr<StateStoreUrl> ParseStateStoreUrl(std::string_view text);

}  // namespace alknet::config
