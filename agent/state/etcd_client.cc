// etcd v3 over gRPC: KV, Watch and Lease calls, each with a deadline, errors as absl::Status.
#include "agent/state/etcd_client.h"

#include <netdb.h>
#include <sys/socket.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/common/net_address.h"
#include "server/common/strings.h"

namespace alknet::state {
namespace {

namespace pb = etcdserverpb;

// The one place grpc::Status becomes absl::Status.
absl::Status FromGrpc(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  std::string message = absl::StrCat("etcd ", Sv(what), ": ", status.error_message());
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::UnavailableError(message);
    case grpc::StatusCode::CANCELLED:
      return absl::CancelledError(message);
    case grpc::StatusCode::NOT_FOUND:
      return absl::NotFoundError(message);
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(message);
    case grpc::StatusCode::OUT_OF_RANGE:
      return absl::OutOfRangeError(message);
    default:
      // etcd answers "no leader" and "too many requests" as UNKNOWN/UNAVAILABLE: retryable.
      return absl::UnavailableError(message);
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(Sv(what), " ", path, ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// "ipv4:a:p,b:p" / "ipv6:[a]:p,...": every endpoint resolved now, so that gRPC's pick_first
// moves to the next member when one goes away.
absl::StatusOr<std::string> Target(const config::StateStoreUrl& url) {
  std::vector<std::string> v4;
  std::vector<std::string> v6;
  for (const HostPort& endpoint : url.endpoints) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    std::string port = absl::StrCat(endpoint.port);
    if (int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      return absl::UnavailableError(absl::StrCat("etcd endpoint ", endpoint.ToString(),
                                                 ": cannot resolve (", ::gai_strerror(rc), ")"));
    }
    for (addrinfo* at = found; at != nullptr; at = at->ai_next) {
      SocketEndpoint address = DescribeSockaddr(at->ai_addr, at->ai_addrlen);
      if (at->ai_family == AF_INET) v4.push_back(absl::StrCat(address.ip, ":", address.port));
      if (at->ai_family == AF_INET6) v6.push_back(absl::StrCat("[", address.ip, "]:", address.port));
    }
    ::freeaddrinfo(found);
  }
  if (!v4.empty()) return absl::StrCat("ipv4:", absl::StrJoin(v4, ","));
  if (!v6.empty()) return absl::StrCat("ipv6:", absl::StrJoin(v6, ","));
  return absl::UnavailableError("etcd endpoints resolve to no address");
}

std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char last = static_cast<unsigned char>(prefix.back());
    if (last < 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

EtcdKeyValue FromPb(const mvccpb::KeyValue& kv) {
  return EtcdKeyValue{kv.key(), kv.value(), kv.mod_revision()};
}

}  // namespace

struct EtcdClient::Stubs {
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Lease::Stub> lease;
};

void EtcdWatchCancel::Cancel() {
  cancelled_.store(true);
  absl::MutexLock lock(&mu_);
  if (context_ != nullptr) context_->TryCancel();
}

void EtcdWatchCancel::Attach(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  context_ = context;
  if (context_ != nullptr && cancelled_.load()) context_->TryCancel();
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(const EtcdOptions& options) {
  absl::StatusOr<std::string> target = Target(options.url);
  if (!target.ok()) return target.status();
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (options.url.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadFile(options.ca_file, "state.etcd_ca");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!options.cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile(options.cert_file, "state.etcd_cert");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile(options.key_file, "state.etcd_key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    credentials = grpc::SslCredentials(ssl);
    // Members are named in their certificates as in the URL, not by the resolved addresses.
    args.SetSslTargetNameOverride(options.url.endpoints.front().host);
  }
  // Find a member that is back within a second; notice a silent one through keepalives (etcd
  // accepts pings every 5 s at most by default).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(*target, credentials, args);
  return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(channel), options.call_timeout));
}

EtcdClient::EtcdClient(std::shared_ptr<grpc::Channel> channel, absl::Duration call_timeout)
    : channel_(std::move(channel)), call_timeout_(call_timeout), stubs_(std::make_unique<Stubs>()) {
  stubs_->kv = pb::KV::NewStub(channel_);
  stubs_->watch = pb::Watch::NewStub(channel_);
  stubs_->lease = pb::Lease::NewStub(channel_);
}

EtcdClient::~EtcdClient() = default;

namespace {
// A call context with the deadline. A call waits (up to it) for a member to connect instead of
// failing on the channel's last error: a member that just came back is used at once. Requests
// fail fast at a member that lost its leader.
void Prepare(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  context.set_wait_for_ready(true);
  context.AddMetadata("hasleader", "true");
}
}  // namespace

absl::StatusOr<std::optional<EtcdKeyValue>> EtcdClient::Get(const std::string& key,
                                                            int64_t* store_revision) {
  grpc::ClientContext context;
  Prepare(context, call_timeout_);
  pb::RangeRequest request;
  request.set_key(key);
  pb::RangeResponse response;
  if (absl::Status status = FromGrpc(stubs_->kv->Range(&context, request, &response), "get");
      !status.ok()) {
    return status;
  }
  if (store_revision != nullptr) *store_revision = response.header().revision();
  if (response.kvs_size() == 0) return std::nullopt;
  return FromPb(response.kvs(0));
}

absl::StatusOr<std::vector<EtcdKeyValue>> EtcdClient::List(const std::string& prefix) {
  grpc::ClientContext context;
  Prepare(context, call_timeout_);
  pb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixEnd(prefix));
  pb::RangeResponse response;
  if (absl::Status status = FromGrpc(stubs_->kv->Range(&context, request, &response), "list");
      !status.ok()) {
    return status;
  }
  std::vector<EtcdKeyValue> out;
  for (const mvccpb::KeyValue& kv : response.kvs()) out.push_back(FromPb(kv));
  return out;
}

absl::StatusOr<int64_t> EtcdClient::PutIf(const std::string& key, const std::string& value,
                                          int64_t expected_mod_revision) {
  grpc::ClientContext context;
  Prepare(context, call_timeout_);
  pb::TxnRequest request;
  pb::Compare* compare = request.add_compare();
  compare->set_key(key);
  compare->set_result(pb::Compare::EQUAL);
  if (expected_mod_revision == 0) {
    compare->set_target(pb::Compare::VERSION);
    compare->set_version(0);
  } else {
    compare->set_target(pb::Compare::MOD);
    compare->set_mod_revision(expected_mod_revision);
  }
  pb::PutRequest* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  pb::TxnResponse response;
  if (absl::Status status = FromGrpc(stubs_->kv->Txn(&context, request, &response), "txn");
      !status.ok()) {
    return status;
  }
  if (!response.succeeded()) {
    return absl::AbortedError(absl::StrCat("etcd: ", key, " changed since revision ",
                                           expected_mod_revision));
  }
  return response.header().revision();
}

absl::Status EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease) {
  grpc::ClientContext context;
  Prepare(context, call_timeout_);
  pb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  pb::PutResponse response;
  return FromGrpc(stubs_->kv->Put(&context, request, &response), "put");
}

absl::Status EtcdClient::Delete(const std::string& key) {
  grpc::ClientContext context;
  Prepare(context, call_timeout_);
  pb::DeleteRangeRequest request;
  request.set_key(key);
  pb::DeleteRangeResponse response;
  return FromGrpc(stubs_->kv->DeleteRange(&context, request, &response), "delete");
}

absl::StatusOr<int64_t> EtcdClient::GrantLease(absl::Duration ttl) {
  grpc::ClientContext context;
  Prepare(context, call_timeout_);
  pb::LeaseGrantRequest request;
  request.set_ttl(absl::ToInt64Seconds(ttl));
  pb::LeaseGrantResponse response;
  if (absl::Status status =
          FromGrpc(stubs_->lease->LeaseGrant(&context, request, &response), "lease grant");
      !status.ok()) {
    return status;
  }
  if (!response.error().empty()) {
    return absl::UnavailableError(absl::StrCat("etcd lease grant: ", response.error()));
  }
  return response.id();
}

absl::Status EtcdClient::KeepAlive(int64_t lease) {
  grpc::ClientContext context;
  Prepare(context, call_timeout_);
  auto stream = stubs_->lease->LeaseKeepAlive(&context);
  pb::LeaseKeepAliveRequest request;
  request.set_id(lease);
  pb::LeaseKeepAliveResponse response;
  bool answered = stream->Write(request) && stream->Read(&response);
  stream->WritesDone();
  context.TryCancel();
  absl::Status finished = FromGrpc(stream->Finish(), "lease keepalive");
  if (!answered) {
    return finished.ok() || absl::IsCancelled(finished)
               ? absl::UnavailableError("etcd lease keepalive: no answer")
               : finished;
  }
  if (response.ttl() <= 0) return absl::NotFoundError("etcd lease keepalive: the lease expired");
  return absl::OkStatus();
}

absl::Status EtcdClient::RevokeLease(int64_t lease) {
  grpc::ClientContext context;
  Prepare(context, call_timeout_);
  pb::LeaseRevokeRequest request;
  request.set_id(lease);
  pb::LeaseRevokeResponse response;
  return FromGrpc(stubs_->lease->LeaseRevoke(&context, request, &response), "lease revoke");
}

absl::Status EtcdClient::Watch(const std::string& key, bool prefix, int64_t start_revision,
                               const std::function<void()>& on_created,
                               const std::function<void(const EtcdEvent&)>& on_event,
                               EtcdWatchCancel& cancel) {
  grpc::ClientContext context;
  context.AddMetadata("hasleader", "true");
  context.set_wait_for_ready(true);  // the watchdog below bounds the wait
  cancel.Attach(&context);
  // A member that takes the connection but does not answer (still starting, stopped) must not
  // hold the watch: without etcd's "created" within the call timeout the attempt is abandoned.
  // (Opening the stream itself waits for the connection.)
  absl::Notification answered;
  std::thread watchdog([&] {
    if (!answered.WaitForNotificationWithTimeout(call_timeout_)) context.TryCancel();
  });
  auto stream = stubs_->watch->Watch(&context);
  pb::WatchRequest request;
  pb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(key);
  if (prefix) create->set_range_end(PrefixEnd(key));
  create->set_start_revision(start_revision);
  absl::Status result = absl::UnavailableError("etcd watch: the stream ended");
  bool created = false;
  if (stream->Write(request)) {
    pb::WatchResponse response;
    while (stream->Read(&response)) {
      if (!answered.HasBeenNotified()) answered.Notify();
      if (response.canceled()) {
        result = response.compact_revision() > 0
                     ? absl::OutOfRangeError(absl::StrCat(
                           "etcd watch: revision ", start_revision,
                           " was compacted (oldest kept: ", response.compact_revision(), ")"))
                     : absl::UnavailableError(
                           absl::StrCat("etcd watch cancelled: ", response.cancel_reason()));
        break;
      }
      if (response.created() && !created) {
        created = true;
        on_created();
      }
      for (const mvccpb::Event& event : response.events()) {
        on_event(EtcdEvent{event.type() == mvccpb::Event::DELETE, FromPb(event.kv())});
      }
    }
  }
  if (!answered.HasBeenNotified()) answered.Notify();
  watchdog.join();
  context.TryCancel();
  grpc::Status finished = stream->Finish();
  cancel.Attach(nullptr);
  if (!created && result.message() == "etcd watch: the stream ended") {
    result = absl::UnavailableError(
        absl::StrCat("etcd watch: no answer within ", absl::FormatDuration(call_timeout_)));
  }
  if (cancel.cancelled()) return absl::CancelledError("etcd watch: stopped");
  if (!finished.ok() && finished.error_code() != grpc::StatusCode::CANCELLED) {
    return FromGrpc(finished, "watch");
  }
  return result;
}

}  // namespace alknet::state
