// `alknet-agent proxy URL`: stdin/stdout bridged to one connection over a transport, so that a
// stock ssh reaches an agent's tls:// listener (ProxyCommand).
#pragma once

#include "server/common/log.h"
#include "server/config/upstream_schema.h"

namespace alknet::agent {

// Connects (through target.proxy if set), runs the transport's handshake (tls://: the
// certificate checked as an upstream's is), then relays until both directions end. Returns the
// exit code: 0 after a clean end, 1 when the connection or the handshake failed (one line on
// stderr says why) or an I/O error cut the relay.
int RunProxy(const config::UpstreamConfig& target, Logger& logger);

}  // namespace alknet::agent
