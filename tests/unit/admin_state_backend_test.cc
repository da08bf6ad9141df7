// AdminCore over a StateBackend that is not the file (a fake, in-process): a lost
// compare-and-swap is ABORTED and changes nothing, an unreachable store is UNAVAILABLE, and a
// state stored by another writer (Apply, through Watch) replaces the keys and the policy when
// it is newer, and only then.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/admin/admin_core.h"
#include "agent/state/state_backend.h"
#include "server/config/config.h"
#include "tests/support/agent_process.h"

namespace alknet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TempDir;
namespace v1 = ::alknet::admin::v1;

constexpr char kKeyA[] =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIObAnDs+QOg1+6AZ+iMEVmwdt/k10vLmiDPBQX2+vh5u alice";
constexpr char kKeyB[] =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnr2SlN2/jUhEKmkOVzUyQ0ygUzMJGSpgiPh+F7oJiG bob";

// What the test sees of the fake: the stored state, the answer to the next commits, and the
// callbacks AdminCore registered.
struct FakeStore {
  std::optional<state::v1::State> stored;
  absl::Status commit_status;  // OK: store it
  int commits = 0;
  bool locked = false;
  state::StateBackend::ChangeCallback on_change;
  state::StateBackend::ReachabilityCallback on_reachable;
  uint64_t watched_from = 0;
  // A fleet: the replicas listed, what each answers a kill, the kills asked and served.
  bool shared = false;
  std::vector<state::v1::Replica> replicas;
  std::map<std::string, absl::StatusOr<uint32_t>> kill_answers;
  std::vector<std::pair<std::string, v1::KillSessionsRequest>> kills_requested;
  std::string serving_kills_for;
  state::StateBackend::KillHandler kill_handler;
};

class FakeBackend : public state::StateBackend {
 public:
  explicit FakeBackend(std::shared_ptr<FakeStore> store) : store_(std::move(store)) {}
  std::string Describe() const override { return "fake:"; }
  absl::Status Lock() override {
    store_->locked = true;
    return absl::OkStatus();
  }
  void Unlock() override { store_->locked = false; }
  absl::StatusOr<std::optional<state::v1::State>> Load() override { return store_->stored; }
  absl::StatusOr<state::CommitResult> Commit(uint64_t expected_generation,
                                             const state::v1::State& next) override {
    ++store_->commits;
    if (!store_->commit_status.ok()) return store_->commit_status;
    uint64_t stored = store_->stored ? store_->stored->generation() : 0;
    if (stored != expected_generation) return absl::AbortedError("generation moved");
    EXPECT_EQ(next.generation(), expected_generation + 1);
    store_->stored = next;
    return state::CommitResult{};
  }
  absl::Status Watch(uint64_t from_generation, ChangeCallback on_change,
                     ReachabilityCallback on_reachable) override {
    store_->watched_from = from_generation;
    store_->on_change = std::move(on_change);
    store_->on_reachable = std::move(on_reachable);
    return absl::OkStatus();
  }
  bool shared() const override { return store_->shared; }
  absl::StatusOr<std::vector<state::v1::Replica>> Replicas() override {
    if (!store_->shared) return state::NoFleetError();
    return store_->replicas;
  }
  absl::Status ServeKills(const std::string& self_id, KillHandler handler) override {
    store_->serving_kills_for = self_id;
    store_->kill_handler = std::move(handler);
    return absl::OkStatus();
  }
  absl::StatusOr<uint32_t> RequestKill(const std::string& replica,
                                       const v1::KillSessionsRequest& request,
                                       absl::Duration) override {
    store_->kills_requested.emplace_back(replica, request);
    auto answer = store_->kill_answers.find(replica);
    if (answer == store_->kill_answers.end()) return absl::NotFoundError("no such replica");
    return answer->second;
  }

 private:
  std::shared_ptr<FakeStore> store_;
};

class AdminStateBackendTest : public ::testing::Test {
 protected:
  AdminStateBackendTest() : logger_(LogLevel::kError) {
    config_.state_dir = dir_.path();
    config_.authorized_keys = {dir_.File("authorized_keys")};
    config::ResolveDefaults(config_);
  }

  std::unique_ptr<admin::AdminCore> Open() {
    auto core = admin::AdminCore::Open(
        config_, {.version = "test", .backend = std::make_unique<FakeBackend>(store_)}, logger_, keys_);
    EXPECT_TRUE(core.ok()) << core.status();
    return core.ok() ? *std::move(core) : nullptr;
  }

  static absl::StatusOr<v1::AddKeyResponse> Add(admin::AdminCore& core, const std::string& line) {
    v1::AddKeyRequest request;
    request.set_public_key(line);
    return core.AddKey(request);
  }

  // The stored state with `line` appended as one more API key, one generation on.
  state::v1::State WithKey(const std::string& line) const {
    state::v1::State next = *store_->stored;
    state::v1::StoredKey* key = next.add_keys();
    key->set_authorized_keys_line(line);
    key->set_role(v1::KEY_ROLE_TUNNEL);
    next.set_generation(next.generation() + 1);
    return next;
  }

  static std::vector<std::string> Comments(const v1::ListKeysResponse& listed) {
    std::vector<std::string> comments;
    for (const v1::KeyInfo& key : listed.keys()) comments.push_back(key.comment());
    return comments;
  }

  TempDir dir_;
  config::AgentConfig config_;
  Logger logger_;
  auth::KeyStore keys_{std::make_shared<const auth::KeySet>(std::vector<auth::AuthorizedKey>{})};
  std::shared_ptr<FakeStore> store_ = std::make_shared<FakeStore>();
};

TEST_F(AdminStateBackendTest, OpenLocksSeedsAndWatchesTheBackend) {
  auto core = Open();
  ASSERT_NE(core, nullptr);
  EXPECT_TRUE(store_->locked);
  ASSERT_TRUE(store_->stored.has_value());  // first start: seeded from the config
  EXPECT_EQ(store_->stored->generation(), 1u);
  EXPECT_EQ(store_->watched_from, 1u);
  EXPECT_TRUE(store_->on_change != nullptr);
  core->ReleaseStateLock();
  EXPECT_FALSE(store_->locked);
  EXPECT_TRUE(core->RetakeStateLock().ok());
  EXPECT_TRUE(store_->locked);
  store_->on_reachable(false);  // logged only
  store_->on_reachable(true);
}

TEST_F(AdminStateBackendTest, LostCompareAndSwapIsAbortedAndChangesNothing) {
  auto core = Open();
  ASSERT_NE(core, nullptr);
  ASSERT_TRUE(Add(*core, kKeyA).ok());
  const state::v1::State before = *store_->stored;

  store_->commit_status = absl::AbortedError("etcd: compare failed");
  auto added = Add(*core, kKeyB);
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(added.status().message()), HasSubstr("changed on another replica; retry"));
  EXPECT_THAT(Comments(core->ListKeys()), ElementsAre("alice"));
  EXPECT_EQ(keys_.Current()->size(), 1u);
  EXPECT_EQ(store_->stored->SerializeAsString(), before.SerializeAsString());

  // The other writers of the state fail the same way, each leaving it as it was.
  v1::SetPolicyRequest policy;
  policy.mutable_policy()->mutable_limits()->set_max_sessions(5);
  auto set = core->SetPolicy(policy);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(core->limits().max_sessions, config_.limits.max_sessions);
  v1::RemoveKeyRequest remove;
  remove.set_fingerprint(core->ListKeys().keys(0).fingerprint());
  remove.set_kill_sessions(true);
  EXPECT_EQ(core->RemoveKey(remove).status().code(), absl::StatusCode::kAborted);
  v1::ImportKeysRequest import;
  import.set_authorized_keys(std::string(kKeyB) + "\n");
  EXPECT_EQ(core->ImportKeys(import).status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(Comments(core->ListKeys()), ElementsAre("alice"));
  EXPECT_EQ(keys_.Current()->size(), 1u);

  store_->commit_status = absl::UnavailableError("etcd: no leader");
  added = Add(*core, kKeyB);
  EXPECT_EQ(added.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(added.status().message()),
              HasSubstr("the state store is unreachable; nothing changed: etcd: no leader"));

  store_->commit_status = absl::PermissionDeniedError("open: Permission denied");
  added = Add(*core, kKeyB);
  EXPECT_EQ(added.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(added.status().message(),
            "cannot write the state file (nothing changed): open: Permission denied");
  EXPECT_THAT(Comments(core->ListKeys()), ElementsAre("alice"));
  EXPECT_EQ(store_->stored->SerializeAsString(), before.SerializeAsString());

  store_->commit_status = absl::OkStatus();  // and the next write goes through
  ASSERT_TRUE(Add(*core, kKeyB).ok());
  EXPECT_THAT(Comments(core->ListKeys()), ElementsAre("alice", "bob"));
  EXPECT_EQ(store_->stored->generation(), before.generation() + 1);
}

TEST_F(AdminStateBackendTest, ApplyOfANewerStateInstallsItsKeysAndPolicy) {
  auto core = Open();
  ASSERT_NE(core, nullptr);
  ASSERT_TRUE(Add(*core, kKeyA).ok());

  state::v1::State next = WithKey(kKeyB);  // another replica added bob and changed a limit
  next.mutable_policy()->mutable_limits()->set_max_sessions(7);
  store_->stored = next;  // what that replica stored
  store_->on_change(next);  // as the backend delivers it
  EXPECT_THAT(Comments(core->ListKeys()), ElementsAre("alice", "bob"));
  ASSERT_EQ(keys_.Current()->size(), 2u);
  EXPECT_EQ(keys_.Current()->keys()[1].comment, "bob");
  EXPECT_EQ(keys_.Current()->keys()[1].source, "api");
  EXPECT_EQ(core->limits().max_sessions, 7);

  // The next local change builds on the applied state.
  v1::RemoveKeyRequest remove;
  remove.set_fingerprint(core->ListKeys().keys(1).fingerprint());  // bob
  ASSERT_TRUE(core->RemoveKey(remove).ok());
  EXPECT_EQ(store_->stored->generation(), next.generation() + 1);
  EXPECT_EQ(store_->stored->keys_size(), 1);
  EXPECT_EQ(store_->stored->policy().limits().max_sessions(), 7);
}

TEST_F(AdminStateBackendTest, ApplyOfAnOlderOrSameGenerationChangesNothing) {
  auto core = Open();
  ASSERT_NE(core, nullptr);
  ASSERT_TRUE(Add(*core, kKeyA).ok());
  const uint64_t held = store_->stored->generation();

  state::v1::State same = WithKey(kKeyB);
  same.set_generation(held);
  core->Apply(same);
  state::v1::State older = WithKey(kKeyB);
  older.set_generation(held - 1);
  older.mutable_policy()->mutable_limits()->set_max_sessions(3);
  core->Apply(older);
  EXPECT_THAT(Comments(core->ListKeys()), ElementsAre("alice"));
  EXPECT_EQ(keys_.Current()->size(), 1u);
  EXPECT_EQ(core->limits().max_sessions, config_.limits.max_sessions);
}

TEST_F(AdminStateBackendTest, ApplySkipsAKeyThatDoesNotParse) {
  auto core = Open();
  ASSERT_NE(core, nullptr);
  state::v1::State next = WithKey("ssh-ed25519 AAAA-not-base64 broken");
  state::v1::StoredKey* good = next.add_keys();
  good->set_authorized_keys_line(kKeyB);
  good->set_role(v1::KEY_ROLE_ADMIN);
  core->Apply(next);
  v1::ListKeysResponse listed = core->ListKeys();
  EXPECT_THAT(Comments(listed), ElementsAre("bob"));
  EXPECT_EQ(listed.keys(0).role(), v1::KEY_ROLE_ADMIN);
  ASSERT_EQ(keys_.Current()->size(), 1u);
  EXPECT_TRUE(keys_.Current()->keys()[0].admin_role);
}

TEST_F(AdminStateBackendTest, RemoveWithKillIsRecordedForReplicasAndKeepsTheNewest64) {
  auto core = Open();
  ASSERT_NE(core, nullptr);
  ASSERT_TRUE(Add(*core, kKeyA).ok());
  const std::string fingerprint = core->ListKeys().keys(0).fingerprint();

  state::v1::State next = *store_->stored;  // a replica's earlier removals fill the list
  for (int i = 0; i < 64; ++i) next.add_kill_sessions_of(absl::StrCat("SHA256:old", i));
  next.set_generation(next.generation() + 1);
  store_->stored = next;
  core->Apply(next);

  v1::RemoveKeyRequest remove;
  remove.set_fingerprint(fingerprint);
  remove.set_kill_sessions(true);
  auto removed = core->RemoveKey(remove);
  ASSERT_TRUE(removed.ok()) << removed.status();
  const auto& killed = store_->stored->kill_sessions_of();
  ASSERT_EQ(killed.size(), 64);
  EXPECT_EQ(killed[0], "SHA256:old1");
  EXPECT_EQ(killed[63], fingerprint);

  // Added again and removed without --kill: replicas must not end its sessions.
  ASSERT_TRUE(Add(*core, kKeyA).ok());
  remove.set_kill_sessions(false);
  ASSERT_TRUE(core->RemoveKey(remove).ok());
  EXPECT_THAT(store_->stored->kill_sessions_of(), ::testing::Not(::testing::Contains(fingerprint)));
}

// ---- sessions across a fleet ----

state::v1::Replica ReplicaWithSession(const std::string& id, uint64_t session) {
  state::v1::Replica replica;
  replica.set_id(id);
  v1::SessionInfo& info = *replica.add_sessions();
  info.set_id(session);
  info.set_user("u");
  return replica;
}

TEST_F(AdminStateBackendTest, FleetSessionListsNameTheirReplicaAndTheFileSaysThereIsNoFleet) {
  auto core = Open();
  ASSERT_NE(core, nullptr);
  v1::ListSessionsRequest all;
  all.set_all(true);
  EXPECT_EQ(core->ListSessions(all).status().code(), absl::StatusCode::kFailedPrecondition);

  store_->shared = true;
  store_->replicas = {ReplicaWithSession("b", 3), ReplicaWithSession("a", 9)};
  core->AnnounceReplica("a");
  EXPECT_EQ(store_->serving_kills_for, "a");
  absl::StatusOr<v1::ListSessionsResponse> listed = core->ListSessions(all);
  ASSERT_TRUE(listed.ok()) << listed.status();
  // This replica's own come from its engine (none here), not from what it published.
  ASSERT_EQ(listed->sessions_size(), 1);
  EXPECT_EQ(listed->sessions(0).replica(), "b");
  EXPECT_EQ(listed->sessions(0).id(), 3u);
  EXPECT_EQ(core->ListSessions().sessions_size(), 0);
}

TEST_F(AdminStateBackendTest, AKillForAnotherReplicaGoesThroughTheBackend) {
  auto core = Open();
  ASSERT_NE(core, nullptr);
  v1::KillSessionsRequest request;
  request.set_id(7);
  request.set_replica("b");
  EXPECT_EQ(core->KillSessions(request).status().code(), absl::StatusCode::kFailedPrecondition);

  store_->shared = true;
  store_->kill_answers["b"] = 1u;
  core->AnnounceReplica("a");
  absl::StatusOr<v1::KillSessionsResponse> killed = core->KillSessions(request);
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_EQ(killed->killed(), 1u);
  ASSERT_EQ(store_->kills_requested.size(), 1u);
  EXPECT_EQ(store_->kills_requested[0].first, "b");
  EXPECT_EQ(store_->kills_requested[0].second.id(), 7u);
  EXPECT_EQ(store_->kills_requested[0].second.replica(), "");  // the receiver kills its own
  EXPECT_EQ(store_->kills_requested[0].second.reason(), "killed by admin");

  // Its own id means here (no engine: no session 7), and '*' needs a key.
  request.set_replica("a");
  EXPECT_EQ(core->KillSessions(request).status().code(), absl::StatusCode::kNotFound);
  request.set_replica("*");
  EXPECT_EQ(core->KillSessions(request).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->kills_requested.size(), 1u);

  // A request served for another replica runs here.
  v1::KillSessionsRequest served;
  served.set_key_fingerprint("SHA256:abc");
  absl::StatusOr<uint32_t> here = store_->kill_handler(served);
  ASSERT_TRUE(here.ok()) << here.status();
  EXPECT_EQ(*here, 0u);
}

TEST_F(AdminStateBackendTest, AKillOnEveryReplicaSumsAndNamesTheOnesThatDidNotAnswer) {
  store_->shared = true;
  auto core = Open();
  ASSERT_NE(core, nullptr);
  core->AnnounceReplica("a");
  store_->replicas = {ReplicaWithSession("a", 1), ReplicaWithSession("b", 2),
                      ReplicaWithSession("c", 3)};
  store_->kill_answers["b"] = 2u;
  store_->kill_answers["c"] = absl::UnavailableError("did not answer within 5s");
  v1::KillSessionsRequest request;
  request.set_key_fingerprint("SHA256:abc");
  request.set_replica("*");
  absl::StatusOr<v1::KillSessionsResponse> killed = core->KillSessions(request);
  EXPECT_EQ(killed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(killed.status().message(), HasSubstr("disconnected 2 session(s)"));
  EXPECT_THAT(killed.status().message(), HasSubstr("c (did not answer within 5s)"));

  store_->kill_answers["c"] = 1u;
  killed = core->KillSessions(request);
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_EQ(killed->killed(), 3u);
}

}  // namespace
}  // namespace alknet
