// One worker thread: an event loop that owns the SSH sessions handed to it.
#include "server/engine/worker.h"

#include <pthread.h>

#include <libssh/libssh.h>

#include <chrono>
#include <future>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/ssh/libssh_status.h"

namespace alknet {

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(int index, Logger& logger,
                                                       auth::KeyStore& keys, Resolver& resolver,
                                                       EngineMetrics& metrics,
                                                       const std::vector<std::string>& host_keys,
                                                       const config::SshAlgorithms& algorithms,
                                                       SessionLimits limits) {
  auto loop = EventLoop::Create();
  if (!loop.ok()) return loop.status();
  std::unique_ptr<Worker> worker(
      new Worker(index, logger, keys, *std::move(loop), resolver, metrics, limits));
  worker->bind_ = ssh_bind_new();
  if (worker->bind_ == nullptr) return absl::ResourceExhaustedError("ssh_bind_new failed");
  for (const std::string& path : host_keys) {
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_file(path.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK) {
      return absl::InvalidArgumentError(absl::StrCat("cannot load host key ", path));
    }
    // The bind takes ownership of the key.
    int rc = ssh_bind_options_set(worker->bind_, SSH_BIND_OPTIONS_IMPORT_KEY, key);
    if (rc != SSH_OK) {
      ssh_key_free(key);
      return SshStatus(rc, worker->bind_, absl::StrCat("host key ", path));
    }
  }
  // The offered algorithms; ssh_bind_accept_fd copies them into every accepted session.
  const struct {
    ssh_bind_options_e option;
    const std::vector<std::string>& list;
    const char* name;
  } lists[] = {
      {SSH_BIND_OPTIONS_KEY_EXCHANGE, algorithms.kex, "ssh.kex"},
      {SSH_BIND_OPTIONS_CIPHERS_C_S, algorithms.ciphers, "ssh.ciphers"},
      {SSH_BIND_OPTIONS_CIPHERS_S_C, algorithms.ciphers, "ssh.ciphers"},
      {SSH_BIND_OPTIONS_HMAC_C_S, algorithms.macs, "ssh.macs"},
      {SSH_BIND_OPTIONS_HMAC_S_C, algorithms.macs, "ssh.macs"},
      {SSH_BIND_OPTIONS_HOSTKEY_ALGORITHMS, algorithms.host_key_algorithms,
       "ssh.host_key_algorithms"},
  };
  for (const auto& entry : lists) {
    std::string value = config::JoinAlgorithms(entry.list);
    int rc = ssh_bind_options_set(worker->bind_, entry.option, value.c_str());
    if (rc != SSH_OK) return SshStatus(rc, worker->bind_, entry.name);
  }
  return worker;
}

Worker::Worker(int index, Logger& logger, auth::KeyStore& keys, std::unique_ptr<EventLoop> loop,
               Resolver& resolver, EngineMetrics& metrics, SessionLimits limits)
    : index_(index), logger_(logger), loop_(std::move(loop)), connector_(*loop_, resolver),
      byte_tally_(metrics.NewByteTally()),
      environment_{*loop_, logger, keys, connector_, *scratch_, metrics, byte_tally_, limits} {}

int64_t Worker::millis_since_heartbeat() const { return heartbeat_.millis_since(); }

Worker::~Worker() {
  Stop();
  std::vector<SshServerSession*> remaining;
  for (auto& [raw, session] : sessions_) remaining.push_back(raw);
  for (SshServerSession* session : remaining) session->Terminate("agent stopped");
  sessions_.clear();
  loop_.reset();  // runs deferred deletes while libssh objects are still valid
  if (bind_ != nullptr) ssh_bind_free(bind_);
}

void Worker::StartThread() {
  heartbeat_.Reset();  // healthy from the start, until a beat is missed
  thread_ = std::thread([this] {
    ssh_set_log_level(SSH_LOG_NOLOG);  // libssh's log level is per thread
    heartbeat_.Beat(*loop_);
    loop_running_ = true;
    loop_->Run();
    loop_running_ = false;
  });
  // "alknet-w3" in top -H, perf and gdb (a thread name holds at most 15 characters).
  std::string name = "alknet-w" + std::to_string(index_);
  pthread_setname_np(thread_.native_handle(), name.substr(0, 15).c_str());
}

void Worker::Adopt(UniqueFd fd, StreamInfo info, ServerTransport& transport,
                   std::unique_ptr<StartupTicket> ticket) {
  // std::function needs copyable captures: share the move-only pieces.
  auto shared_fd = std::make_shared<UniqueFd>(std::move(fd));
  std::shared_ptr<StartupTicket> shared_ticket(std::move(ticket));
  loop_->Post([this, shared_fd, info = std::move(info), &transport, shared_ticket]() mutable {
    if (shutting_down_) return;
    transport.Establish(*loop_, std::move(*shared_fd), std::move(info),
                        [this, shared_ticket](absl::StatusOr<ConnectedStream> stream) {
                          if (!stream.ok()) {
                            logger_.Info("transport", "handshake failed",
                                         {{"error", std::string(stream.status().message())}});
                            return;
                          }
                          std::shared_ptr<StartupTicket> ticket = shared_ticket;
                          if (ticket == nullptr) {
                            // The transport took no slot at accept: the SSH banner is here
                            // now. Refused: dropping the stream closes the connection.
                            if (!late_admission_) {
                              ticket = std::make_shared<StartupTicket>(nullptr, "");
                            } else if (!(ticket = late_admission_(stream->info))) {
                              return;
                            }
                          }
                          StartSession(*std::move(stream), std::move(ticket));
                        });
  });
}

void Worker::AdoptStream(ConnectedStream stream, std::shared_ptr<StartupTicket> ticket) {
  if (shutting_down_ || ticket == nullptr) return;  // closing `stream` ends the connection
  StartSession(std::move(stream), std::move(ticket));
}

void Worker::StartSession(ConnectedStream stream, std::shared_ptr<StartupTicket> ticket) {
  SshServerSession::Callbacks callbacks;
  callbacks.on_authenticated = [ticket] { ticket->Release(); };
  callbacks.on_closed = [this](SshServerSession* session) {
    auto it = sessions_.find(session);
    if (it == sessions_.end()) return;
    if (session_ended_ && !shutting_down_) session_ended_(session->info(), session->outcome());
    loop_->DeleteLater(std::move(it->second));
    sessions_.erase(it);
    session_count_.fetch_sub(1);
  };
  StreamInfo info = stream.info;
  static std::atomic<uint64_t> next_session_id{1};
  auto session = std::make_unique<SshServerSession>(next_session_id.fetch_add(1), environment_,
                                                    std::move(stream), std::move(callbacks));
  SshServerSession* raw = session.get();
  sessions_.emplace(raw, std::move(session));
  session_count_.fetch_add(1);
  absl::Status started = raw->Start(bind_);
  if (!started.ok()) {
    logger_.Warn("session", "ssh start failed",
                 {{"src", info.peer.ip}, {"error", std::string(started.message())}});
    raw->Terminate("start failed");
  }
}

void Worker::RunOnLoop(const std::function<void()>& task) {
  if (!loop_running_) {
    task();
    return;
  }
  std::promise<void> done;
  loop_->Post([&] {
    task();
    done.set_value();
  });
  done.get_future().wait();
}

std::vector<SessionSnapshot> Worker::Snapshot() {
  std::vector<SessionSnapshot> snapshots;
  RunOnLoop([&] {
    for (const auto& [raw, session] : sessions_) snapshots.push_back(session->Snapshot());
  });
  return snapshots;
}

int Worker::Kill(const std::function<bool(const SessionSnapshot&)>& match, std::string_view reason) {
  int killed = 0;
  RunOnLoop([&] {
    std::vector<SshServerSession*> victims;
    for (const auto& [raw, session] : sessions_) {
      if (match(session->Snapshot())) victims.push_back(raw);
    }
    for (SshServerSession* session : victims) session->Terminate(reason);
    killed = static_cast<int>(victims.size());
  });
  return killed;
}

void Worker::UpdateLimits(SessionLimits limits) {
  loop_->Post([this, limits] { environment_.limits = limits; });
}

void Worker::BeginShutdown() {
  loop_->Post([this] {
    shutting_down_ = true;
    std::vector<SshServerSession*> sessions;
    for (auto& [raw, session] : sessions_) sessions.push_back(raw);
    for (SshServerSession* session : sessions) session->BeginShutdown();
  });
}

void Worker::TerminateAll() {
  loop_->Post([this] {
    std::vector<SshServerSession*> sessions;
    for (auto& [raw, session] : sessions_) sessions.push_back(raw);
    for (SshServerSession* session : sessions) session->Terminate("shutdown deadline");
  });
}

void Worker::Stop() {
  if (thread_.joinable()) {
    loop_->Stop();
    thread_.join();
  }
}

}  // namespace alknet
