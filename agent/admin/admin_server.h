// The admin API's gRPC server: the services over AdminCore, grpc.health.v1 and server
// reflection, on a Unix socket (mode 0600) and optionally on TCP with mutual TLS only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"
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
  // Stops accepting and waits up to `deadline` for calls in flight.
  void Shutdown(absl::Duration deadline);

 private:
  AdminServer() = default;

  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> addresses_;
  std::string unix_socket_;
};

}  // namespace alknet::admin
