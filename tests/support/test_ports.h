// Loopback ports for programs that cannot bind port 0 themselves (ssh -L/-D/-R, proxies), picked
// so that concurrent tests never share one, and checks that the intended program owns a listener.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace alknet::testing {

class BackgroundProcess;

// A loopback TCP port that nothing listens on, outside the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), so no socket bound to port 0 and no outgoing
// connection can take it, and reserved for this test process through a lock file under
// $TMPDIR/alknet-test-ports/ that every other test process (C++ or Python) also takes.
uint16_t PickFreePort();
// Polls until 127.0.0.1:port accepts a connection.
bool WaitForPort(uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
// True if process `pid` holds the listener that a connection to 127.0.0.1:port reaches
// (bound to 127.0.0.1, 0.0.0.0 or dual-stack ::).
bool ListensOn(pid_t pid, uint16_t port);
// The local addresses ("127.0.0.1", "0.0.0.0", "::", ...) of every TCP listener on `port` that
// process `pid` holds, read from /proc/net/tcp{,6}: what the socket is really bound to.
std::vector<std::string> ListenAddresses(pid_t pid, uint16_t port);
// Polls until `process` itself listens on `port`; false at once if it exits first.
bool WaitForListener(BackgroundProcess& process, uint16_t port,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Starts the program argv_for(port) describes on a picked port and waits until that program
// listens on it; a program that could not bind (ssh with ExitOnForwardFailure=yes exits) is
// retried on another port, up to 5 times. Returns the running process (nullptr after 5 failed
// tries, with the reasons in *why) and the port it listens on in *port.
std::unique_ptr<BackgroundProcess> StartListening(
    const std::function<std::vector<std::string>(uint16_t)>& argv_for, const std::string& log_dir,
    std::string_view name, uint16_t* port, std::string* why = nullptr,
    std::chrono::milliseconds timeout = std::chrono::seconds(10));

// microsocks (a SOCKS5 proxy nobody here wrote) on a picked loopback port; its stderr logs each
// connection it carries ("client[N] 127.0.0.1: connected to HOST:PORT").
std::unique_ptr<BackgroundProcess> StartMicrosocks(const std::string& log_dir, uint16_t* port);

}  // namespace alknet::testing
