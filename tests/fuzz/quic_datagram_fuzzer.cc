// libFuzzer entry: any datagram reaching a QUIC endpoint (header decode, version negotiation,
// Retry token checks, connection set-up, ngtcp2's packet reading, passing packets on to the
// upgrade links) must never crash, leak or hang, nor any message arriving on an upgrade link.
// The first byte picks the Retry mode and whether the rest is a datagram from the socket or
// a message from the successor's or the predecessor's link.
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "server/common/log.h"
#include "server/loop/event_loop.h"
#include "server/quic/quic_endpoint.h"
#include "server/quic/quic_tls.h"
#include "server/quic/udp_socket.h"
#include "server/quic/upgrade_relay.h"
#include "server/transport/tls_context.h"

namespace {

struct World {
  World() {
    char dir_template[] = "/tmp/alknet-quic-fuzz.XXXXXX";
    dir = mkdtemp(dir_template);
    std::string cert = dir + "/cert.pem";
    std::string key = dir + "/key.pem";
    if (!alknet::GenerateSelfSignedCertificate(cert, key, "localhost").ok()) abort();
    auto loaded = alknet::quic::LoadServerCredentials(cert, key);
    if (!loaded.ok()) abort();
    credentials = *std::move(loaded);
    loop = *alknet::EventLoop::Create();
    secret.fill(7);
    remote.len = sizeof(sockaddr_in);
    auto* in = reinterpret_cast<sockaddr_in*>(&remote.storage);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in->sin_port = htons(9);  // discard: answers go nowhere
  }

  // A fresh endpoint every so often, so connections made by earlier inputs do not pile up.
  alknet::quic::QuicEndpoint& Endpoint(alknet::quic::RetryMode retry) {
    if (endpoint == nullptr || ++uses > 256 || retry != mode) {
      if (endpoint != nullptr) {
        endpoint->Close();
        loop->RunOnce(absl::ZeroDuration());
        endpoint.reset();
      }
      auto socket = alknet::quic::BindUdp({"127.0.0.1", 0}, "fuzz");
      if (!socket.ok()) abort();
      alknet::quic::EndpointOptions options;
      options.credentials = credentials.get();
      options.secret = secret;
      options.retry = retry;
      options.retry_threshold = 4;
      options.epoch = 0x01020304;
      // Both links, their far ends held here unread: what the endpoint passes on queues up to
      // the link's buffer, then is dropped.
      auto successor = alknet::quic::MakeRelayPair();
      auto predecessor = alknet::quic::MakeRelayPair();
      if (!successor.ok() || !predecessor.ok()) abort();
      far_ends = {std::move((*successor)[1]), std::move((*predecessor)[1])};
      alknet::quic::UpgradeLinks links{std::move((*successor)[0]), std::move((*predecessor)[0])};
      endpoint = std::make_unique<alknet::quic::QuicEndpoint>(*loop, *std::move(socket), options,
                                                              alknet::quic::EndpointHooks{}, logger,
                                                              std::move(links));
      endpoint->Start();
      mode = retry;
      uses = 0;
    }
    return *endpoint;
  }

  std::string dir;
  alknet::Logger logger{alknet::LogLevel::kError, alknet::LogFormat::kText};
  alknet::quic::Credentials credentials;
  std::unique_ptr<alknet::EventLoop> loop;
  std::array<uint8_t, 32> secret{};
  alknet::quic::SockAddr remote;
  std::unique_ptr<alknet::quic::QuicEndpoint> endpoint;
  std::array<alknet::UniqueFd, 2> far_ends;
  alknet::quic::RetryMode mode = alknet::quic::RetryMode::kNever;
  int uses = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();
  if (size == 0) return 0;
  alknet::quic::RetryMode retry = data[0] % 3 == 0   ? alknet::quic::RetryMode::kNever
                                  : data[0] % 3 == 1 ? alknet::quic::RetryMode::kAlways
                                                     : alknet::quic::RetryMode::kAuto;
  alknet::quic::QuicEndpoint& endpoint = world->Endpoint(retry);
  std::span<const uint8_t> rest(data + 1, size - 1);
  switch (data[0] / 3 % 3) {
    case 0:
      endpoint.OnDatagram(world->remote, 0, rest);
      break;
    default:
      // A message on the successor's (1) or the predecessor's (2) link, read by the endpoint's
      // loop as in a binary upgrade. (An empty one would read as the link closing.)
      if (!rest.empty()) {
        send(world->far_ends[data[0] / 3 % 3 - 1].get(), rest.data(), rest.size(), MSG_DONTWAIT);
      }
      break;
  }
  world->loop->RunOnce(absl::ZeroDuration());
  return 0;
}
