// The new process's side of a binary upgrade: the control socket's conversation.
#include "agent/upgrade/upgrade_handoff.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/upgrade/binary_upgrade.h"

namespace alknet::agent {


std::optional<UpgradeHandoff> UpgradeHandoff::FromEnvironment() {
  const char* value = std::getenv(kUpgradeFdVariable);
  if (value == nullptr) return std::nullopt;
  std::vector<std::string> parts = absl::StrSplit(value, ',');
  unsetenv(kUpgradeFdVariable);
  int control = -1;
  int err = -1;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &control) ||
      !absl::SimpleAtoi(parts[1], &err) || ::fcntl(control, F_GETFD) < 0 ||
      ::fcntl(err, F_GETFD) < 0) {
    return std::nullopt;
  }
  ::fcntl(control, F_SETFD, FD_CLOEXEC);
  ::fcntl(err, F_SETFD, FD_CLOEXEC);
  return UpgradeHandoff(UniqueFd(control), UniqueFd(err));
}

absl::Status UpgradeHandoff::ConfigOkAwaitRelease(absl::Duration timeout) {
  WriteAll(control_.get(), "config-ok\n");
  auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  std::string received;
  while (received.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return absl::DeadlineExceededError("upgrade: the old process did not release the state directory");
    }
    pollfd fd{control_.get(), POLLIN, 0};
    if (::poll(&fd, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[64];
    ssize_t n = ::read(control_.get(), chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::AbortedError("upgrade: the old process went away");
    received.append(chunk, static_cast<size_t>(n));
    if (received.size() > 256) break;
  }
  if (received.rfind("released\n", 0) != 0) {
    return absl::AbortedError("upgrade: unexpected answer from the old process");
  }
  return absl::OkStatus();
}

void UpgradeHandoff::Ready() {
  if (stderr_.valid()) {
    ::dup2(stderr_.get(), STDERR_FILENO);
    stderr_.reset();
  }
  WriteAll(control_.get(), absl::StrCat("ready ", ::getpid(), "\n"));
  control_.reset();
}

void UpgradeHandoff::Failed(std::string_view error) {
  std::string line(error);
  for (char& c : line) {
    if (c == '\n') c = ' ';
  }
  WriteAll(control_.get(), absl::StrCat("error ", line, "\n"));
}

}  // namespace alknet::agent
