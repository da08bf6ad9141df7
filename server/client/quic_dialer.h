// The quic:// dialer (ADR 0018): a connected UDP socket, a QUIC connection checked like tls://
// (pin, CA file plus name, or insecure), and its first stream as the SSH stream's plain fd.
#pragma once

#include "server/client/stream_dialer.h"

namespace alknet {

// The row of stream_dialer.cc's table for quic://.
const StreamDialer& QuicDialer();

}  // namespace alknet
