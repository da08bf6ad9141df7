// Relay microbenchmark: two TlsRelays (client and server contexts as the agent builds them) move
// bytes plain -> TLS -> plain in-process over socketpairs; prints bytes per CPU-second and the
// allocations per GiB made in steady state (operator new and OpenSSL's allocator both counted).
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/counting_new.h"
#include "server/transport/tls_client.h"
#include "server/transport/tls_context.h"
#include "server/transport/tls_relay.h"

namespace {

std::atomic<uint64_t> g_openssl_allocations{0};  // OpenSSL's allocator

void* CountingMalloc(size_t n, const char*, int) {
  g_openssl_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n);
}
void* CountingRealloc(void* p, size_t n, const char*, int) {
  g_openssl_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::realloc(p, n);
}
void CountingFree(void* p, const char*, int) { std::free(p); }

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "tls_relay_microbench: %s\n", what.c_str());
  std::exit(1);
}

void Pair(int fds[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    Die(std::string("socketpair: ") + std::strerror(errno));
  }
}

// Non-blocking handshake of both ends, stepped alternately.
void Handshake(SSL* client, SSL* server) {
  bool client_done = false;
  bool server_done = false;
  for (int i = 0; i < 10000 && !(client_done && server_done); ++i) {
    if (!client_done) {
      int rc = SSL_do_handshake(client);
      int err = SSL_get_error(client, rc);
      if (rc == 1) client_done = true;
      else if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) Die("client handshake");
    }
    if (!server_done) {
      int rc = SSL_do_handshake(server);
      int err = SSL_get_error(server, rc);
      if (rc == 1) server_done = true;
      else if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) Die("server handshake");
    }
  }
  if (!(client_done && server_done)) Die("handshake did not finish");
}

}  // namespace

int main(int argc, char** argv) {
  // Must precede every OpenSSL allocation.
  CRYPTO_set_mem_functions(CountingMalloc, CountingRealloc, CountingFree);
  const uint64_t total = (argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1024) << 20;

  std::string dir = std::filesystem::temp_directory_path() / ("alknet-relay-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  if (!alknet::GenerateSelfSignedCertificate(dir + "/c.pem", dir + "/k.pem", "bench").ok()) {
    Die("certificate");
  }
  std::string fingerprint;
  auto server_ctx = alknet::BuildServerContext(dir + "/c.pem", dir + "/k.pem", &fingerprint);
  alknet::TlsClientOptions client_options;
  client_options.host = "bench";
  client_options.insecure = true;
  auto client_ctx = alknet::BuildClientContext(client_options);
  std::filesystem::remove_all(dir);
  if (!server_ctx.ok() || !client_ctx.ok()) Die("contexts");

  int link[2], plain_a[2], plain_b[2];
  Pair(link);
  Pair(plain_a);
  Pair(plain_b);
  SSL* client = SSL_new(client_ctx->get());
  SSL* server = SSL_new(server_ctx->get());
  SSL_set_fd(client, link[0]);
  SSL_set_fd(server, link[1]);
  const bool keep_buffers = argc > 2 && std::string(argv[2]) == "keep-buffers";
  if (keep_buffers) {
    SSL_clear_mode(client, SSL_MODE_RELEASE_BUFFERS);
    SSL_clear_mode(server, SSL_MODE_RELEASE_BUFFERS);
  }
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  Handshake(client, server);

  std::vector<char> scratch_a(256 * 1024), scratch_b(256 * 1024);
  alknet::TlsRelay sender, receiver;  // plain_a[1] -> TLS -> plain_b[1]
  sender.Start(client, plain_a[1], "", {scratch_a.data(), scratch_a.size()});
  receiver.Start(server, plain_b[1], "", {scratch_b.data(), scratch_b.size()});

  std::vector<char> source(256 * 1024, 'x'), sink(256 * 1024);
  uint64_t written = 0, received = 0;
  uint64_t warmup = std::min<uint64_t>(total / 8, 64 << 20);
  double cpu_start = 0;
  uint64_t allocations_start = 0;
  uint64_t openssl_allocations_start = 0;
  bool measuring = false;
  while (received < total) {
    if (!measuring && received >= warmup) {
      measuring = true;
      cpu_start = CpuSeconds();
      allocations_start = alknet::OperatorNewCount();
      openssl_allocations_start = g_openssl_allocations.load();
    }
    if (written < total) {
      ssize_t n = send(plain_a[0], source.data(), std::min<uint64_t>(source.size(), total - written),
                       MSG_NOSIGNAL);
      if (n > 0) written += static_cast<uint64_t>(n);
    }
    for (alknet::TlsRelay* relay : {&sender, &receiver}) {
      relay->OnTlsEvents(EPOLLIN | EPOLLOUT);
      relay->OnPlainEvents(EPOLLIN);
      if (relay->Pump() == alknet::TlsRelay::State::kFailed) Die("relay failed: " + relay->error());
    }
    for (;;) {
      ssize_t n = recv(plain_b[0], sink.data(), sink.size(), 0);
      if (n <= 0) break;
      received += static_cast<uint64_t>(n);
    }
  }
  double cpu = CpuSeconds() - cpu_start;
  uint64_t allocations = alknet::OperatorNewCount() - allocations_start;
  uint64_t openssl_allocations = g_openssl_allocations.load() - openssl_allocations_start;
  double measured_gib = static_cast<double>(total - warmup) / (1 << 30);
  std::printf("tls relay pair (encrypt + decrypt, %zu KiB chunks, %s): %.0f MiB moved, "
              "%.3f CPU s, %.1f MiB per CPU-second, %.3f CPU s/GiB, allocations per GiB: "
              "%.1f by operator new (alknet), %.1f by OpenSSL\n",
              alknet::kTlsRelayChunk / 1024, keep_buffers ? "keep-buffers" : "release-buffers",
              static_cast<double>(total - warmup) / (1 << 20), cpu,
              static_cast<double>(total - warmup) / (1 << 20) / cpu, cpu / measured_gib,
              static_cast<double>(allocations) / measured_gib,
              static_cast<double>(openssl_allocations) / measured_gib);
  SSL_free(client);
  SSL_free(server);
  return 0;
}
