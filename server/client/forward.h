// A forward of the client role (-D, -L, -R) as the admin API and the upstream see it: its
// definition, and its live status shared with the sessions and relays that serve it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "server/config/config.h"
#include "server/ssh/channel_relay.h"

namespace alknet {

enum class ForwardKind { kDynamic, kLocal, kRemote };
std::string_view ForwardKindName(ForwardKind kind);  // "dynamic", "local", "remote"

struct ForwardDef {
  std::string id;            // unique across upstreams; config forwards: "<upstream>/L0" etc.
  ForwardKind kind = ForwardKind::kLocal;
  config::ForwardSpec spec;  // dynamic: bind_host and bind_port only
  bool from_config = false;  // config forwards cannot be removed through the API
};

// Mutated on the client loop only (by the upstream, its session and its relays).
struct ForwardStatus {
  std::string state;         // "active", "waiting for upstream", "requesting", "failed: ..."
  std::string last_error;    // the last failure (bind, server refusal, a channel's reason)
  uint64_t connections = 0;  // connections carried since the forward was added
  RelayCounters bytes;       // to_target: out of the tunnel into local sockets; from_target: in
};

// A copy for callers off the loop.
struct ForwardSnapshot {
  std::string upstream;
  ForwardDef def;
  HostPort bound;  // the listen address with port 0 resolved (remote: once the server granted it)
  ForwardStatus status;
};

}  // namespace alknet
