// The operator's HTTP endpoints on the metrics port: /metrics, /healthz, /readyz.
#include "server/http/status_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/tcp_listen.h"
#include "server/common/strings.h"
#include "server/http/http_request.h"

namespace alknet::http {

class StatusServer::Connection final : public FdHandler {
 public:
  Connection(StatusServer& server, UniqueFd fd, std::string source, uint64_t sequence)
      : server_(server), fd_(std::move(fd)), source_(std::move(source)), sequence_(sequence) {}
  ~Connection() override { Close(); }

  const std::string& source() const { return source_; }
  uint64_t sequence() const { return sequence_; }
  // Still waiting for (the rest of) its request: such a connection may be evicted.
  bool waiting() const { return response_.empty(); }
  void Evict() { Finish(); }

  void Start() {
    (void)server_.loop_->Watch(fd_.get(), EPOLLIN, this);
    timer_ = server_.loop_->AddTimer(absl::Seconds(5), [this] {
      timer_ = 0;
      Finish();
    });
  }

  void OnFdEvents(uint32_t events) override {
    if (!fd_.valid()) return;
    if (response_.empty()) {
      ReadRequest();
    } else {
      WriteResponse();
    }
  }

 private:
  void ReadRequest() {
    char buffer[2048];
    ssize_t n = read(fd_.get(), buffer, sizeof(buffer));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      Finish();
      return;
    }
    if (n < 0) return;
    request_.append(buffer, static_cast<size_t>(n));
    ParseResult parsed = ParseRequestHead(request_);
    if (parsed.state == ParseState::kIncomplete) return;
    if (parsed.state == ParseState::kInvalid) {
      Respond(400, "Bad Request", "text/plain", "bad request\n", false);
      return;
    }
    const RequestHead& head = parsed.head;
    bool head_only = head.method == "HEAD";
    if (head.method != "GET" && !head_only) {
      Respond(405, "Method Not Allowed", "text/plain", "method not allowed\n", head_only);
    } else if (head.target == "/metrics") {
      Respond(200, "OK", "text/plain; version=0.0.4; charset=utf-8", server_.handlers_.metrics(),
              head_only);
    } else if (head.target == "/healthz") {
      bool ok = server_.handlers_.healthy();
      Respond(ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain",
              ok ? "ok\n" : "unhealthy\n", head_only);
    } else if (head.target == "/readyz") {
      bool ok = server_.handlers_.ready();
      Respond(ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain",
              ok ? "ready\n" : "not ready\n", head_only);
    } else {
      Respond(404, "Not Found", "text/plain", "not found\n", head_only);
    }
  }

  void Respond(int code, std::string_view reason, std::string_view type, const std::string& body,
               bool head_only) {
    response_ = absl::StrCat("HTTP/1.1 ", code, " ", Sv(reason), "\r\nContent-Type: ", Sv(type),
                             "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n");
    if (!head_only) response_ += body;
    (void)server_.loop_->Modify(fd_.get(), EPOLLOUT);
    WriteResponse();
  }

  void WriteResponse() {
    while (written_ < response_.size()) {
      ssize_t n = send(fd_.get(), response_.data() + written_, response_.size() - written_, MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      if (n <= 0) break;
      written_ += static_cast<size_t>(n);
    }
    Finish();
  }

  void Finish() {
    Close();
    server_.Finished(this);
  }

  void Close() {
    if (timer_ != 0) {
      server_.loop_->CancelTimer(timer_);
      timer_ = 0;
    }
    if (fd_.valid()) {
      server_.loop_->Unwatch(fd_.get());
      fd_.reset();
    }
  }

  StatusServer& server_;
  UniqueFd fd_;
  std::string source_;
  uint64_t sequence_;
  std::string request_;
  std::string response_;
  size_t written_ = 0;
  EventLoop::TimerId timer_ = 0;
};

absl::StatusOr<std::unique_ptr<StatusServer>> StatusServer::Bind(const HostPort& address) {
  absl::StatusOr<UniqueFd> fd = ListenTcp(address, absl::StrCat("metrics listen ", address.ToString()), 64);
  if (!fd.ok()) return fd.status();
  SocketEndpoint local = LocalOf(fd->get());
  HostPort bound{local.ip, local.port};
  return std::unique_ptr<StatusServer>(
      new StatusServer(*std::move(fd), absl::StrCat("http://", bound.ToString())));
}

namespace {
UniqueFd OpenReserve() { return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }
}  // namespace

absl::StatusOr<std::unique_ptr<StatusServer>> StatusServer::BindOrFallBack(const HostPort& address,
                                                                            bool explicit_address,
                                                                            Logger& logger) {
  absl::StatusOr<std::unique_ptr<StatusServer>> bound = Bind(address);
  if (bound.ok() || explicit_address || !absl::IsAlreadyExists(bound.status())) return bound;
  std::vector<int> ports;
  for (int i = 1; i <= kMetricsFallbackPorts && address.port + i <= 65535; ++i) {
    ports.push_back(address.port + i);
  }
  ports.push_back(0);  // the kernel's choice
  for (int port : ports) {
    absl::StatusOr<std::unique_ptr<StatusServer>> fallback = Bind(HostPort{address.host, static_cast<uint16_t>(port)});
    if (fallback.ok()) {
      logger.Warn("metrics", "default metrics address taken; using another port (set metrics.listen to choose)",
                  {{"address", address.ToString()}, {"using", (*fallback)->bound_url()}});
      return fallback;
    }
    if (!absl::IsAlreadyExists(fallback.status())) return fallback;
  }
  return bound;
}

StatusServer::StatusServer(UniqueFd fd, std::string bound_url)
    : fd_(std::move(fd)), bound_url_(std::move(bound_url)), reserve_(OpenReserve()) {}

bool StatusServer::ReleaseReserve() {
  if (!reserve_.valid()) return false;
  reserve_.reset();
  return true;
}

StatusServer::~StatusServer() { Close(); }

absl::Status StatusServer::Start(EventLoop& loop, StatusHandlers handlers) {
  loop_ = &loop;
  handlers_ = std::move(handlers);
  AcceptLoop::Options options;
  options.batch = 16;
  options.release_reserve = [this] { return ReleaseReserve(); };
  accept_ = std::make_unique<AcceptLoop>(
      loop, fd_.get(), std::move(options),
      [this](UniqueFd fd, const sockaddr_storage&, socklen_t) { Admit(std::move(fd)); });
  return accept_->Start();
}

void StatusServer::Admit(UniqueFd fd) {
  std::string source = PeerOf(fd.get()).ip;
  // One source holds at most kMaxPerSource connections and all of them at most kMaxConnections;
  // past either, the oldest connection that has not sent its request yet makes room. Idle and
  // half-sent requests (slowloris) therefore cannot lock out a probe that sends its request.
  if ((per_source_[source] >= kMaxPerSource && !EvictOldestWaiting(&source)) ||
      (connections_.size() >= kMaxConnections && !EvictOldestWaiting(nullptr))) {
    fd.reset();  // refused
    if (!reserve_.valid()) reserve_ = OpenReserve();
    return;
  }
  auto connection = std::make_unique<Connection>(*this, std::move(fd), source, next_sequence_++);
  Connection* raw = connection.get();
  connections_.emplace(raw, std::move(connection));
  by_age_.emplace(raw->sequence(), raw);
  ++per_source_[source];
  raw->Start();
}

bool StatusServer::EvictOldestWaiting(const std::string* source) {
  for (const auto& [sequence, connection] : by_age_) {
    if (connection->waiting() && (source == nullptr || connection->source() == *source)) {
      connection->Evict();  // Finished() removes it from every index
      return true;
    }
  }
  return false;
}

void StatusServer::Close() {
  reserve_.reset();
  by_age_.clear();
  per_source_.clear();
  connections_.clear();
  if (accept_ != nullptr) accept_->Stop();
  fd_.reset();
}

void StatusServer::Finished(Connection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  by_age_.erase(connection->sequence());
  if (auto count = per_source_.find(connection->source()); count != per_source_.end() && --count->second == 0) {
    per_source_.erase(count);
  }
  loop_->DeleteLater(std::move(it->second));
  connections_.erase(it);
  if (!reserve_.valid() && fd_.valid()) reserve_ = OpenReserve();  // the descriptor just closed
}

}  // namespace alknet::http
