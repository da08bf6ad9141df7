// A private OpenSSH sshd, and the agent's connect command, for interop tests.
#include "tests/support/sshd_process.h"

#include <sys/stat.h>

#include <cstdlib>
#include <thread>

#include <gtest/gtest.h>

namespace alknet::testing {

SshdProcess::SshdProcess(const TempDir& dir, const std::string& authorized_line, uint16_t port) {
  mkdir("/run/sshd", 0755);  // privilege separation directory
  std::string host_key = dir.File("sshd_host_ed25519_key");
  CommandResult made = RunCommand({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key});
  EXPECT_EQ(made.exit_code, 0) << made.err;
  host_public_ = ReadFile(host_key + ".pub");
  while (!host_public_.empty() && host_public_.back() == '\n') host_public_.pop_back();
  CommandResult listed = RunCommand({"ssh-keygen", "-l", "-E", "sha256", "-f", host_key + ".pub"});
  size_t start = listed.out.find("SHA256:");
  fingerprint_ = listed.out.substr(start, listed.out.find(' ', start) - start);
  WriteFile(dir.File("sshd_authorized_keys"), authorized_line + "\n");
  port_ = port != 0 ? port : PickFreePort();
  std::string config = "Port " + std::to_string(port_) +
                       "\nListenAddress 127.0.0.1\nHostKey " + host_key +
                       "\nAuthorizedKeysFile " + dir.File("sshd_authorized_keys") +
                       "\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no"
                       "\nStrictModes no\nPidFile " + dir.File("sshd.pid") +
                       "\nAllowTcpForwarding yes\nPermitRootLogin yes\nLogLevel VERBOSE\n";
  WriteFile(dir.File("sshd_config"), config);
  process_ = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", dir.File("sshd_config")},
      dir.path(), "sshd");
  EXPECT_TRUE(WaitForListener(*process_, port_)) << "sshd did not start: " << Log();
}

std::string SshdProcess::KnownHostsLine() const {
  // "ssh-ed25519 AAAA... comment" -> "[127.0.0.1]:port ssh-ed25519 AAAA..."
  std::string key = host_public_.substr(0, host_public_.rfind(' '));
  return "[127.0.0.1]:" + std::to_string(port_) + " " + key;
}

namespace {

uint16_t PortAfter(const std::string& log, const std::string& marker, size_t* from) {
  size_t at = log.find(marker, *from);
  if (at == std::string::npos) return 0;
  size_t address = log.find("address=", at);
  if (address == std::string::npos) return 0;
  size_t end = log.find('\n', address);
  std::string value = log.substr(address + 8, end - address - 8);
  *from = at + marker.size();
  return static_cast<uint16_t>(std::atoi(value.c_str() + value.rfind(':') + 1));
}

}  // namespace

ClientProcess::ClientProcess(const TempDir& dir, std::vector<std::string> args, std::string name) {
  std::vector<std::string> argv = {ALKNET_AGENT_BINARY, "connect", "--metrics-listen", "127.0.0.1:0"};
  argv.insert(argv.end(), args.begin(), args.end());
  bool wants_socks = false;
  size_t local_count = 0;
  for (const std::string& arg : args) {
    wants_socks |= arg == "--socks5";
    local_count += arg == "-L";
  }
  process_ = std::make_unique<BackgroundProcess>(argv, dir.path(), name);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string log = Log();
    size_t from = 0;
    socks_port_ = wants_socks ? PortAfter(log, "socks5 listening", &from) : 0;
    local_ports_.clear();
    from = 0;
    for (size_t i = 0; i < local_count; ++i) {
      uint16_t port = PortAfter(log, "local forward listening", &from);
      if (port == 0) break;
      local_ports_.push_back(port);
    }
    if ((!wants_socks || socks_port_ != 0) && local_ports_.size() == local_count) return;
    if (!process_->running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "client did not bind its listeners; log:\n" << Log();
}

bool ClientProcess::WaitForLog(std::string_view needle, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    if (Log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

int ClientProcess::CountInLog(std::string_view needle) const {
  return CountOccurrences(Log(), needle);
}

}  // namespace alknet::testing
