// Opens outbound TCP connections for channels without blocking the loop.
#include "server/forward/outbound_connector.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

#include "server/common/errno_status.h"

namespace alknet {

ConnectFailure ClassifyConnectError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return ConnectFailure::kNone;
    case absl::StatusCode::kNotFound: return ConnectFailure::kUnknownHost;
    case absl::StatusCode::kDeadlineExceeded:
      return status.message().find("name resolution") != std::string_view::npos
                 ? ConnectFailure::kResolveTimeout
                 : ConnectFailure::kTimeout;
    case absl::StatusCode::kResourceExhausted:
      return status.message().find("pending name resolutions") != std::string_view::npos
                 ? ConnectFailure::kResolveQuota
                 : ConnectFailure::kResourceShortage;
    case absl::StatusCode::kPermissionDenied: return ConnectFailure::kPolicyDenied;
    case absl::StatusCode::kUnavailable:
      return status.message().find("refused") != std::string_view::npos ? ConnectFailure::kRefused
                                                                        : ConnectFailure::kUnreachable;
    default: return ConnectFailure::kOther;
  }
}

std::string_view ConnectFailureName(ConnectFailure failure) {
  switch (failure) {
    case ConnectFailure::kNone: return "none";
    case ConnectFailure::kUnknownHost: return "unknown-host";
    case ConnectFailure::kRefused: return "connect-refused";
    case ConnectFailure::kUnreachable: return "unreachable";
    case ConnectFailure::kTimeout: return "connect-timeout";
    case ConnectFailure::kResourceShortage: return "resource-shortage";
    case ConnectFailure::kOther: return "connect-failed";
    case ConnectFailure::kResolveTimeout: return "resolve-timeout";
    case ConnectFailure::kResolveQuota: return "too-many-pending-resolutions";
    case ConnectFailure::kPolicyDenied: return "forwarding-policy";
  }
  return "connect-failed";
}

std::unique_ptr<ConnectAttempt> OutboundConnector::Connect(const std::string& host, uint16_t port,
                                                            absl::Duration timeout,
                                                            ConnectCallback done,
                                                            ResolveOwner owner,
                                                            AddressFilter filter) {
  auto attempt = std::make_unique<ConnectAttempt>(loop_, timeout, std::move(done));
  attempt->SetFilter(std::move(filter));
  attempt->Begin(resolver_, host, port, std::move(owner));
  return attempt;
}

ConnectAttempt::ConnectAttempt(EventLoop& loop, absl::Duration timeout, ConnectCallback done)
    : loop_(loop), timeout_(timeout), done_(std::move(done)) {
  timer_ = loop_.AddTimer(timeout, [this] {
    timer_ = 0;
    Finish(absl::DeadlineExceededError(resolving_ ? "name resolution timed out"
                                                  : "connect timed out"));
  });
}

ConnectAttempt::~ConnectAttempt() {
  *cancelled_ = true;
  if (timer_ != 0) loop_.CancelTimer(timer_);
  if (socket_.valid()) loop_.Unwatch(socket_.get());
}

void ConnectAttempt::Begin(Resolver& resolver, const std::string& host, uint16_t port,
                           ResolveOwner owner) {
  // Always start from a posted task so `done` never runs before Connect() has returned.
  resolving_ = true;
  loop_.Post([this, &resolver, host, port, owner = std::move(owner), cancelled = cancelled_] {
    if (*cancelled) return;
    resolver.Resolve(
        host, port, loop_, cancelled,
        [this](absl::StatusOr<std::vector<ResolvedAddress>> addresses) {
          OnResolved(std::move(addresses));
        },
        owner, timeout_);
  });
}

void ConnectAttempt::OnResolved(absl::StatusOr<std::vector<ResolvedAddress>> addresses) {
  resolving_ = false;
  if (finished_) return;
  if (!addresses.ok()) {
    Finish(addresses.status());
    return;
  }
  addresses_ = *std::move(addresses);
  TryNext();
}

void ConnectAttempt::TryNext() {
  while (next_ < addresses_.size()) {
    const ResolvedAddress& address = addresses_[next_++];
    if (filter_ && !filter_(address)) continue;
    tried_ = true;
    UniqueFd fd(socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      last_error_ = ErrnoStatus("socket", errno);
      continue;
    }
    int rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&address.storage), address.length);
    if (rc == 0) {
      Finish(std::move(fd));
      return;
    }
    if (errno != EINPROGRESS) {
      last_error_ = ErrnoStatus("connect", errno);
      continue;
    }
    socket_ = std::move(fd);
    absl::Status watched = loop_.Watch(socket_.get(), EPOLLOUT, this);
    if (!watched.ok()) {
      socket_.reset();
      last_error_ = watched;
      continue;
    }
    return;
  }
  if (!tried_ && filter_ && !addresses_.empty()) {
    Finish(absl::PermissionDeniedError("the forwarding policy denies every resolved address"));
    return;
  }
  Finish(last_error_);
}

void ConnectAttempt::OnFdEvents(uint32_t events) {
  if (!socket_.valid() || finished_) return;
  int error = 0;
  socklen_t len = sizeof(error);
  if (getsockopt(socket_.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
  if (error == 0 && !(events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLOUT)) return;
  loop_.Unwatch(socket_.get());
  if (error == 0) {
    Finish(std::move(socket_));
    return;
  }
  last_error_ = ErrnoStatus("connect", error);
  socket_.reset();
  TryNext();
}

void ConnectAttempt::Finish(absl::StatusOr<UniqueFd> result) {
  if (finished_) return;
  finished_ = true;
  if (timer_ != 0) {
    loop_.CancelTimer(timer_);
    timer_ = 0;
  }
  if (socket_.valid()) {
    loop_.Unwatch(socket_.get());
    socket_.reset();
  }
  if (result.ok()) {
    int one = 1;
    setsockopt(result->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  // The callback may destroy this attempt: nothing touches members after it.
  ConnectCallback done = std::move(done_);
  done(std::move(result));
}

}  // namespace alknet
