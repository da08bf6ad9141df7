// Keys made by the real ssh-keygen, and the argv prefix for the stock OpenSSH client.
#include "tests/support/ssh_keys.h"

#include <gtest/gtest.h>

namespace alknet::testing {

TestKey MakeKey(const TempDir& dir, const std::string& name, const std::string& type) {
  TestKey key;
  key.private_path = dir.File(name);
  std::vector<std::string> argv = {"ssh-keygen", "-q", "-t", type, "-N", "", "-C", name, "-f",
                                   key.private_path};
  if (type == "rsa") argv.insert(argv.end(), {"-b", "2048"});
  CommandResult made = RunCommand(argv);
  EXPECT_EQ(made.exit_code, 0) << made.err;
  key.public_line = ReadFile(key.private_path + ".pub");
  while (!key.public_line.empty() && key.public_line.back() == '\n') key.public_line.pop_back();
  CommandResult listed = RunCommand({"ssh-keygen", "-l", "-E", "sha256", "-f", key.private_path + ".pub"});
  size_t start = listed.out.find("SHA256:");
  key.fingerprint = listed.out.substr(start, listed.out.find(' ', start) - start);
  return key;
}

std::vector<std::string> SshArgs(uint16_t port, const TestKey& key) {
  return {"ssh",
          "-F", "/dev/null",
          "-o", "StrictHostKeyChecking=no",
          "-o", "UserKnownHostsFile=/dev/null",
          "-o", "GlobalKnownHostsFile=/dev/null",
          "-o", "LogLevel=ERROR",
          "-o", "BatchMode=yes",
          "-o", "IdentitiesOnly=yes",
          "-o", "IdentityAgent=none",
          "-o", "ConnectTimeout=10",
          "-o", "ExitOnForwardFailure=yes",
          "-p", std::to_string(port),
          "-i", key.private_path,
          "-l", "tester"};
}

std::unique_ptr<BackgroundProcess> StartSshForward(
    uint16_t agent_port, const TestKey& key, const std::string& flag,
    const std::function<std::string(uint16_t)>& spec_for, const std::string& log_dir,
    std::string_view name, uint16_t* local, const std::vector<std::string>& ssh_options) {
  std::string why;
  auto ssh = StartListening(
      [&](uint16_t port) {
        std::vector<std::string> argv = SshArgs(agent_port, key);
        argv.insert(argv.end(), ssh_options.begin(), ssh_options.end());
        argv.insert(argv.end(), {"-N", flag, spec_for(port), "127.0.0.1"});
        return argv;
      },
      log_dir, name, local, &why);
  EXPECT_NE(ssh, nullptr) << "ssh " << flag << " never listened on its own port:\n" << why;
  return ssh;
}

std::unique_ptr<BackgroundProcess> StartLocalForward(uint16_t agent_port, const TestKey& key,
                                                     uint16_t target_port, const std::string& log_dir,
                                                     std::string_view name, uint16_t* local,
                                                     const std::vector<std::string>& ssh_options) {
  return StartSshForward(
      agent_port, key, "-L",
      [&](uint16_t port) {
        return std::to_string(port) + ":127.0.0.1:" + std::to_string(target_port);
      },
      log_dir, name, local, ssh_options);
}

FarAgent StartFarAgent(const TempDir& dir, const TestKey& key) {
  FarAgent far;
  WriteFile(dir.File("authorized_keys"), key.public_line + "\n");
  far.agent = std::make_unique<AgentProcess>(
      dir, std::vector<std::string>{"--authorized-keys", dir.File("authorized_keys")});
  const std::string log = far.agent->Log();
  const size_t at = log.find("fingerprint=SHA256:");
  if (far.agent->port() == 0 || at == std::string::npos) {
    ADD_FAILURE() << "the far agent did not start:\n" << log;
    far.agent.reset();
    return far;
  }
  far.host_fingerprint = log.substr(at + 12, 50);
  return far;
}

std::string UpstreamYaml(const std::string& name, const FarAgent& far, const TestKey& key) {
  return "upstreams:\n"
         "  - name: " + name + "\n"
         "    server: tcp://" + Loopback(far.agent->port()) + "\n"
         "    identity: " + key.private_path + "\n"
         "    host_key_fingerprint: " + far.host_fingerprint + "\n";
}

}  // namespace alknet::testing
