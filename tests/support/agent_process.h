// Runs real programs for interop tests: the alknet-agent binary, ssh, curl; temp dirs; free ports.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/test_ports.h"

namespace alknet::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, std::string_view contents, int mode = 0600);
std::string ReadFile(const std::string& path);

struct CommandResult {
  int exit_code = -1;  // 128+signal when killed
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv to completion with `input` on stdin; kills it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv, std::string_view input = "",
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A child process running in the background; killed (SIGKILL) and reaped on destruction.
// stdout/stderr go to files inside `log_dir` so they can be read while it runs.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::string& log_dir,
                    std::string_view name, bool stdin_pipe = false);
  ~BackgroundProcess();
  pid_t pid() const { return pid_; }
  std::string Stdout() const;
  std::string Stderr() const;
  void Signal(int signal_number);
  // Waits for exit; the exit code (128+signal if killed) or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool running();
  int stdin_fd() const { return stdin_fd_; }

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  std::optional<int> exit_code_;
  std::string stdout_path_;
  std::string stderr_path_;
};

// The alknet-agent binary under test with its own state dir, listening on an ephemeral port.
class AgentProcess {
 public:
  // Starts the agent with --state-dir, --listen tcp://127.0.0.1:0 and `extra_args`; waits until it
  // logs the bound address (or fails the test).
  AgentProcess(const TempDir& dir, std::vector<std::string> extra_args = {});
  uint16_t port() const { return port_; }
  std::string Log() const { return process_->Stderr(); }
  // Polls the log until it contains `needle`.
  bool WaitForLog(std::string_view needle,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  BackgroundProcess& process() { return *process_; }
  long RssKb() const;

 private:
  std::unique_ptr<BackgroundProcess> process_;
  uint16_t port_ = 0;
};

// Connects to 127.0.0.1:port (optionally from `source_ip`); -1 on failure.
int ConnectTcp(uint16_t port, const char* source_ip = nullptr);

// GET `path` from the HTTP server at `url` ("http://127.0.0.1:PORT"): the response's status
// line ("HTTP/1.1 200 OK"), or "" when nothing accepts the connection.
std::string HttpStatusLine(const std::string& url, const std::string& path);
// "127.0.0.1:port".
std::string Loopback(uint16_t port);
// The value after `key` in a log ("sha256=AB:..." -> "AB:..."), up to the next space or newline;
// "" without `key`.
std::string LogValue(const std::string& log, const std::string& key);
// How many times `needle` occurs in `text` (overlapping ones too): log lines of one kind.
int CountOccurrences(std::string_view text, std::string_view needle);
// The port of the agent's first "listening address=SCHEME://127.0.0.1:PORT" line; 0 without one.
uint16_t ListeningPort(const std::string& log, std::string_view scheme);
// curl through a SOCKS5 proxy on 127.0.0.1:socks, the name resolved by the proxy's far side.
CommandResult CurlThroughSocks(uint16_t socks, const std::string& url);
// True if `name` is on PATH (for tests that skip when an optional peer is missing).
bool HaveProgram(const std::string& name);

}  // namespace alknet::testing
