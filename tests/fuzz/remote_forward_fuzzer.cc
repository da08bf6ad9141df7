// libFuzzer entry: the -R state machine of one server session (RemoteForwards) under random
// sequences of tcpip-forward / cancel-tcpip-forward requests, connections on the published
// ports (injected and real TCP), the client's answers to forwarded-tcpip opens (or none), data
// and closes on both sides, clock steps, loop turns and session ends. libssh's channel calls are
// scripted by FakeChannels; sockets, listeners and the event loop are real. Under ASan this finds
// what security-round item 1 was: a pending open reading its cancelled, freed listener.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "server/auth/authorized_keys.h"
#include "server/common/log.h"
#include "server/loop/event_loop.h"
#include "server/metrics/engine_metrics.h"
#include "server/ssh/remote_forwards.h"

namespace {

using alknet::RemoteForwards;
using alknet::UniqueFd;

// Stands in for libssh's channel: the open's answer the "client" chose, and what the first
// OpenReverse named (later polls must name the same forward).
struct FakeChannel {
  int answer = SSH_AGAIN;
  bool sent = false;
  std::string listen_address;
  int listen_port = 0;
};

FakeChannel* AsFake(ssh_channel channel) { return reinterpret_cast<FakeChannel*>(channel); }

class FakeChannels final : public RemoteForwards::ChannelOps {
 public:
  ~FakeChannels() override {
    if (!live_.empty()) __builtin_trap();  // a channel nobody freed
  }
  ssh_channel New(ssh_session) override {
    if (fail_new) return nullptr;
    auto* channel = new FakeChannel;
    live_.push_back(channel);
    return reinterpret_cast<ssh_channel>(channel);
  }
  int OpenReverse(ssh_channel raw, const char* listen_address, int listen_port,
                  const char* originator, int originator_port) override {
    FakeChannel* channel = Checked(raw);
    std::string address(listen_address);  // reads the caller's string (freed: ASan reports it)
    std::string from(originator);
    if (!channel->sent) {
      channel->sent = true;
      channel->listen_address = address;
      channel->listen_port = listen_port;
    } else if (channel->listen_address != address || channel->listen_port != listen_port) {
      __builtin_trap();  // an open must keep naming the forward it was sent for
    }
    if (listen_port <= 0 || listen_port > 65535 || originator_port < 0) __builtin_trap();
    return channel->answer;
  }
  void Free(ssh_channel raw) override {
    FakeChannel* channel = Checked(raw);
    live_.erase(std::find(live_.begin(), live_.end(), channel));
    delete channel;
  }
  // A channel still waiting for its answer (nullptr: none).
  FakeChannel* Pending(size_t pick, const std::vector<ssh_channel>& relayed) {
    std::vector<FakeChannel*> waiting;
    for (FakeChannel* channel : live_) {
      bool is_relayed = std::find(relayed.begin(), relayed.end(),
                                  reinterpret_cast<ssh_channel>(channel)) != relayed.end();
      if (!is_relayed && channel->answer == SSH_AGAIN) waiting.push_back(channel);
    }
    return waiting.empty() ? nullptr : waiting[pick % waiting.size()];
  }

  bool fail_new = false;

 private:
  FakeChannel* Checked(ssh_channel raw) {
    FakeChannel* channel = AsFake(raw);
    if (std::find(live_.begin(), live_.end(), channel) == live_.end()) __builtin_trap();  // freed
    return channel;
  }
  std::vector<FakeChannel*> live_;
};

constexpr const char* kAddresses[] = {"127.0.0.1", "localhost", "", "0.0.0.0", "::1", "*", "10.1.2.3"};

int ConnectLoopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));  // EINPROGRESS is fine
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static alknet::Logger logger(alknet::LogLevel::kError);
  static alknet::EngineMetrics metrics(std::make_shared<prometheus::Registry>(), {}, "fuzz");
  FuzzedDataProvider input(data, size);

  auto loop_or = alknet::EventLoop::Create();
  if (!loop_or.ok()) return 0;
  std::unique_ptr<alknet::EventLoop> loop = *std::move(loop_or);
  FakeChannels channels;
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  bool can_open = true;
  std::vector<ssh_channel> relayed;   // opened: the session's relays own them
  std::vector<UniqueFd> peers;        // our ends of connections to published ports
  std::vector<uint64_t> listener_ids;
  std::vector<uint16_t> bound_ports;

  alknet::auth::KeyOptions allowed;
  alknet::auth::KeyOptions no_forwarding;
  no_forwarding.port_forwarding = false;

  {
    std::unique_ptr<RemoteForwards> forwards;
    forwards = std::make_unique<RemoteForwards>(
        *loop, logger, metrics,
        RemoteForwards::Hooks{.can_open = [&] { return can_open; },
                              .opened = [&](ssh_channel channel, UniqueFd fd) {
                                relayed.push_back(channel);
                                peers.push_back(std::move(fd));
                              },
                              .after_io = [&] { forwards->Poll(); },
                              .now = [&] { return now; }},
        &channels);
    forwards->Bind(nullptr, "192.0.2.1", "SHA256:fuzz", absl::Seconds(10));

    for (int step = 0; step < 200 && input.remaining_bytes() > 0; ++step) {
      switch (input.ConsumeIntegralInRange<int>(0, 12)) {
        case 0: {  // tcpip-forward
          RemoteForwards::Request request;
          request.address = kAddresses[input.ConsumeIntegralInRange<size_t>(0, std::size(kAddresses) - 1)];
          switch (input.ConsumeIntegralInRange<int>(0, 3)) {
            case 0: case 1: request.port = 0; break;
            case 2: request.port = 70000; break;
            default: request.port = bound_ports.empty() ? 0 : bound_ports.back(); break;
          }
          int which = input.ConsumeIntegralInRange<int>(0, 5);
          const alknet::auth::KeyOptions* options =
              which == 0 ? nullptr : which == 1 ? &no_forwarding : &allowed;
          RemoteForwards::Answer answer = forwards->HandleRequest(request, options);
          if (answer.ok) {
            if (answer.bound_port == 0 || answer.listener_id == 0) __builtin_trap();
            listener_ids.push_back(answer.listener_id);
            bound_ports.push_back(answer.bound_port);
          }
          break;
        }
        case 1: {  // cancel-tcpip-forward
          RemoteForwards::Request request;
          request.cancel = true;
          request.address = kAddresses[input.ConsumeIntegralInRange<size_t>(0, std::size(kAddresses) - 1)];
          request.port = bound_ports.empty() || input.ConsumeBool()
                             ? input.ConsumeIntegralInRange<uint32_t>(0, 3)
                             : bound_ports[input.ConsumeIntegralInRange<size_t>(0, bound_ports.size() - 1)];
          forwards->HandleRequest(request, &allowed);
          break;
        }
        case 2: {  // a connection arrives on a listener (maybe a cancelled one)
          if (listener_ids.empty() || peers.size() >= 128) break;
          int pair[2];
          if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) break;
          peers.emplace_back(pair[1]);
          forwards->OnAccepted(listener_ids[input.ConsumeIntegralInRange<size_t>(0, listener_ids.size() - 1)],
                               UniqueFd(pair[0]));
          break;
        }
        case 3: {  // a real TCP connection to a published port, accepted by the loop
          if (bound_ports.empty() || peers.size() >= 128) break;
          int fd = ConnectLoopback(bound_ports[input.ConsumeIntegralInRange<size_t>(0, bound_ports.size() - 1)]);
          if (fd >= 0) peers.emplace_back(fd);
          loop->RunOnce(absl::ZeroDuration());
          break;
        }
        case 4: {  // the client answers an open (or keeps it waiting)
          FakeChannel* channel = channels.Pending(input.ConsumeIntegral<uint8_t>(), relayed);
          if (channel != nullptr) channel->answer = input.ConsumeBool() ? SSH_OK : SSH_ERROR;
          break;
        }
        case 5: {  // data from a connection's far end
          if (peers.empty()) break;
          std::string bytes = input.ConsumeRandomLengthString(64);
          UniqueFd& peer = peers[input.ConsumeIntegralInRange<size_t>(0, peers.size() - 1)];
          if (peer.valid()) (void)send(peer.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          break;
        }
        case 6: {  // a connection's far end closes
          if (peers.empty()) break;
          peers[input.ConsumeIntegralInRange<size_t>(0, peers.size() - 1)].reset();
          break;
        }
        case 7: {  // a relayed channel closes
          if (relayed.empty()) break;
          size_t at = input.ConsumeIntegralInRange<size_t>(0, relayed.size() - 1);
          channels.Free(relayed[at]);
          relayed.erase(relayed.begin() + static_cast<std::ptrdiff_t>(at));
          break;
        }
        case 8:  // time passes (open deadlines)
          now += absl::Milliseconds(input.ConsumeIntegralInRange<int>(0, 15000));
          break;
        case 9:  // any packet: the session's Service() polls the pending opens
          forwards->Poll();
          break;
        case 10:  // the loop finishes its batch: deferred deletes run
          loop->RunOnce(absl::ZeroDuration());
          break;
        case 11:  // the channel cap / shutdown flips; channel allocation fails
          can_open = input.ConsumeBool();
          channels.fail_new = input.ConsumeIntegralInRange<int>(0, 7) == 0;
          break;
        case 12:  // the session ends; a new one binds
          forwards->CloseAll();
          forwards->Bind(nullptr, "192.0.2.1", "SHA256:fuzz", absl::Seconds(10));
          loop->RunOnce(absl::ZeroDuration());
          break;
      }
      if (forwards->pending_opens() > RemoteForwards::kMaxPendingOpens ||
          forwards->listeners() > RemoteForwards::kMaxListeners) {
        __builtin_trap();
      }
    }
    forwards.reset();
  }
  for (ssh_channel channel : relayed) channels.Free(channel);
  loop->RunOnce(absl::ZeroDuration());
  return 0;
}
