// `alknet-agent health`: asks a running agent's /healthz over its metrics listener.
#include "agent/health_check.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"
#include "server/common/unique_fd.h"

namespace alknet::agent {
namespace {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline`, at least 0.
int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

absl::Status WaitFor(int fd, short events, Clock::time_point deadline, std::string_view doing) {
  pollfd entry{fd, events, 0};
  int ready = poll(&entry, 1, MillisLeft(deadline));
  if (ready < 0) return ErrnoStatus(std::string(doing), errno);
  if (ready == 0) return absl::UnavailableError(absl::StrCat(Sv(doing), ": timed out"));
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckHealth(const HostPort& metrics_listen, absl::Duration timeout) {
  std::string host = metrics_listen.host;
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  std::string target = HostPort{host, metrics_listen.port}.ToString();
  Clock::time_point deadline = Clock::now() + absl::ToChronoMilliseconds(timeout);

  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port = std::to_string(metrics_listen.port);
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("resolve ", target, ": ", gai_strerror(rc)));
  }
  UniqueFd fd(socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int connected = fd.get() < 0 ? -1 : connect(fd.get(), found->ai_addr, found->ai_addrlen);
  int connect_errno = errno;
  freeaddrinfo(found);
  if (fd.get() < 0) return ErrnoStatus("socket", connect_errno);
  if (connected != 0 && connect_errno != EINPROGRESS) {
    return ErrnoStatus(absl::StrCat("connect ", target), connect_errno);
  }
  if (absl::Status ready = WaitFor(fd.get(), POLLOUT, deadline, absl::StrCat("connect ", target));
      !ready.ok()) {
    return ready;
  }
  int error = 0;
  socklen_t length = sizeof(error);
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
  if (error != 0) return ErrnoStatus(absl::StrCat("connect ", target), error);

  std::string request = absl::StrCat("GET /healthz HTTP/1.0\r\nHost: ", target, "\r\n\r\n");
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return ErrnoStatus(absl::StrCat("send to ", target), errno);
  }
  // The status line is all we need: "HTTP/1.x 200 ...".
  std::string reply;
  char buffer[512];
  while (reply.find('\n') == std::string::npos && reply.size() < 4096) {
    if (absl::Status ready = WaitFor(fd.get(), POLLIN, deadline, absl::StrCat("GET /healthz on ", target));
        !ready.ok()) {
      return ready;
    }
    ssize_t n = recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("read from ", target), errno);
    if (n == 0) break;
    reply.append(buffer, static_cast<size_t>(n));
  }
  std::string status_line = reply.substr(0, reply.find_first_of("\r\n"));
  if (absl::StartsWith(status_line, "HTTP/1.") && status_line.size() >= 12 &&
      status_line.compare(8, 4, " 200") == 0) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat(
      "GET /healthz on ", target, " answered '",
      status_line.empty() ? std::string("nothing") : status_line.substr(0, 80), "'"));
}

}  // namespace alknet::agent
