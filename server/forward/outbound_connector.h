// Opens outbound TCP connections for channels without blocking the loop: resolve (off-loop when
// needed), non-blocking connect to each address in turn, one overall deadline.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/unique_fd.h"
#include "server/forward/resolver.h"
#include "server/loop/event_loop.h"

namespace alknet {

// Why an outbound connect failed, in the terms SSH and SOCKS replies need.
enum class ConnectFailure {
  kNone, kUnknownHost, kRefused, kUnreachable, kTimeout, kResourceShortage, kOther,
  kResolveTimeout,    // the name was not resolved by its deadline
  kResolveQuota,      // the session or key has too many name resolutions pending
  kPolicyDenied,      // the forwarding policy denied every resolved address
};
ConnectFailure ClassifyConnectError(const absl::Status& status);
std::string_view ConnectFailureName(ConnectFailure failure);  // "connect-refused", ...

using ConnectCallback = std::function<void(absl::StatusOr<UniqueFd>)>;
// Asked for each resolved address right before connecting to it (the forwarding policy's
// address phase); false skips the address. Runs on the connector's loop.
using AddressFilter = std::function<bool(const ResolvedAddress&)>;

// One in-flight connect. Destroying it cancels: the callback never runs afterwards.
class ConnectAttempt;

class OutboundConnector {
 public:
  OutboundConnector(EventLoop& loop, Resolver& resolver) : loop_(loop), resolver_(resolver) {}

  // Status codes: NotFound (unknown host), Unavailable (refused / unreachable),
  // DeadlineExceeded (timeout), ResourceExhausted, Internal. `owner` is the resolver's
  // fairness and quota unit (the SSH session and its key). `filter` (optional) vets each
  // resolved address; if it refuses them all: PermissionDenied, no connect attempted.
  std::unique_ptr<ConnectAttempt> Connect(const std::string& host, uint16_t port,
                                          absl::Duration timeout, ConnectCallback done,
                                          ResolveOwner owner = {}, AddressFilter filter = {});

 private:
  EventLoop& loop_;
  Resolver& resolver_;
};

class ConnectAttempt final : public FdHandler {
 public:
  ConnectAttempt(EventLoop& loop, absl::Duration timeout, ConnectCallback done);
  ~ConnectAttempt() override;

  void Begin(Resolver& resolver, const std::string& host, uint16_t port, ResolveOwner owner);
  void SetFilter(AddressFilter filter) { filter_ = std::move(filter); }
  void OnFdEvents(uint32_t events) override;

 private:
  void OnResolved(absl::StatusOr<std::vector<ResolvedAddress>> addresses);
  void TryNext();
  void Finish(absl::StatusOr<UniqueFd> result);

  EventLoop& loop_;
  absl::Duration timeout_;
  bool resolving_ = false;  // waiting for the resolver (the timeout then names resolution)
  ConnectCallback done_;
  AddressFilter filter_;
  bool tried_ = false;  // an address passed the filter
  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
  std::vector<ResolvedAddress> addresses_;
  size_t next_ = 0;
  UniqueFd socket_;
  absl::Status last_error_ = absl::UnavailableError("no address");
  EventLoop::TimerId timer_ = 0;
  bool finished_ = false;
};

}  // namespace alknet
