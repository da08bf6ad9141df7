// The quic:// transport: certificate and secret at start, then one endpoint per worker loop.
#include "server/transport/quic_transport.h"

#include <fcntl.h>
#include <gnutls/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <future>

#include "absl/strings/str_cat.h"
#include "server/common/errno_status.h"
#include "server/common/listen_fds.h"
#include "server/quic/udp_socket.h"
#include "server/quic/upgrade_relay.h"
#include "server/transport/tls_context.h"

namespace alknet {
namespace {

class QuicListener final : public DatagramListener {
 public:
  // `links[k]`: worker k's upgrade links (the successor end here, the predecessor's when
  // inherited); `successor_ends[k]` the other end of its successor pair, for an upgrade.
  QuicListener(EndpointUrl bound, std::vector<UniqueFd> sockets, std::vector<quic::UpgradeLinks> links,
               std::vector<UniqueFd> successor_ends, quic::EndpointOptions options,
               const QuicTransportOptions& transport, Logger& logger)
      : bound_(std::move(bound)), sockets_(std::move(sockets)), links_(std::move(links)),
        successor_ends_(std::move(successor_ends)), options_(std::move(options)),
        count_(transport.count), ended_(transport.ended), logger_(logger) {
    for (size_t k = 0; k < sockets_.size(); ++k) {
      fds_.push_back({sockets_[k].get(), k < successor_ends_.size() ? successor_ends_[k].get() : -1,
                      options_.epoch});
    }
  }

  ~QuicListener() override {
    // The worker loops have stopped (engine shutdown): endpoints go on this thread.
    endpoints_.clear();
  }

  const EndpointUrl& bound() const override { return bound_; }

  absl::Status Start(const std::vector<EventLoop*>& loops, DatagramHooks hooks) override {
    if (loops.size() != sockets_.size()) return absl::InternalError("quic: one loop per socket");
    loops_ = loops;
    hooks_ = std::move(hooks);
    int count = static_cast<int>(loops.size());
    for (int k = 0; k < count; ++k) {
      quic::EndpointOptions options = options_;
      options.worker_index = k;
      options.worker_count = count;
      quic::EndpointHooks hooks;
      hooks.admit = hooks_.admit;
      hooks.deliver = [this, k](ConnectedStream stream, std::shared_ptr<void> admission) {
        hooks_.deliver(k, std::move(stream), std::move(admission));
      };
      hooks.forward = [this](int owner, std::string packet, quic::SockAddr remote, uint8_t ecn) {
        if (owner < 0 || owner >= static_cast<int>(endpoints_.size())) return;
        quic::QuicEndpoint* target = endpoints_[owner].get();
        loops_[owner]->Post([target, packet = std::move(packet), remote, ecn] {
          target->OnDatagram(remote, ecn,
                             {reinterpret_cast<const uint8_t*>(packet.data()), packet.size()});
        });
      };
      hooks.count = count_;
      hooks.ended = [ended = ended_](const quic::QuicStats& stats) {
        if (ended) ended(static_cast<double>(stats.rtt_us) / 1e6, static_cast<double>(stats.cwnd));
      };
      endpoints_.push_back(std::make_unique<quic::QuicEndpoint>(*loops[k], std::move(sockets_[k]),
                                                                std::move(options), std::move(hooks),
                                                                logger_, std::move(links_[k])));
    }
    for (int k = 0; k < count; ++k) {
      loops_[k]->Post([endpoint = endpoints_[k].get()] { endpoint->Start(); });
    }
    return absl::OkStatus();
  }

  void StopAccepting() override {
    OnEveryLoop([](quic::QuicEndpoint& endpoint) { endpoint.StopAccepting(); });
  }
  std::vector<Handover> fds() const override { return fds_; }
  void HandOver() override {
    OnEveryLoop([](quic::QuicEndpoint& endpoint) { endpoint.StopReading(); });
  }
  void Close() override {
    OnEveryLoop([](quic::QuicEndpoint& endpoint) { endpoint.Close(); });
  }

 private:
  // Runs `task` on each endpoint's loop and waits for it.
  void OnEveryLoop(const std::function<void(quic::QuicEndpoint&)>& task) {
    for (size_t k = 0; k < endpoints_.size(); ++k) {
      std::promise<void> done;
      loops_[k]->Post([&done, &task, endpoint = endpoints_[k].get()] {
        task(*endpoint);
        done.set_value();
      });
      done.get_future().wait();
    }
  }

  EndpointUrl bound_;
  std::vector<UniqueFd> sockets_;  // moved into the endpoints by Start
  std::vector<quic::UpgradeLinks> links_;  // likewise
  std::vector<UniqueFd> successor_ends_;   // kept for a binary upgrade to pass on
  std::vector<Handover> fds_;              // the sockets and successor ends, for fds()
  quic::EndpointOptions options_;
  std::function<void(std::string_view)> count_;
  std::function<void(double, double)> ended_;
  Logger& logger_;
  std::vector<EventLoop*> loops_;
  DatagramHooks hooks_;
  std::vector<std::unique_ptr<quic::QuicEndpoint>> endpoints_;
};

}  // namespace

absl::StatusOr<std::array<uint8_t, 32>> LoadOrCreateQuicSecret(const std::string& state_dir) {
  std::string path = state_dir.empty() ? "quic_secret" : absl::StrCat(state_dir, "/quic_secret");
  std::array<uint8_t, 32> secret{};
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.valid()) {
    ssize_t n = read(fd.get(), secret.data(), secret.size());
    if (n != static_cast<ssize_t>(secret.size())) {
      return absl::DataLossError(absl::StrCat(path, ": expected 32 bytes (remove it to make a new one)"));
    }
    return secret;
  }
  if (errno != ENOENT) return ErrnoStatus(absl::StrCat("open ", path), errno);
  mkdir(state_dir.c_str(), 0700);
  gnutls_rnd(GNUTLS_RND_KEY, secret.data(), secret.size());
  std::string temp = path + ".tmp";
  UniqueFd out(open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out.valid()) return ErrnoStatus(absl::StrCat("create ", temp), errno);
  if (write(out.get(), secret.data(), secret.size()) != static_cast<ssize_t>(secret.size()) ||
      fsync(out.get()) != 0) {
    return ErrnoStatus(absl::StrCat("write ", temp), errno);
  }
  out.reset();
  if (rename(temp.c_str(), path.c_str()) != 0) return ErrnoStatus(absl::StrCat("rename ", temp), errno);
  return secret;
}

absl::StatusOr<std::unique_ptr<QuicTransport>> QuicTransport::Create(QuicTransportOptions options,
                                                                    Logger& logger) {
  // The same certificate as tls:// (generated on first use when none is configured).
  auto store = TlsContextStore::Create(options.cert_path, options.key_path, options.state_dir,
                                       options.cert_host, logger);
  if (!store.ok()) return store.status();
  TlsCertificateInfo info = (*store)->info();
  absl::StatusOr<quic::Credentials> credentials = quic::LoadServerCredentials(info.cert_path, info.key_path);
  if (!credentials.ok()) return credentials.status();
  absl::StatusOr<std::array<uint8_t, 32>> secret = LoadOrCreateQuicSecret(options.state_dir);
  if (!secret.ok()) return secret.status();
  return std::unique_ptr<QuicTransport>(
      new QuicTransport(std::move(options), logger, *std::move(credentials), *secret));
}

absl::StatusOr<std::unique_ptr<DatagramListener>> QuicTransport::BindDatagram(const EndpointUrl& url,
                                                                              int workers,
                                                                              InheritedSockets* inherited) {
  std::string label = absl::StrCat("listen ", url.ToString());
  std::vector<UniqueFd> sockets;
  HostPort address = url.address;
  workers = std::max(workers, 1);
  if (inherited != nullptr) {
    // A binary upgrade's sockets: the same reuseport group, steered the same way, so the
    // worker count must match (the old process's sockets are its workers').
    absl::StatusOr<std::vector<UniqueFd>> taken = inherited->TakeAllDatagram(address, label);
    if (!taken.ok()) return taken.status();
    if (!taken->empty() && static_cast<int>(taken->size()) != workers) {
      return absl::InvalidArgumentError(absl::StrCat(
          label, ": inherited ", taken->size(), " UDP sockets but workers is ", workers,
          " (a binary upgrade keeps the worker count of quic:// listeners)"));
    }
    sockets = *std::move(taken);
    if (!sockets.empty()) {
      address.port = LocalOf(sockets[0].get()).port;
      logger_.Info("engine", "adopted inherited UDP sockets",
                   {{"address", EndpointUrl{"quic", address}.ToString()},
                    {"sockets", absl::StrCat(sockets.size())}});
    }
  }
  for (int k = static_cast<int>(sockets.size()); k < workers; ++k) {
    absl::StatusOr<UniqueFd> socket = quic::BindUdp(address, label);
    if (!socket.ok()) return socket.status();
    if (k == 0) address.port = LocalOf(socket->get()).port;  // port 0: the others join it
    sockets.push_back(*std::move(socket));
  }
  // Each worker's upgrade links: the pair a successor would get one end of, and the link to
  // the process this one replaced, if it passed one.
  std::vector<quic::UpgradeLinks> links(sockets.size());
  std::vector<UniqueFd> successor_ends;
  for (size_t k = 0; k < sockets.size(); ++k) {
    absl::StatusOr<std::array<UniqueFd, 2>> pair = quic::MakeRelayPair();
    if (!pair.ok()) return pair.status();
    links[k].successor = std::move((*pair)[0]);
    successor_ends.push_back(std::move((*pair)[1]));
    if (inherited != nullptr) {
      if (std::optional<InheritedSockets::UpgradeLink> link = inherited->TakeUpgradeLink(sockets[k].get())) {
        links[k].predecessor = std::move(link->fd);
        links[k].predecessor_epoch = link->epoch;
      }
    }
  }
  if (sockets.size() > 1 && !quic::SteerByConnectionId(sockets[0].get(), static_cast<int>(sockets.size()))) {
    logger_.Warn("quic", "no reuseport steering: misdelivered packets are passed between workers",
                 {{"address", url.ToString()}});
  }
  EndpointUrl bound{"quic", address};
  quic::EndpointOptions endpoint;
  endpoint.credentials = credentials_.get();
  endpoint.secret = secret_;
  endpoint.settings = options_.settings;
  endpoint.retry = options_.retry;
  endpoint.retry_threshold = options_.retry_threshold;
  endpoint.listen_url = bound.ToString();
  auto taken = [&](uint32_t epoch) {  // by the process this one replaced (2^-32)
    for (const quic::UpgradeLinks& link : links) {
      if (link.predecessor_epoch == epoch) return true;
    }
    return false;
  };
  do {
    gnutls_rnd(GNUTLS_RND_NONCE, &endpoint.epoch, sizeof(endpoint.epoch));
  } while (taken(endpoint.epoch));
  return std::unique_ptr<DatagramListener>(new QuicListener(bound, std::move(sockets), std::move(links),
                                                            std::move(successor_ends), std::move(endpoint),
                                                            options_, logger_));
}

}  // namespace alknet
