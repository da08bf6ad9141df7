// Resolves host names off the event loops: fair per-session queues, quotas, deadlines.
#include "server/forward/resolver.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace alknet {
namespace {

absl::StatusOr<std::vector<ResolvedAddress>> GetAddrInfo(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* results = nullptr;
  std::string port_text = absl::StrCat(port);
  int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &results);
  if (rc != 0) {
    if (rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_FAIL) {
      return absl::NotFoundError("unknown host");
    }
    return absl::UnavailableError(absl::StrCat("resolve failed: ", gai_strerror(rc)));
  }
  std::vector<ResolvedAddress> addresses;
  for (addrinfo* ai = results; ai != nullptr && addresses.size() < 8; ai = ai->ai_next) {
    ResolvedAddress address;
    std::memcpy(&address.storage, ai->ai_addr, ai->ai_addrlen);
    address.length = ai->ai_addrlen;
    addresses.push_back(address);
  }
  freeaddrinfo(results);
  return addresses;
}

}  // namespace

Resolver::Resolver(ResolverOptions options) : options_(std::move(options)) {
  if (!options_.resolve) options_.resolve = GetAddrInfo;
  if (options_.threads < 1) options_.threads = 1;
  if (options_.max_running_per_key <= 0) {
    options_.max_running_per_key = std::max(1, options_.threads / 2);
  }
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { WorkerMain(); });
}

Resolver::~Resolver() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& thread : threads_) thread.join();
}

std::optional<ResolvedAddress> Resolver::ParseNumeric(const std::string& host, uint16_t port) {
  ResolvedAddress address;
  auto* in = reinterpret_cast<sockaddr_in*>(&address.storage);
  if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    address.length = sizeof(sockaddr_in);
    return address;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    address.length = sizeof(sockaddr_in6);
    return address;
  }
  return std::nullopt;
}

bool Resolver::Dead(const Job& job) { return *job.request->cancelled || job.request->answered; }

// On the asking loop: the first of (result, deadline) answers; the other is dropped.
void Resolver::Answer(EventLoop& loop, const std::shared_ptr<Request>& request,
                      absl::StatusOr<std::vector<ResolvedAddress>> outcome) {
  if (*request->cancelled || request->answered.exchange(true)) return;
  if (request->timer != 0) {
    loop.CancelTimer(request->timer);
    request->timer = 0;
  }
  ResolveCallback done = std::move(request->done);  // `done` may destroy its caller
  done(std::move(outcome));
}

void Resolver::Resolve(const std::string& host, uint16_t port, EventLoop& loop,
                       std::shared_ptr<std::atomic<bool>> cancelled, ResolveCallback done,
                       const ResolveOwner& owner, absl::Duration timeout) {
  if (auto numeric = ParseNumeric(host, port)) {
    done(std::vector<ResolvedAddress>{*numeric});
    return;
  }
  auto request = std::make_shared<Request>();
  request->cancelled = std::move(cancelled);
  request->done = std::move(done);
  auto refuse = [&](std::string_view why) {
    loop.Post([&loop, request, message = std::string(why)] {
      Answer(loop, request, absl::ResourceExhaustedError(message));
    });
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    SessionQueue& queue = sessions_[owner.session];
    DropDeadLocked(queue);
    if (queued_ >= options_.max_queued) {
      refuse("resolver queue full");
    } else if (owner.session != 0 && queue.pending >= options_.max_pending_per_session) {
      refuse("too many pending name resolutions for this session");
    } else if (!owner.key.empty() && keys_[owner.key].pending >= options_.max_pending_per_key) {
      refuse("too many pending name resolutions for this key");
    } else {
      queue.jobs.push_back(Job{host, port, &loop, request, owner.session, owner.key});
      ++queue.pending;
      ++queued_;
      if (!owner.key.empty()) ++keys_[owner.key].pending;
      if (!queue.in_ring) {
        queue.in_ring = true;
        ring_.push_back(owner.session);
      }
      request->timer = loop.AddTimer(std::min(timeout, options_.timeout), [&loop, request] {
        request->timer = 0;
        Answer(loop, request, absl::DeadlineExceededError("name resolution timed out"));
      });
      cv_.notify_one();
      return;
    }
    if (queue.pending == 0 && !queue.in_ring) sessions_.erase(owner.session);
    if (!owner.key.empty()) {
      auto key = keys_.find(owner.key);
      if (key != keys_.end() && key->second.pending == 0 && key->second.running == 0) keys_.erase(key);
    }
  }
}

// Queued jobs already answered (deadline) or cancelled give their quota back.
void Resolver::DropDeadLocked(SessionQueue& queue) {
  for (auto it = queue.jobs.begin(); it != queue.jobs.end();) {
    if (!Dead(*it)) {
      ++it;
      continue;
    }
    --queue.pending;
    --queued_;
    if (!it->key.empty()) {
      auto key = keys_.find(it->key);
      if (key != keys_.end()) {
        --key->second.pending;
        if (key->second.pending == 0 && key->second.running == 0) keys_.erase(key);
      }
    }
    it = queue.jobs.erase(it);
  }
}

void Resolver::ReleaseLocked(uint64_t session, const std::string& key, bool was_running) {
  auto queue = sessions_.find(session);
  if (queue != sessions_.end()) {
    --queue->second.pending;
    if (queue->second.pending == 0 && !queue->second.in_ring) sessions_.erase(queue);
  }
  if (key.empty()) return;
  auto count = keys_.find(key);
  if (count == keys_.end()) return;
  --count->second.pending;
  if (was_running) --count->second.running;
  if (count->second.pending == 0 && count->second.running == 0) keys_.erase(count);
}

// Round-robin over sessions with queued jobs; a session whose key holds its share of the
// threads waits its turn without blocking the others.
std::optional<Resolver::Job> Resolver::TakeNextLocked() {
  for (size_t turns = ring_.size(); turns > 0; --turns) {
    uint64_t session = ring_.front();
    ring_.pop_front();
    SessionQueue& queue = sessions_[session];
    DropDeadLocked(queue);
    if (queue.jobs.empty()) {
      queue.in_ring = false;
      if (queue.pending == 0) sessions_.erase(session);
      continue;
    }
    const std::string& key = queue.jobs.front().key;
    if (!key.empty() && keys_[key].running >= options_.max_running_per_key) {
      ring_.push_back(session);
      continue;
    }
    Job job = std::move(queue.jobs.front());
    queue.jobs.pop_front();
    --queued_;
    if (!job.key.empty()) ++keys_[job.key].running;
    if (queue.jobs.empty()) {
      queue.in_ring = false;
    } else {
      ring_.push_back(session);
    }
    return job;
  }
  return std::nullopt;
}

void Resolver::WorkerMain() {
  for (;;) {
    std::optional<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        if (stopping_) return true;
        job = TakeNextLocked();
        return job.has_value();
      });
      if (stopping_) return;
    }
    absl::StatusOr<std::vector<ResolvedAddress>> outcome = options_.resolve(job->host, job->port);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ReleaseLocked(job->session, job->key, /*was_running=*/true);
    }
    cv_.notify_all();  // a key below its thread share again may unblock another session
    EventLoop* loop = job->loop;
    loop->Post([loop, request = job->request, outcome = std::move(outcome)]() mutable {
      Answer(*loop, request, std::move(outcome));
    });
  }
}

}  // namespace alknet
