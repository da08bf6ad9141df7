// systemd's service notification protocol (sd_notify(3)): datagrams to $NOTIFY_SOCKET saying
// READY=1, RELOADING=1, STOPPING=1. Without the variable (not under Type=notify) it does nothing.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace alknet::agent {

class ServiceNotifier {
 public:
  // Reads $NOTIFY_SOCKET ("/path" or "@abstract"); leaves it set so that a binary upgrade's
  // new process (a child) can report its own MAINPID and readiness (the unit says
  // NotifyAccess=all).
  static ServiceNotifier FromEnvironment();
  explicit ServiceNotifier(std::string socket_path) : socket_path_(std::move(socket_path)) {}

  bool enabled() const { return !socket_path_.empty(); }
  // Sends one message ("READY=1\nSTATUS=..."); OK when disabled.
  absl::Status Notify(std::string_view message) const;

  // The messages the agent sends: serving (with its pid, which after a binary upgrade is the
  // new main pid), reloading on SIGHUP (with CLOCK_MONOTONIC in µs, as systemd 253+ wants for
  // Type=notify-reload), stopping on SIGTERM.
  absl::Status Ready(std::string_view status) const;
  absl::Status Reloading() const;
  absl::Status Stopping() const;

 private:
  std::string socket_path_;
};

}  // namespace alknet::agent
