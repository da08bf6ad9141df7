// The client role: one event-loop thread running every configured upstream.
#include "server/client/client_engine.h"

#include <chrono>
#include <future>

#include <libssh/libssh.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace alknet {
ClientEngine::ClientEngine(const config::AgentConfig& config, Logger& logger,
                           EngineMetrics& metrics, Options options)
    : config_(config), logger_(logger), metrics_(metrics), options_(options) {}

ClientEngine::~ClientEngine() { Shutdown(); }

absl::Status ClientEngine::Start() {
  auto loop = EventLoop::Create();
  if (!loop.ok()) return loop.status();
  loop_ = *std::move(loop);
  resolver_ = std::make_unique<Resolver>(1);
  connector_ = std::make_unique<OutboundConnector>(*loop_, *resolver_);
  Upstream::Shared shared{*loop_, logger_, *connector_, *scratch_, metrics_, config_.ssh};
  for (const config::UpstreamConfig& upstream_config : config_.upstreams) {
    auto upstream = Upstream::Create(shared, upstream_config);
    if (!upstream.ok()) return upstream.status();
    upstreams_.push_back(*std::move(upstream));
  }
  if (options_.serve_status && config_.metrics.listen) {
    auto status_server = http::StatusServer::BindOrFallBack(*config_.metrics.listen,
                                                             config_.metrics.listen_explicit, logger_);
    if (!status_server.ok()) return status_server.status();
    status_server_ = *std::move(status_server);
    absl::Status started = status_server_->Start(
        *loop_, {.metrics = [this] {
                   return prometheus::TextSerializer().Serialize(metrics_.Collect());
                 },
                 .healthy = [this] { return Healthy(); },
                 .ready = [this] { return Ready(); }});
    if (!started.ok()) return started;
    logger_.Info("metrics", "listening", {{"address", status_server_->bound_url()}});
  }
  // Everything below runs on the loop thread.
  loop_->Post([this] {
    for (auto& upstream : upstreams_) upstream->Start();
  });
  heartbeat_.Reset();
  heartbeat_.SetTestHook(options_.heartbeat_test_hook);
  thread_ = std::thread([this] {
    ssh_set_log_level(SSH_LOG_NOLOG);  // libssh's log level is per thread
    heartbeat_.Beat(*loop_);
    loop_->Run();
  });
  started_ = true;
  {
    absl::MutexLock lock(&ready_mu_);
    loop_running_ = true;
  }
  {
    absl::MutexLock lock(&api_mu_);
    running_ = true;
  }
  logger_.Info("client", "started", {{"upstreams", absl::StrCat(upstreams_.size())}});
  return absl::OkStatus();
}

void ClientEngine::Shutdown() {
  {
    absl::MutexLock lock(&api_mu_);  // waits for API calls in flight
    running_ = false;
  }
  {
    absl::MutexLock lock(&ready_mu_);
    loop_running_ = false;
  }
  if (!loop_) return;
  if (thread_.joinable()) {
    std::promise<void> closed;
    loop_->Post([this, &closed] {
      for (auto& upstream : upstreams_) upstream->Stop();
      if (status_server_) status_server_->Close();
      closed.set_value();
    });
    closed.get_future().wait();
    loop_->Stop();
    thread_.join();
  } else {
    for (auto& upstream : upstreams_) upstream->Stop();
  }
  upstreams_.clear();
  status_server_.reset();
  connector_.reset();
  loop_.reset();  // runs deferred deletes while libssh objects are still valid
  resolver_.reset();
  if (started_) logger_.Info("client", "stopped");
  started_ = false;
}

bool ClientEngine::Ready() const {
  absl::MutexLock lock(&ready_mu_);
  if (!loop_running_ || !heartbeat_.fresh()) return false;
  for (const auto& upstream : upstreams_) {
    if (!upstream->connected()) return false;
  }
  return true;
}

absl::Status ClientEngine::RunOnLoop(absl::AnyInvocable<void()> task) {
  absl::ReaderMutexLock lock(&api_mu_);
  if (!running_) return absl::FailedPreconditionError("the client role is not running");
  std::promise<void> done;
  loop_->Post([&] {
    task();
    done.set_value();
  });
  done.get_future().wait();
  return absl::OkStatus();
}

std::vector<std::string> ClientEngine::upstream_names() const {
  std::vector<std::string> names;
  for (const config::UpstreamConfig& upstream : config_.upstreams) names.push_back(upstream.name);
  return names;
}

absl::StatusOr<ForwardSnapshot> ClientEngine::AddForward(const std::string& upstream, ForwardDef def,
                                                         bool keep_if_unbound) {
  absl::StatusOr<ForwardSnapshot> result = absl::NotFoundError(
      absl::StrCat("no upstream named '", upstream, "' (configured: ",
                   absl::StrJoin(upstream_names(), ", "), ")"));
  absl::Status ran = RunOnLoop([&] {
    for (auto& candidate : upstreams_) {
      if (candidate->HasForward(def.id)) {
        result = absl::AlreadyExistsError(absl::StrCat("a forward with id '", def.id, "' exists"));
        return;
      }
    }
    for (auto& candidate : upstreams_) {
      if (candidate->name() == upstream) result = candidate->AddForward(std::move(def), keep_if_unbound);
    }
  });
  if (!ran.ok()) return ran;
  return result;
}

absl::Status ClientEngine::RemoveForward(const std::string& id) {
  bool removed = false;
  absl::Status ran = RunOnLoop([&] {
    for (auto& upstream : upstreams_) removed = removed || upstream->RemoveForward(id);
  });
  if (!ran.ok()) return ran;
  return removed ? absl::OkStatus() : absl::NotFoundError(absl::StrCat("no forward with id '", id, "'"));
}

absl::StatusOr<std::vector<ForwardSnapshot>> ClientEngine::ListForwards() {
  std::vector<ForwardSnapshot> all;
  absl::Status ran = RunOnLoop([&] {
    for (auto& upstream : upstreams_) {
      for (ForwardSnapshot& snapshot : upstream->ListForwards()) all.push_back(std::move(snapshot));
    }
  });
  if (!ran.ok()) return ran;
  return all;
}

bool ClientEngine::Healthy() const {
  absl::MutexLock lock(&ready_mu_);
  return !loop_running_ || heartbeat_.fresh();
}

}  // namespace alknet
