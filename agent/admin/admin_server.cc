// The admin API's gRPC server: one synchronous service class per proto service, mapping
// absl::Status codes one to one onto gRPC status codes.
#include "agent/admin/admin_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "alknet/admin/v1/agent.grpc.pb.h"
#include "alknet/admin/v1/forwards.grpc.pb.h"
#include "alknet/admin/v1/keys.grpc.pb.h"
#include "alknet/admin/v1/policy.grpc.pb.h"
#include "alknet/admin/v1/sessions.grpc.pb.h"
#include "server/common/errno_status.h"
#include "server/common/strings.h"
#include "server/common/unique_fd.h"

namespace alknet::admin {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;  // ListKeys of 100k keys fits

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

template <typename Response>
grpc::Status Reply(absl::StatusOr<Response> result, Response* response) {
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

class KeysService final : public v1::Keys::Service {
 public:
  explicit KeysService(AdminCore& core) : core_(core) {}
  grpc::Status AddKey(grpc::ServerContext*, const v1::AddKeyRequest* request,
                      v1::AddKeyResponse* response) override {
    return Reply(core_.AddKey(*request), response);
  }
  grpc::Status ListKeys(grpc::ServerContext*, const v1::ListKeysRequest*,
                        v1::ListKeysResponse* response) override {
    *response = core_.ListKeys();
    return grpc::Status::OK;
  }
  grpc::Status RemoveKey(grpc::ServerContext*, const v1::RemoveKeyRequest* request,
                         v1::RemoveKeyResponse* response) override {
    return Reply(core_.RemoveKey(*request), response);
  }
  grpc::Status ImportKeys(grpc::ServerContext*, const v1::ImportKeysRequest* request,
                          v1::ImportKeysResponse* response) override {
    return Reply(core_.ImportKeys(*request), response);
  }
  grpc::Status ExportKeys(grpc::ServerContext*, const v1::ExportKeysRequest* request,
                          v1::ExportKeysResponse* response) override {
    *response = core_.ExportKeys(*request);
    return grpc::Status::OK;
  }

 private:
  AdminCore& core_;
};

class PolicyService final : public v1::Policy::Service {
 public:
  explicit PolicyService(AdminCore& core) : core_(core) {}
  grpc::Status GetPolicy(grpc::ServerContext*, const v1::GetPolicyRequest*,
                         v1::GetPolicyResponse* response) override {
    *response = core_.GetPolicy();
    return grpc::Status::OK;
  }
  grpc::Status SetPolicy(grpc::ServerContext*, const v1::SetPolicyRequest* request,
                         v1::SetPolicyResponse* response) override {
    return Reply(core_.SetPolicy(*request), response);
  }
  grpc::Status ValidatePolicy(grpc::ServerContext*, const v1::ValidatePolicyRequest* request,
                              v1::ValidatePolicyResponse* response) override {
    return Reply(core_.ValidatePolicy(*request), response);
  }
  grpc::Status ListPenalties(grpc::ServerContext*, const v1::ListPenaltiesRequest*,
                             v1::ListPenaltiesResponse* response) override {
    *response = core_.ListPenalties();
    return grpc::Status::OK;
  }
  grpc::Status ClearPenalties(grpc::ServerContext*, const v1::ClearPenaltiesRequest* request,
                              v1::ClearPenaltiesResponse* response) override {
    return Reply(core_.ClearPenalties(*request), response);
  }
  grpc::Status TestForward(grpc::ServerContext*, const v1::TestForwardRequest* request,
                           v1::TestForwardResponse* response) override {
    return Reply(core_.TestForward(*request), response);
  }

 private:
  AdminCore& core_;
};

class SessionsService final : public v1::Sessions::Service {
 public:
  explicit SessionsService(AdminCore& core) : core_(core) {}
  grpc::Status ListSessions(grpc::ServerContext*, const v1::ListSessionsRequest* request,
                            v1::ListSessionsResponse* response) override {
    return Reply(core_.ListSessions(*request), response);
  }
  grpc::Status KillSessions(grpc::ServerContext*, const v1::KillSessionsRequest* request,
                            v1::KillSessionsResponse* response) override {
    return Reply(core_.KillSessions(*request), response);
  }

 private:
  AdminCore& core_;
};

class AgentService final : public v1::Agent::Service {
 public:
  explicit AgentService(AdminCore& core) : core_(core) {}
  grpc::Status GetStatus(grpc::ServerContext*, const v1::GetStatusRequest* request,
                         v1::GetStatusResponse* response) override {
    return Reply(core_.GetStatus(*request), response);
  }
  grpc::Status Upgrade(grpc::ServerContext*, const v1::UpgradeRequest*,
                       v1::UpgradeResponse* response) override {
    return Reply(core_.Upgrade(), response);
  }

 private:
  AdminCore& core_;
};

class ForwardsService final : public v1::Forwards::Service {
 public:
  explicit ForwardsService(AdminCore& core) : core_(core) {}
  grpc::Status AddForward(grpc::ServerContext*, const v1::AddForwardRequest* request,
                          v1::AddForwardResponse* response) override {
    return Reply(core_.AddForward(*request), response);
  }
  grpc::Status ListForwards(grpc::ServerContext*, const v1::ListForwardsRequest*,
                            v1::ListForwardsResponse* response) override {
    *response = core_.ListForwards();
    return grpc::Status::OK;
  }
  grpc::Status RemoveForward(grpc::ServerContext*, const v1::RemoveForwardRequest* request,
                             v1::RemoveForwardResponse* response) override {
    return Reply(core_.RemoveForward(*request), response);
  }

 private:
  AdminCore& core_;
};

absl::StatusOr<std::string> ReadPem(const std::string& path, std::string_view field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat(Sv(field), ": cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (buffer.str().find("-----BEGIN") == std::string::npos) {
    return absl::FailedPreconditionError(absl::StrCat(Sv(field), ": ", path, " is not a PEM file"));
  }
  return buffer.str();
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// The socket's directory must not let others replace the socket; a live socket means another
// agent is serving it (unless `take_over`: an upgrade's new process replaces the old one's).
absl::Status CheckSocketPath(const std::string& path, bool take_over) {
  sockaddr_un address{};
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin.socket: '", path, "' must be 1..", sizeof(address.sun_path) - 1, " bytes"));
  }
  std::string dir = DirName(path);
  struct stat info {};
  if (::stat(dir.c_str(), &info) != 0) return ErrnoStatus(absl::StrCat("admin socket directory ", dir), errno);
  if ((info.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (info.st_mode & S_ISVTX) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "admin socket directory ", dir, " is writable by group or others; make it private (chmod 700)"));
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, path.size());
  if (!take_over && probe.valid() &&
      ::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("admin socket ", path, " is served by another process"));
  }
  if (::lstat(path.c_str(), &info) == 0) {
    if (!S_ISSOCK(info.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("admin.socket: ", path, " exists and is not a socket"));
    }
    // A stale socket of an earlier run goes; the upgraded agent's stays until the rename in
    // Start replaces it, so the path never goes missing during a handover.
    if (!take_over) ::unlink(path.c_str());
  }
  return absl::OkStatus();
}

// Where gRPC binds: a name of this process's own beside the socket, renamed onto the socket's
// path once listening. gRPC unlinks the path it bound when its listener goes away; after the
// rename that name is gone, so an upgraded agent's exit cannot remove its successor's socket.
// A path too long for the suffix is bound directly.
std::string BindPath(const std::string& path) {
  std::string bind = absl::StrCat(path, ".", ::getpid());
  return bind.size() < sizeof(sockaddr_un{}.sun_path) ? bind : path;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(AdminCore& core,
                                                                const AdminServerOptions& options,
                                                                Logger& logger) {
  if (absl::Status status = CheckSocketPath(options.unix_socket, options.take_over_socket);
      !status.ok()) {
    return status;
  }
  std::unique_ptr<AdminServer> server(new AdminServer());
  server->unix_socket_ = options.unix_socket;
  const std::string bind_path = BindPath(options.unix_socket);
  if (bind_path != options.unix_socket) ::unlink(bind_path.c_str());  // a crashed run's, same pid

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.AddListeningPort(absl::StrCat("unix:", bind_path), grpc::InsecureServerCredentials());
  int tcp_port = 0;
  if (options.tcp_listen) {
    if (options.client_ca.empty()) {
      return absl::InvalidArgumentError("admin.listen: a TCP admin listener needs admin.client_ca");
    }
    absl::StatusOr<std::string> cert = ReadPem(options.tls_cert, "admin.tls_cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem(options.tls_key, "admin.tls_key");
    if (!key.ok()) return key.status();
    absl::StatusOr<std::string> ca = ReadPem(options.client_ca, "admin.client_ca");
    if (!ca.ok()) return ca.status();
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = *ca;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    builder.AddListeningPort(options.tcp_listen->ToString(), grpc::SslServerCredentials(ssl), &tcp_port);
  }
  server->services_.push_back(std::make_unique<KeysService>(core));
  server->services_.push_back(std::make_unique<PolicyService>(core));
  server->services_.push_back(std::make_unique<SessionsService>(core));
  server->services_.push_back(std::make_unique<AgentService>(core));
  server->services_.push_back(std::make_unique<ForwardsService>(core));
  for (auto& service : server->services_) builder.RegisterService(service.get());

  // The socket is created by BuildAndStart: no other user may connect in between.
  mode_t old_mask = ::umask(0177);
  server->server_ = builder.BuildAndStart();
  ::umask(old_mask);
  if (server->server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "admin API: cannot listen on unix:", options.unix_socket,
        options.tcp_listen ? absl::StrCat(" or ", options.tcp_listen->ToString()) : ""));
  }
  if (::chmod(bind_path.c_str(), 0600) != 0) {
    server->server_->Shutdown();
    return ErrnoStatus(absl::StrCat("chmod ", bind_path), errno);
  }
  if (bind_path != options.unix_socket && ::rename(bind_path.c_str(), options.unix_socket.c_str()) != 0) {
    int error = errno;
    server->server_->Shutdown();
    return ErrnoStatus(absl::StrCat("rename ", bind_path, " to ", options.unix_socket), error);
  }
  if (options.tcp_listen && tcp_port == 0) {
    server->server_->Shutdown();
    return absl::UnavailableError(absl::StrCat("admin API: cannot listen on ", options.tcp_listen->ToString()));
  }
  server->addresses_.push_back(absl::StrCat("unix:", options.unix_socket));
  if (options.tcp_listen) {
    HostPort bound = *options.tcp_listen;
    bound.port = static_cast<uint16_t>(tcp_port);
    server->addresses_.push_back(bound.ToString());
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(false);  // "": the agent's readiness, set by SetServing()
    for (const char* name : {"alknet.admin.v1.Keys", "alknet.admin.v1.Policy", "alknet.admin.v1.Sessions",
                             "alknet.admin.v1.Agent", "alknet.admin.v1.Forwards"}) {
      health->SetServingStatus(name, true);
    }
  }
  for (const std::string& address : server->addresses_) {
    logger.Info("admin", "listening", {{"address", address}, {"tls", absl::StartsWith(address, "unix:") ? "no" : "mutual"}});
  }
  return server;
}

void AdminServer::SetServing(bool serving) {
  absl::MutexLock lock(&health_mu_);
  if (server_ == nullptr || draining_ || serving == serving_) return;
  serving_ = serving;
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(serving);
  }
}

void AdminServer::BeginDrain() {
  absl::MutexLock lock(&health_mu_);
  if (server_ == nullptr || draining_) return;
  draining_ = true;
  serving_ = false;
  // Every registered status to NOT_SERVING; later SetServingStatus calls are ignored.
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) health->Shutdown();
}

AdminServer::~AdminServer() { Shutdown(absl::ZeroDuration()); }

void AdminServer::Shutdown(absl::Duration deadline) {
  if (server_ == nullptr) return;
  BeginDrain();
  // gRPC unlinks only the name it bound, gone since Start's rename (BindPath); after a binary
  // upgrade the socket's path is the new process's and stays (KeepSocketFile).
  server_->Shutdown(std::chrono::time_point_cast<std::chrono::system_clock::duration>(
      std::chrono::system_clock::now() + absl::ToChronoNanoseconds(deadline)));
  server_->Wait();
  absl::MutexLock lock(&health_mu_);
  server_.reset();
  if (!keep_socket_file_) ::unlink(unix_socket_.c_str());
}

}  // namespace alknet::admin
