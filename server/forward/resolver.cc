// Resolves host names off the event loops with a small fixed pool of getaddrinfo threads.
#include "server/forward/resolver.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace alknet {

Resolver::Resolver(int threads, size_t max_queued) : max_queued_(max_queued) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { WorkerMain(); });
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

void Resolver::Resolve(const std::string& host, uint16_t port, EventLoop& loop,
                       std::shared_ptr<std::atomic<bool>> cancelled, ResolveCallback done) {
  if (auto numeric = ParseNumeric(host, port)) {
    done(std::vector<ResolvedAddress>{*numeric});
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (jobs_.size() >= max_queued_) {
      loop.Post([done = std::move(done), cancelled] {
        if (!*cancelled) done(absl::ResourceExhaustedError("resolver queue full"));
      });
      return;
    }
    jobs_.push_back(Job{host, port, &loop, std::move(cancelled), std::move(done)});
  }
  cv_.notify_one();
}

void Resolver::WorkerMain() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (*job.cancelled) continue;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* results = nullptr;
    std::string port = absl::StrCat(job.port);
    int rc = getaddrinfo(job.host.c_str(), port.c_str(), &hints, &results);
    absl::StatusOr<std::vector<ResolvedAddress>> outcome;
    if (rc != 0) {
      outcome = (rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_FAIL)
                    ? absl::NotFoundError("unknown host")
                    : absl::UnavailableError(absl::StrCat("resolve failed: ", gai_strerror(rc)));
    } else {
      std::vector<ResolvedAddress> addresses;
      for (addrinfo* ai = results; ai != nullptr && addresses.size() < 8; ai = ai->ai_next) {
        ResolvedAddress address;
        std::memcpy(&address.storage, ai->ai_addr, ai->ai_addrlen);
        address.length = ai->ai_addrlen;
        addresses.push_back(address);
      }
      freeaddrinfo(results);
      outcome = std::move(addresses);
    }
    job.loop->Post([done = std::move(job.done), cancelled = job.cancelled,
                    outcome = std::move(outcome)]() mutable {
      if (!*cancelled) done(std::move(outcome));
    });
  }
}

}  // namespace alknet
