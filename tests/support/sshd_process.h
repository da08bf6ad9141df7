// A private OpenSSH sshd on loopback for interop tests: its own host key, config and pid file in
// a temp dir, a free port, one authorized key, forwarding allowed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"

namespace alknet::testing {

class SshdProcess {
 public:
  // `authorized_line` is written to the AuthorizedKeysFile as is (options allowed). Fails the
  // test if sshd does not accept connections.
  SshdProcess(const TempDir& dir, const std::string& authorized_line, uint16_t port = 0);
  uint16_t port() const { return port_; }
  std::string Log() const { return process_->Stderr(); }
  // SHA256 fingerprint of sshd's host key and its known_hosts line for [127.0.0.1]:port.
  const std::string& host_key_fingerprint() const { return fingerprint_; }
  std::string KnownHostsLine() const;

 private:
  std::unique_ptr<BackgroundProcess> process_;
  uint16_t port_ = 0;
  std::string host_public_;
  std::string fingerprint_;
};

// The alknet-agent `connect` command in the background; waits until its listeners are bound
// (port 0 is resolved from its log).
class ClientProcess {
 public:
  ClientProcess(const TempDir& dir, std::vector<std::string> args, std::string name = "client");
  std::string Log() const { return process_->Stderr(); }
  bool WaitForLog(std::string_view needle,
                  std::chrono::milliseconds timeout = std::chrono::seconds(15)) const;
  // Occurrences of `needle` in the log.
  int CountInLog(std::string_view needle) const;
  uint16_t socks_port() const { return socks_port_; }
  // Bound -L ports, in command-line order.
  const std::vector<uint16_t>& local_ports() const { return local_ports_; }
  BackgroundProcess& process() { return *process_; }

 private:
  std::unique_ptr<BackgroundProcess> process_;
  uint16_t socks_port_ = 0;
  std::vector<uint16_t> local_ports_;
};

}  // namespace alknet::testing
