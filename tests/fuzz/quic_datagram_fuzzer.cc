// libFuzzer entry: any datagram reaching a QUIC endpoint (header decode, version negotiation,
// Retry token checks, connection set-up and ngtcp2's packet reading) must never crash, leak or
// hang. The first byte picks the Retry mode; the rest is the datagram.
#include <netinet/in.h>
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
      endpoint = std::make_unique<alknet::quic::QuicEndpoint>(*loop, *std::move(socket), options,
                                                              alknet::quic::EndpointHooks{}, logger);
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
  world->Endpoint(retry).OnDatagram(world->remote, 0, {data + 1, size - 1});
  world->loop->RunOnce(absl::ZeroDuration());
  return 0;
}
