// Keys made by the real ssh-keygen, and the argv prefix for the stock OpenSSH client.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"

namespace alknet::testing {

struct TestKey {
  std::string private_path;
  std::string public_line;   // "ssh-ed25519 AAAA... comment"
  std::string fingerprint;   // "SHA256:..." as ssh-keygen -l prints it
};

// ssh-keygen -t <type> in `dir`; type "ed25519", "rsa", "ecdsa".
TestKey MakeKey(const TempDir& dir, const std::string& name, const std::string& type = "ed25519");

// ssh with host-key checking off (the agent's host key is fresh per test), batch mode, no
// config files, our key only: {"ssh", "-F", "/dev/null", ..., "-p", port, "-i", key}.
std::vector<std::string> SshArgs(uint16_t port, const TestKey& key);

// `ssh -N <flag> <spec_for(local)>` to 127.0.0.1:agent_port, where `local` is a picked port that
// this ssh itself listens on when the call returns (flag "-L" or "-D"; StartListening retries
// when ssh cannot bind). Sets *local; on failure adds a test failure and returns nullptr.
// `ssh_options` go before -N ("-o", "ProxyCommand=...").
std::unique_ptr<BackgroundProcess> StartSshForward(
    uint16_t agent_port, const TestKey& key, const std::string& flag,
    const std::function<std::string(uint16_t)>& spec_for, const std::string& log_dir,
    std::string_view name, uint16_t* local, const std::vector<std::string>& ssh_options = {});
// `ssh -N -L local:127.0.0.1:target_port`, as StartSshForward.
std::unique_ptr<BackgroundProcess> StartLocalForward(uint16_t agent_port, const TestKey& key,
                                                     uint16_t target_port, const std::string& log_dir,
                                                     std::string_view name, uint16_t* local,
                                                     const std::vector<std::string>& ssh_options = {});

// An agent that authorizes `key` alone (authorized_keys in `dir`): the far end a client role
// connects to. `agent` is null if it did not start (a test failure is added).
struct FarAgent {
  std::unique_ptr<AgentProcess> agent;
  std::string host_fingerprint;  // its host key, "SHA256:..."
};
FarAgent StartFarAgent(const TempDir& dir, const TestKey& key);

// The YAML of `upstreams:` with one upstream `name` reaching `far` with `key`, pinned to its host
// key; each line ends in a newline, so more fields of that upstream can follow at 4 spaces.
std::string UpstreamYaml(const std::string& name, const FarAgent& far, const TestKey& key);

}  // namespace alknet::testing
