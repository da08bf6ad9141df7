// The old process's side of a binary upgrade: starts the binary now on disk with the listening
// sockets (LISTEN_FDS) and a control socket, and waits until it serves or fails.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/log.h"

namespace alknet::agent {

// Names the control socket's descriptor in the new process (accepted by the ALKNET_* layer
// without being a config field).
inline constexpr char kUpgradeFdVariable[] = "ALKNET_UPGRADE_FD";

// The executable's path as started (readlink /proc/self/exe at startup, before any replace:
// later it reads "... (deleted)"), and argv, to start the same command again.
struct UpgradeCommand {
  std::string executable;
  std::vector<std::string> argv;
};
// Call once early in main.
UpgradeCommand CaptureUpgradeCommand(int argc, const char* const* argv);

// Writes all of `text` to `fd` (the control socket, or stderr), retrying EINTR; gives up
// silently on an error: the other side's EOF is what either process acts on.
void WriteAll(int fd, std::string_view text);

struct UpgradeHooks {
  // The new process has a valid config and its sockets: release what it must own (the state
  // directory lock). Runs on the calling thread.
  std::function<void()> release;
  // It failed after release(): take them back.
  std::function<void()> retake;
};

// Starts the new process with `listen_fds` (descriptor, LISTEN_FDNAMES name) as fds 3, 4, ...
// and blocks until it reports ready (its pid) or fails: it exits, or
// says nothing for `timeout` (it is killed). Its stderr passes through this process's stderr
// line by line until it is ready (it then writes to this process's original stderr itself);
// on failure the error names its exit and its last stderr lines.
absl::StatusOr<pid_t> RunBinaryUpgrade(const UpgradeCommand& command,
                                       const std::vector<std::pair<int, std::string>>& listen_fds,
                                       const UpgradeHooks& hooks, absl::Duration timeout,
                                       Logger& logger);

}  // namespace alknet::agent
