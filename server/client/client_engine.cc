// The client role: one event-loop thread running every configured upstream.
#include "server/client/client_engine.h"

#include <chrono>
#include <future>

#include <libssh/libssh.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"

namespace alknet {
namespace {

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

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
  Upstream::Shared shared{*loop_, logger_, *connector_, *scratch_, metrics_};
  for (const config::UpstreamConfig& upstream_config : config_.upstreams) {
    auto upstream = Upstream::Create(shared, upstream_config);
    if (!upstream.ok()) return upstream.status();
    upstreams_.push_back(*std::move(upstream));
  }
  if (options_.serve_status && config_.metrics.listen) {
    auto status_server = http::StatusServer::Bind(*config_.metrics.listen);
    if (!status_server.ok()) return status_server.status();
    status_server_ = *std::move(status_server);
    absl::Status started = status_server_->Start(
        *loop_, {.metrics = [this] {
                   return prometheus::TextSerializer().Serialize(metrics_.registry().Collect());
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
  last_heartbeat_ms_ = SteadyMillis();
  thread_ = std::thread([this] {
    ssh_set_log_level(SSH_LOG_NOLOG);  // libssh's log level is per thread
    std::function<void()> beat;
    beat = [this, &beat] {
      last_heartbeat_ms_ = SteadyMillis();
      loop_->AddTimer(absl::Seconds(1), beat);
    };
    beat();
    loop_->Run();
  });
  started_ = true;
  logger_.Info("client", "started", {{"upstreams", absl::StrCat(upstreams_.size())}});
  return absl::OkStatus();
}

void ClientEngine::Shutdown() {
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
  for (const auto& upstream : upstreams_) {
    if (!upstream->connected()) return false;
  }
  return true;
}

bool ClientEngine::Healthy() const { return SteadyMillis() - last_heartbeat_ms_.load() < 5000; }

}  // namespace alknet
