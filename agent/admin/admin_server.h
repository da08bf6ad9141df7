// The admin API's gRPC server: the services over AdminCore, grpc.health.v1 and server
// reflection, on a Unix socket (mode 0600) and optionally on TCP with mutual TLS only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/admin/admin_core.h"
#include "server/common/log.h"
#include "server/common/net_address.h"

namespace alknet::admin {

struct AdminServerOptions {
  std::string unix_socket;            // required
  std::optional<HostPort> tcp_listen; // with mutual TLS
  std::string tls_cert;               // PEM files of the TCP listener
  std::string tls_key;
  std::string client_ca;
  // A binary upgrade's new process: the old agent still serves `unix_socket` until this one is
  // ready, so its live socket file is replaced instead of refused.
  bool take_over_socket = false;
};

class AdminServer {
 public:
  // Binds every listener and starts serving; fails if any cannot be bound or the socket's
  // directory is writable by others.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(AdminCore& core,
                                                            const AdminServerOptions& options,
                                                            Logger& logger);
  ~AdminServer();

  // "unix:/path", "127.0.0.1:7000".
  const std::vector<std::string>& addresses() const { return addresses_; }
  // grpc.health.v1: the overall status ("") follows the agent's readiness (/readyz); the
  // agent polls the engine and calls this (the engine knows no gRPC). Starts NOT_SERVING.
  void SetServing(bool serving);
  // SIGTERM: every status ("" and each service) NOT_SERVING for good, while the server keeps
  // answering through the drain.
  void BeginDrain();
  // Stops accepting and waits up to `deadline` for calls in flight.
  void Shutdown(absl::Duration deadline);
  // Binary upgrade: the socket path now belongs to the new process; Shutdown() leaves it.
  void KeepSocketFile() { keep_socket_file_ = true; }

 private:
  AdminServer() = default;

  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> addresses_;
  std::string unix_socket_;
  bool keep_socket_file_ = false;
  absl::Mutex health_mu_;
  bool serving_ ABSL_GUARDED_BY(health_mu_) = false;
  bool draining_ ABSL_GUARDED_BY(health_mu_) = false;
};

}  // namespace alknet::admin
