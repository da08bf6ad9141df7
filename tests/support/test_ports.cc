// Picks loopback ports no concurrent test can share and checks who listens on them.
#include "tests/support/test_ports.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/agent_process.h"

namespace alknet::testing {
namespace {

using Clock = std::chrono::steady_clock;

// The ports PickFreePort may hand out: below the kernel's ephemeral range, above 10000.
std::pair<int, int> PickRange() {
  int low = 32768;
  int high = 60999;
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  range >> low >> high;
  if (low > 12000) return {10000, low - 1};
  // An unusual ephemeral range starting low: use the ports above it instead.
  return {high + 1, 65535};
}

std::string LockDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/alknet-test-ports";
  if (mkdir(dir.c_str(), 01777) == 0) chmod(dir.c_str(), 01777);
  return dir;
}

// Takes the port's lock file for the rest of this process's life (the kernel drops the lock when
// the process ends). False if another test process holds it.
bool ReservePort(const std::string& dir, int port) {
  std::string path = dir + "/" + std::to_string(port);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return false;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return false;
  }
  return true;  // fd stays open on purpose: it is the reservation
}

bool CanBind(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return ok;
}

// One listening TCP socket from /proc/net/tcp{,6}: local address (kernel hex), port, inode.
struct ProcListener {
  std::string address;
  uint16_t port = 0;
  std::string inode;
};

std::vector<ProcListener> Listeners() {
  std::vector<ProcListener> found;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
          inode;
      size_t colon = local.rfind(':');
      if (colon == std::string::npos || state != "0A") continue;
      found.push_back({local.substr(0, colon),
                       static_cast<uint16_t>(std::strtoul(local.c_str() + colon + 1, nullptr, 16)),
                       inode});
    }
  }
  return found;
}

// The kernel's hex address as text: 8 hex digits are an IPv4 address in host byte order
// ("0100007F" on little-endian is 127.0.0.1), 32 are an IPv6 address as four such words.
std::string AddressText(const std::string& hex) {
  auto word = [&](size_t at) {
    uint32_t value = static_cast<uint32_t>(std::strtoul(hex.substr(at, 8).c_str(), nullptr, 16));
    unsigned char bytes[4];
    std::memcpy(bytes, &value, sizeof(bytes));  // back to network order, as the kernel printed it
    return std::array<unsigned char, 4>{bytes[0], bytes[1], bytes[2], bytes[3]};
  };
  char text[INET6_ADDRSTRLEN] = {};
  if (hex.size() == 8) {
    std::array<unsigned char, 4> b = word(0);
    inet_ntop(AF_INET, b.data(), text, sizeof(text));
  } else if (hex.size() == 32) {
    unsigned char b[16];
    for (size_t i = 0; i < 4; ++i) std::memcpy(b + 4 * i, word(8 * i).data(), 4);
    inet_ntop(AF_INET6, b, text, sizeof(text));
  } else {
    return "?" + hex;
  }
  return text;
}

// Inodes of the sockets that take connections to 127.0.0.1:port: listeners on 127.0.0.1 or
// 0.0.0.0 (/proc/net/tcp) and on :: (/proc/net/tcp6, dual-stack). A listener on ::1 alone does
// not count: `ssh -L` binds ::1 even when 127.0.0.1 is taken by another program.
std::set<std::string> ListeningInodes(uint16_t port) {
  std::set<std::string> inodes;
  for (const ProcListener& listener : Listeners()) {
    bool reaches_loopback_v4 = listener.address == "0100007F" ||
                               listener.address.find_first_not_of('0') == std::string::npos;
    if (reaches_loopback_v4 && listener.port == port) inodes.insert(listener.inode);
  }
  return inodes;
}

// Inodes of the sockets process `pid` holds.
std::set<std::string> SocketInodes(pid_t pid) {
  std::set<std::string> inodes;
  std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* dir = opendir(fd_dir.c_str());
  if (dir == nullptr) return inodes;
  while (dirent* entry = readdir(dir)) {
    char target[64] = {};
    std::string link = fd_dir + "/" + entry->d_name;
    ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    std::string_view text(target, static_cast<size_t>(n));
    if (text.starts_with("socket:[") && text.ends_with("]")) {
      inodes.insert(std::string(text.substr(8, text.size() - 9)));
    }
  }
  closedir(dir);
  return inodes;
}

std::string ExecutablePath(pid_t pid) {
  char path[4096];
  std::string link = "/proc/" + std::to_string(pid) + "/exe";
  ssize_t n = readlink(link.c_str(), path, sizeof(path) - 1);
  return n > 0 ? std::string(path, static_cast<size_t>(n)) : std::string();
}

}  // namespace

uint16_t PickFreePort() {
  static std::mt19937 random(std::random_device{}());
  auto [low, high] = PickRange();
  std::string dir = LockDir();
  std::uniform_int_distribution<int> pick(low, high);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    int port = pick(random);
    if (ReservePort(dir, port) && CanBind(port)) return static_cast<uint16_t>(port);
  }
  ADD_FAILURE() << "no free loopback port in " << low << "-" << high;
  return 0;
}

bool WaitForPort(uint16_t port, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    int fd = ConnectTcp(port);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool ListensOn(pid_t pid, uint16_t port) {
  std::set<std::string> inodes = ListeningInodes(port);
  if (inodes.empty()) return false;
  for (const std::string& inode : SocketInodes(pid)) {
    if (inodes.count(inode) > 0) return true;
  }
  return false;
}

std::vector<std::string> ListenAddresses(pid_t pid, uint16_t port) {
  std::set<std::string> held = SocketInodes(pid);
  std::vector<std::string> addresses;
  for (const ProcListener& listener : Listeners()) {
    if (listener.port == port && held.count(listener.inode) > 0) {
      addresses.push_back(AddressText(listener.address));
    }
  }
  return addresses;
}

bool WaitForListener(BackgroundProcess& process, uint16_t port, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string our_binary = ExecutablePath(getpid());
  while (Clock::now() < deadline) {
    if (!process.running()) return false;
    // Between fork and exec the child still holds copies of this process's sockets (close-on-
    // exec closes them only at exec): ask only once it runs its own program.
    if (ExecutablePath(process.pid()) != our_binary && ListensOn(process.pid(), port)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::unique_ptr<BackgroundProcess> StartListening(
    const std::function<std::vector<std::string>(uint16_t)>& argv_for, const std::string& log_dir,
    std::string_view name, uint16_t* port, std::string* why, std::chrono::milliseconds timeout) {
  std::string reasons;
  for (int attempt = 1; attempt <= 5; ++attempt) {
    *port = PickFreePort();
    auto process = std::make_unique<BackgroundProcess>(
        argv_for(*port), log_dir, std::string(name) + "_" + std::to_string(attempt));
    if (WaitForListener(*process, *port, timeout)) return process;
    reasons += "attempt " + std::to_string(attempt) + " on port " + std::to_string(*port) + ": " +
               (process->running() ? "not listening after the timeout" : "exited") + "; stderr: " +
               process->Stderr() + "\n";
  }
  if (why != nullptr) *why = reasons;
  *port = 0;
  return nullptr;
}

std::unique_ptr<BackgroundProcess> StartMicrosocks(const std::string& log_dir, uint16_t* port) {
  return StartListening(
      [](uint16_t picked) {
        return std::vector<std::string>{"microsocks", "-i", "127.0.0.1", "-p", std::to_string(picked)};
      },
      log_dir, "microsocks", port);
}

}  // namespace alknet::testing
