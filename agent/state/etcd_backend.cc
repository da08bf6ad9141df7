// The etcd state backend: load, compare-and-swap commit, the watcher thread and the local copy.
#include "agent/state/etcd_backend.h"

#include <chrono>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/state/state_store.h"

namespace alknet::state {
namespace {

constexpr absl::Duration kFirstRetry = absl::Milliseconds(100);
constexpr absl::Duration kLastRetry = absl::Seconds(2);
constexpr absl::Duration kReplicaLease = absl::Seconds(10);
constexpr absl::Duration kReplicaRenew = absl::Seconds(3);
// A replica record whose only change is session counters is republished at most this often.
constexpr absl::Duration kCounterRepublish = absl::Seconds(10);
// A kill request's lease outlives the requester's wait by this much (etcd's TTLs are seconds).
constexpr absl::Duration kKillLeaseSlack = absl::Seconds(5);
constexpr absl::Duration kKillPoll = absl::Milliseconds(20);

// `replica` without what moves all the time (session byte and channel counters).
std::string Shape(const v1::Replica& replica) {
  v1::Replica shape = replica;
  for (admin::v1::SessionInfo& session : *shape.mutable_sessions()) {
    session.clear_bytes_up();
    session.clear_bytes_down();
    session.clear_open_channels();
    session.clear_channels_opened();
  }
  return shape.SerializeAsString();
}

}  // namespace

EtcdStateBackend::EtcdStateBackend(std::unique_ptr<EtcdClient> client, EtcdOptions options,
                                   std::unique_ptr<StateBackend> local,
                                   std::string local_copy_path, Logger& logger)
    : client_(std::move(client)), options_(std::move(options)), local_(std::move(local)),
      local_copy_path_(std::move(local_copy_path)), logger_(logger) {}

EtcdStateBackend::~EtcdStateBackend() {
  cancel_.Cancel();
  kill_cancel_.Cancel();
  if (watcher_.joinable()) watcher_.join();
  if (announcer_.joinable()) announcer_.join();
  if (kill_server_.joinable()) kill_server_.join();
}

void EtcdStateBackend::Pause(absl::Duration how_long) const {
  absl::Time until = absl::Now() + how_long;
  while (!cancel_.cancelled() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
}

std::string EtcdStateBackend::Describe() const { return options_.url.ToString(); }

std::string EtcdStateBackend::StateKey() const { return absl::StrCat(options_.url.prefix, "/state"); }

absl::Status EtcdStateBackend::Lock() { return local_->Lock(); }

void EtcdStateBackend::Unlock() { local_->Unlock(); }

bool EtcdStateBackend::reachable() const {
  absl::MutexLock lock(&mu_);
  return reachable_;
}

void EtcdStateBackend::SetReachable(bool reachable) {
  ReachabilityCallback report;
  {
    absl::MutexLock lock(&mu_);
    if (reachable_ == reachable) return;
    reachable_ = reachable;
    report = on_reachable_;
  }
  if (reachable) {
    logger_.Info("state", "etcd reachable again", {{"store", Describe()}});
  } else {
    logger_.Warn("state", "etcd unreachable: serving the last state, refusing changes",
                 {{"store", Describe()}});
  }
  if (report) report(reachable);
}

void EtcdStateBackend::WriteLocalCopy(const v1::State& state) {
  absl::StatusOr<WriteResult> written = WriteStateFile(local_copy_path_, state);
  if (!written.ok()) {
    logger_.Warn("state", "cannot write the local copy of the etcd state",
                 {{"path", local_copy_path_}, {"error", std::string(written.status().message())}});
  }
}

bool EtcdStateBackend::Adopt(const v1::State& state, int64_t mod_revision) {
  if (state.generation() > generation_) {
    generation_ = state.generation();
    mod_revision_ = mod_revision;
    return true;
  }
  if (mod_revision > mod_revision_) {
    if (state.generation() < generation_) {
      // etcd went back (restored from a backup?): the next write replaces it with this state.
      logger_.Error("state", "etcd holds an older state generation than this replica",
                    {{"etcd_generation", absl::StrCat(state.generation())},
                     {"generation", absl::StrCat(generation_)}});
    }
    mod_revision_ = mod_revision;
  }
  return false;
}

absl::StatusOr<std::optional<v1::State>> EtcdStateBackend::Load() {
  int64_t store_revision = 0;
  absl::StatusOr<std::optional<EtcdKeyValue>> got = client_->Get(StateKey(), &store_revision);
  if (!got.ok()) {
    if (!absl::IsUnavailable(got.status())) return got.status();
    absl::StatusOr<std::optional<v1::State>> copy = ReadStateFile(local_copy_path_);
    if (!copy.ok()) return copy.status();
    if (!copy->has_value()) {
      return absl::UnavailableError(absl::StrCat(got.status().message(), "; no local copy (",
                                                 local_copy_path_, ") to serve from"));
    }
    {
      absl::MutexLock lock(&mu_);
      generation_ = (*copy)->generation();
      mod_revision_ = -1;
    }
    SetReachable(false);
    logger_.Warn("state", "etcd unreachable at start: serving the local copy",
                 {{"path", local_copy_path_}, {"generation", absl::StrCat(generation_)},
                  {"error", std::string(got.status().message())}});
    return copy;
  }
  if (!got->has_value()) return Seed();
  absl::StatusOr<v1::State> state = DecodeStateFile((*got)->value, StateKey());
  if (!state.ok()) return state.status();
  {
    absl::MutexLock lock(&mu_);
    generation_ = state->generation();
    mod_revision_ = (*got)->mod_revision;
  }
  WriteLocalCopy(*state);
  return std::optional<v1::State>(*std::move(state));
}

absl::StatusOr<std::optional<v1::State>> EtcdStateBackend::Seed() {
  absl::StatusOr<std::optional<v1::State>> file = local_->Load();
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("etcd holds no state yet, and the state file that would seed it "
                                     "is unusable: ", file.status().message()));
  }
  if (!file->has_value()) {
    absl::MutexLock lock(&mu_);
    generation_ = 0;
    mod_revision_ = 0;
    return std::optional<v1::State>();
  }
  // Create-only: when another replica seeds the prefix first, its state is the one to load.
  absl::StatusOr<int64_t> put = client_->PutIf(StateKey(), EncodeStateFile(**file), 0);
  if (absl::IsAborted(put.status())) return Load();
  if (!put.ok()) return put.status();
  {
    absl::MutexLock lock(&mu_);
    generation_ = (*file)->generation();
    mod_revision_ = *put;
  }
  logger_.Info("state", "etcd held no state: seeded it from this agent's state file",
               {{"store", Describe()}, {"generation", absl::StrCat((*file)->generation())},
                {"api_keys", absl::StrCat((*file)->keys_size())}});
  WriteLocalCopy(**file);
  return file;
}

absl::StatusOr<CommitResult> EtcdStateBackend::Commit(uint64_t expected_generation,
                                                      const v1::State& next) {
  if (next.generation() != expected_generation + 1) {
    return absl::InvalidArgumentError(absl::StrCat("state generation ", next.generation(),
                                                   " does not follow ", expected_generation));
  }
  int64_t expected_revision = 0;
  {
    absl::MutexLock lock(&mu_);
    if (expected_generation != generation_) {
      return absl::AbortedError(absl::StrCat("the state changed on another replica (generation ",
                                             generation_, "); nothing changed, retry"));
    }
    if (mod_revision_ < 0) {
      return absl::UnavailableError("etcd has not been reached since the start; nothing changed");
    }
    expected_revision = mod_revision_;
  }
  absl::StatusOr<int64_t> put = client_->PutIf(StateKey(), EncodeStateFile(next), expected_revision);
  if (!put.ok()) {
    if (absl::IsUnavailable(put.status())) {
      SetReachable(false);
      return absl::UnavailableError(
          absl::StrCat("the state store is unreachable; nothing changed (", put.status().message(), ")"));
    }
    if (absl::IsAborted(put.status())) {
      return absl::AbortedError("the state changed on another replica; nothing changed, retry");
    }
    return put.status();
  }
  SetReachable(true);
  {
    absl::MutexLock lock(&mu_);
    Adopt(next, *put);  // the watcher may have seen it first
  }
  WriteLocalCopy(next);
  return CommitResult{};
}

absl::StatusOr<std::optional<v1::State>> EtcdStateBackend::Sync(int64_t* store_revision) {
  absl::StatusOr<std::optional<EtcdKeyValue>> got = client_->Get(StateKey(), store_revision);
  if (!got.ok()) return got.status();
  if (!got->has_value()) return std::optional<v1::State>();
  absl::StatusOr<v1::State> state = DecodeStateFile((*got)->value, StateKey());
  if (!state.ok()) return state.status();
  absl::MutexLock lock(&mu_);
  if (!Adopt(*state, (*got)->mod_revision)) return std::optional<v1::State>();
  return std::optional<v1::State>(*std::move(state));
}

absl::Status EtcdStateBackend::Watch(uint64_t from_generation, ChangeCallback on_change,
                                     ReachabilityCallback on_reachable) {
  {
    absl::MutexLock lock(&mu_);
    if (watcher_.joinable()) return absl::FailedPreconditionError("already watching");
    on_reachable_ = std::move(on_reachable);
    (void)from_generation;  // the watcher reports only states newer than the one it knows
  }
  if (!reachable()) {  // Load served the local copy: tell whoever listens now
    ReachabilityCallback report;
    {
      absl::MutexLock lock(&mu_);
      report = on_reachable_;
    }
    if (report) report(false);
  }
  watcher_ = std::thread([this, on_change = std::move(on_change)] { RunWatcher(on_change); });
  return absl::OkStatus();
}

void EtcdStateBackend::RunWatcher(ChangeCallback on_change) {
  absl::Duration retry = kFirstRetry;
  // Where the watch resumes: the last revision seen; 0 when a full read is needed (at start and
  // after etcd compacted past it).
  int64_t seen_revision = 0;
  while (!cancel_.cancelled()) {
    if (seen_revision == 0) {
      absl::StatusOr<std::optional<v1::State>> synced = Sync(&seen_revision);
      if (!synced.ok()) {
        seen_revision = 0;
        if (absl::IsUnavailable(synced.status())) {
          SetReachable(false);
        } else {
          logger_.Error("state", "cannot read the state from etcd",
                        {{"key", StateKey()}, {"error", std::string(synced.status().message())}});
        }
        Pause(retry);
        retry = std::min(retry * 2, kLastRetry);
        continue;
      }
      SetReachable(true);
      if (synced->has_value()) {
        WriteLocalCopy(**synced);
        on_change(**std::move(synced));
      }
    }
    bool created = false;
    absl::Status ended = client_->Watch(
        StateKey(), /*prefix=*/false, seen_revision + 1,
        [&] {
          created = true;
          retry = kFirstRetry;
          SetReachable(true);
        },
        [&](const EtcdEvent& event) {
          seen_revision = std::max(seen_revision, event.kv.mod_revision);
          if (event.deleted) {
            logger_.Warn("state", "the state key was deleted in etcd; the next change recreates it",
                         {{"key", StateKey()}});
            absl::MutexLock lock(&mu_);
            mod_revision_ = 0;
            return;
          }
          absl::StatusOr<v1::State> state = DecodeStateFile(event.kv.value, StateKey());
          if (!state.ok()) {
            logger_.Error("state", "etcd holds a state this agent cannot read; ignored",
                          {{"key", StateKey()}, {"error", std::string(state.status().message())}});
            return;
          }
          {
            absl::MutexLock lock(&mu_);
            if (!Adopt(*state, event.kv.mod_revision)) return;
          }
          WriteLocalCopy(*state);
          on_change(*std::move(state));
        },
        cancel_);
    if (cancel_.cancelled()) break;
    if (absl::IsOutOfRange(ended)) {
      logger_.Info("state", "etcd compacted past the watch: reloading the whole state",
                   {{"error", std::string(ended.message())}});
      seen_revision = 0;
      continue;
    }
    if (!created) {
      if (absl::IsUnavailable(ended)) SetReachable(false);
      Pause(retry);
      retry = std::min(retry * 2, kLastRetry);
    } else {
      logger_.Warn("state", "etcd watch ended; resuming", {{"error", std::string(ended.message())}});
    }
  }
}

absl::Status EtcdStateBackend::Announce(const v1::Replica& self) {
  bool start = false;
  {
    absl::MutexLock lock(&mu_);
    if (self_.has_value() && Shape(*self_) == Shape(self) &&
        (absl::Now() - announced_at_ < kCounterRepublish ||
         self_->SerializeAsString() == self.SerializeAsString())) {
      return absl::OkStatus();  // nothing new, or only counters and published lately
    }
    self_ = self;
    self_changed_ = true;
    announced_at_ = absl::Now();
    start = !announcer_.joinable();
  }
  if (start) announcer_ = std::thread([this] { RunAnnouncer(); });
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Replica>> EtcdStateBackend::Replicas() {
  absl::StatusOr<std::vector<EtcdKeyValue>> listed =
      client_->List(absl::StrCat(options_.url.prefix, "/replicas/"));
  if (!listed.ok()) return listed.status();
  std::vector<v1::Replica> out;
  for (const EtcdKeyValue& kv : *listed) {
    v1::Replica replica;
    if (replica.ParseFromString(kv.value)) out.push_back(std::move(replica));
  }
  return out;
}

void EtcdStateBackend::RunAnnouncer() {
  int64_t lease = 0;
  std::string key;
  while (!cancel_.cancelled()) {
    v1::Replica self;
    bool changed = false;
    {
      absl::MutexLock lock(&mu_);
      self = *self_;
      changed = self_changed_;
      self_changed_ = false;
    }
    key = absl::StrCat(options_.url.prefix, "/replicas/", self.id());
    absl::Status step = absl::OkStatus();
    if (lease == 0) {
      absl::StatusOr<int64_t> granted = client_->GrantLease(kReplicaLease);
      step = granted.status();
      if (granted.ok()) {
        lease = *granted;
        changed = true;
      }
    } else {
      step = client_->KeepAlive(lease);
      if (absl::IsNotFound(step)) {  // etcd forgot it (an outage longer than the lease)
        lease = 0;
        continue;
      }
    }
    if (step.ok() && changed) step = client_->Put(key, self.SerializeAsString(), lease);
    if (!step.ok()) {
      absl::MutexLock lock(&mu_);
      self_changed_ = self_changed_ || changed;  // put it again once etcd answers
    }
    absl::Time until = absl::Now() + (step.ok() ? kReplicaRenew : kFirstRetry * 5);
    while (!cancel_.cancelled() && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(20));
      absl::MutexLock lock(&mu_);
      if (self_changed_) break;
    }
  }
  if (lease != 0) {
    // A clean exit leaves the fleet at once rather than when the lease runs out.
    (void)client_->RevokeLease(lease);
  }
}

absl::Status EtcdStateBackend::ServeKills(const std::string& self_id, KillHandler handler) {
  if (kill_server_.joinable()) return absl::FailedPreconditionError("already serving kills");
  kill_server_ = std::thread(
      [this, self_id, handler = std::move(handler)] { RunKillServer(self_id, handler); });
  return absl::OkStatus();
}

void EtcdStateBackend::RunKillServer(const std::string& self_id, const KillHandler& handler) {
  const std::string requests = absl::StrCat(options_.url.prefix, "/kill/", self_id, "/");
  absl::Duration retry = kFirstRetry;
  int64_t seen_revision = 0;  // 0: from now (a request older than this process is not for it)
  while (!kill_cancel_.cancelled()) {
    bool created = false;
    absl::Status ended = client_->Watch(
        requests, /*prefix=*/true, seen_revision == 0 ? 0 : seen_revision + 1,
        [&] {
          created = true;
          retry = kFirstRetry;
        },
        [&](const EtcdEvent& event) {
          seen_revision = std::max(seen_revision, event.kv.mod_revision);
          if (!event.deleted) AnswerKill(event.kv, handler);
        },
        kill_cancel_);
    if (kill_cancel_.cancelled()) break;
    if (absl::IsOutOfRange(ended)) {
      seen_revision = 0;  // requests from the gap have run out their leases by now
      continue;
    }
    if (!created) {
      Pause(retry);
      retry = std::min(retry * 2, kLastRetry);
    }
  }
}

void EtcdStateBackend::AnswerKill(const EtcdKeyValue& kv, const KillHandler& handler) {
  v1::KillRequest kill;
  const std::string replies = absl::StrCat(options_.url.prefix, "/killed/");
  if (!kill.ParseFromString(kv.value) || !absl::StartsWith(kill.reply_key(), replies)) {
    logger_.Warn("state", "ignored a kill request this agent cannot read", {{"key", kv.key}});
    return;
  }
  // A request replayed after a gap may have been withdrawn (the requester stopped waiting).
  int64_t store_revision = 0;
  absl::StatusOr<std::optional<EtcdKeyValue>> still = client_->Get(kv.key, &store_revision);
  if (!still.ok() || !still->has_value()) return;
  absl::StatusOr<uint32_t> killed = handler(kill.request());
  v1::KillReply reply;
  if (killed.ok()) {
    reply.set_killed(*killed);
  } else {
    reply.set_code(static_cast<int32_t>(killed.status().code()));
    reply.set_message(std::string(killed.status().message()));
  }
  if (absl::Status put = client_->Put(kill.reply_key(), reply.SerializeAsString(), kill.lease());
      !put.ok()) {
    logger_.Warn("state", "cannot answer a kill request", {{"error", std::string(put.message())}});
  }
}

absl::StatusOr<uint32_t> EtcdStateBackend::RequestKill(const std::string& replica,
                                                       const admin::v1::KillSessionsRequest& request,
                                                       absl::Duration timeout) {
  const std::string& prefix = options_.url.prefix;
  int64_t store_revision = 0;
  absl::StatusOr<std::optional<EtcdKeyValue>> announced =
      client_->Get(absl::StrCat(prefix, "/replicas/", replica), &store_revision);
  if (!announced.ok()) return announced.status();
  if (!announced->has_value()) {
    return absl::NotFoundError(absl::StrCat("replica: no replica '", replica, "' is in the fleet"));
  }
  absl::StatusOr<int64_t> lease = client_->GrantLease(timeout + kKillLeaseSlack);
  if (!lease.ok()) return lease.status();
  std::random_device random;
  const std::string nonce = absl::StrFormat("%08x%08x", random(), random());
  v1::KillRequest kill;
  *kill.mutable_request() = request;
  kill.set_reply_key(absl::StrCat(prefix, "/killed/", nonce));
  kill.set_lease(*lease);
  absl::Status put =
      client_->Put(absl::StrCat(prefix, "/kill/", replica, "/", nonce), kill.SerializeAsString(), *lease);
  std::optional<v1::KillReply> reply;
  const absl::Time deadline = absl::Now() + timeout;
  while (put.ok() && !reply.has_value() && absl::Now() < deadline) {
    absl::StatusOr<std::optional<EtcdKeyValue>> answer = client_->Get(kill.reply_key(), &store_revision);
    if (answer.ok() && answer->has_value()) {
      reply.emplace();
      if (!reply->ParseFromString((*answer)->value)) reply->set_code(static_cast<int32_t>(absl::StatusCode::kInternal));
      break;
    }
    absl::SleepFor(kKillPoll);
  }
  (void)client_->RevokeLease(*lease);  // withdraws the request and drops the answer
  if (!put.ok()) return put;
  if (!reply.has_value()) {
    return absl::UnavailableError(absl::StrCat("replica '", replica, "' did not answer within ",
                                               absl::FormatDuration(timeout),
                                               "; the request is withdrawn"));
  }
  if (reply->code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(reply->code()),
                        absl::StrCat("replica ", replica, ": ", reply->message()));
  }
  return reply->killed();
}

}  // namespace alknet::state
