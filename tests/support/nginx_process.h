// A real Debian nginx on loopback, the reference for the stealth answers and the TLS handshake:
// Debian 12's nginx.conf TLS lines, one default TLS server that answers 404 everywhere.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tests/support/agent_process.h"

namespace alknet::testing {

struct NginxOptions {
  std::string cert;  // PEM certificate and key; empty: a fresh self-signed EC P-256 pair
  std::string key;
  int timeout_seconds = 60;  // client_header_timeout and keepalive_timeout
};

// Starts nginx (if installed) under dir/nginx on a picked port; ok() is false when nginx is
// missing (and a failure is recorded when it is installed but did not start).
class NginxProcess {
 public:
  NginxProcess(const TempDir& dir, const NginxOptions& options);
  bool ok() const { return port_ != 0; }
  uint16_t port() const { return port_; }

 private:
  std::unique_ptr<BackgroundProcess> process_;
  uint16_t port_ = 0;
};

// One line for GTEST_SKIP when nginx is not installed.
inline constexpr const char* kNoNginx =
    "nginx is not installed (scripts/install-deps.sh --test installs it); the stealth answers "
    "cannot be compared with the real thing";

}  // namespace alknet::testing
