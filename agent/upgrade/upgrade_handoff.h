// The new process's side of a binary upgrade: reports over the control socket the old process
// passed (ALKNET_UPGRADE_FD) and waits for it to release the state directory.
#pragma once

#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/common/unique_fd.h"

namespace alknet::agent {

class UpgradeHandoff {
 public:
  // From ALKNET_UPGRADE_FD (unset afterwards): nullopt when this is a normal start. The value
  // is "<control fd>,<stderr fd>": the control socket and the old process's own stderr.
  static std::optional<UpgradeHandoff> FromEnvironment();

  // Config read and sockets adopted; blocks until the old process released the state
  // directory (or fails after `timeout`).
  absl::Status ConfigOkAwaitRelease(absl::Duration timeout);
  // Serving: stderr moves from the old process's pipe to its original stderr, then "ready".
  void Ready();
  // Startup failed: the reason travels to the old process (it also reads stderr).
  void Failed(std::string_view error);

 private:
  UpgradeHandoff(UniqueFd control, UniqueFd stderr_fd)
      : control_(std::move(control)), stderr_(std::move(stderr_fd)) {}
  UniqueFd control_;
  UniqueFd stderr_;
};

}  // namespace alknet::agent
