// The test harness itself: picked ports cannot collide across concurrent tests, and a forward is
// only trusted once the program we started owns its listener (the cause of a 190/200 flake).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "tests/support/agent_process.h"
#include "tests/support/ssh_keys.h"
#include "tests/support/test_servers.h"

namespace alknet::testing {
namespace {

int ListenOn(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 || listen(fd, 8) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// The flake: test A picked a port, test B's agent (bound to port 0) was given the same port, A's
// `ssh -L` could not bind 127.0.0.1 (only ::1), and A's connections went to B's agent. A bare
// "something accepts on the port" check passes in that state; the owner check does not.
TEST(HarnessTest, ForeignListenerOnTheForwardPortIsNotTakenForSsh) {
  TempDir dir;
  TestKey key = MakeKey(dir, "user_key");
  WriteFile(dir.File("authorized_keys"), key.public_line + "\n");
  AgentProcess agent(dir, {"--authorized-keys", dir.File("authorized_keys")});
  EchoServer echo;
  uint16_t port = PickFreePort();
  int foreign = ListenOn(port);
  ASSERT_GE(foreign, 0);
  std::vector<std::string> argv = SshArgs(agent.port(), key);
  argv.insert(argv.end(), {"-N", "-L", std::to_string(port) + ":127.0.0.1:" + std::to_string(echo.port()),
                           "127.0.0.1"});
  BackgroundProcess ssh(argv, dir.path(), "ssh_collides");
  EXPECT_TRUE(WaitForPort(port));  // fooled: the foreign listener accepts
  // Not fooled. ssh binds "localhost", i.e. 127.0.0.1 and ::1: the first fails, the second
  // succeeds, so ExitOnForwardFailure does not fire and ssh stays up, listening on ::1 only,
  // while every connection to 127.0.0.1 reaches the other program.
  EXPECT_FALSE(WaitForListener(ssh, port, std::chrono::seconds(3)));
  close(foreign);

  // StartLocalForward only returns an ssh that holds its own port.
  uint16_t local = 0;
  auto forward = StartLocalForward(agent.port(), key, echo.port(), dir.path(), "ssh_own", &local);
  ASSERT_NE(forward, nullptr);
  EXPECT_TRUE(ListensOn(forward->pid(), local));
  int fd = ConnectTcp(local);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(EchoRoundTripProblem(fd, PatternBytes(64 << 10, 1)), "");
  close(fd);
}

TEST(HarnessTest, PickedPortsAreOutsideTheEphemeralRangeAndHeldAgainstOtherProcesses) {
  int low = 0, high = 0;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low >> high;
  std::set<uint16_t> picked;
  std::string list;
  for (int i = 0; i < 50; ++i) {
    uint16_t port = PickFreePort();
    EXPECT_TRUE(port < low || port > high) << port << " is in the ephemeral range " << low << "-" << high;
    picked.insert(port);
    list += (list.empty() ? "" : ",") + std::to_string(port);
  }
  EXPECT_EQ(picked.size(), 50u);
  // Another process (the Python tests' picker takes the same locks) cannot reserve them.
  std::string script =
      "import sys; sys.path.insert(0, '" ALKNET_SOURCE_DIR "/tests/support')\n"
      "import fcntl, os, test_ports\n"
      "d = test_ports._lock_dir(); free = []\n"
      "for p in [" + list + "]:\n"
      "    f = open(os.path.join(d, str(p)), 'a+')\n"
      "    try:\n"
      "        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); free.append(p)\n"
      "    except OSError:\n"
      "        pass\n"
      "print(len(free))\n";
  CommandResult python = RunCommand({"python3", "-c", script});
  ASSERT_EQ(python.exit_code, 0) << python.err;
  EXPECT_EQ(python.out, "0\n") << "ports another process could still reserve";
}

}  // namespace
}  // namespace alknet::testing
