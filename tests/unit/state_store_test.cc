// The durable state file: round trip, refusal of newer or damaged files (never overwritten),
// crash safety of the atomic write (a child process "crashes" at every step), and the admin
// core's use of it (seeding, last-writer-wins limits, policy field names = config field names).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/admin/admin_core.h"
#include "agent/admin/policy_sections.h"
#include "agent/state/file_backend.h"
#include "agent/state/state_store.h"
#include "absl/strings/str_cat.h"
#include "server/config/config_schema.h"

namespace alknet {
namespace {

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/alknet-state-test-XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void Spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

state::v1::State StateWithKeys(int count) {
  state::v1::State state;
  for (int i = 0; i < count; ++i) {
    state::v1::StoredKey* key = state.add_keys();
    key->set_authorized_keys_line("ssh-ed25519 AAAA" + std::to_string(i));
    key->set_role(admin::v1::KEY_ROLE_TUNNEL);
  }
  state.set_generation(static_cast<uint64_t>(count));
  return state;
}

TEST(StateFileTest, RoundTrip) {
  TempDir dir;
  std::string path = dir.File("state.pb");
  state::v1::State state = StateWithKeys(3);
  state.mutable_policy()->mutable_limits()->set_max_sessions(42);
  ASSERT_TRUE(state::WriteStateFile(path, state).ok());
  auto read = state::ReadStateFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ((*read)->SerializeAsString(), state.SerializeAsString());
  // Only the file itself is left, private.
  struct stat info {};
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  EXPECT_EQ(state::RemoveStaleTempFiles(path), 0);
}

TEST(StateFileTest, MissingFileIsNoState) {
  TempDir dir;
  auto read = state::ReadStateFile(dir.File("state.pb"));
  ASSERT_TRUE(read.ok());
  EXPECT_FALSE(read->has_value());
}

TEST(StateFileTest, NewerFormatVersionIsRefused) {
  std::string bytes = state::EncodeStateFile(StateWithKeys(1));
  bytes[11] = static_cast<char>(state::kStateFormatVersion + 1);  // version is bytes 8..11
  auto decoded = state::DecodeStateFile(bytes, "/x/state.pb");
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(decoded.status().message()),
              HasSubstr("state file /x/state.pb has format version 2, newer than this agent"));
}

struct Damage {
  std::string name;
  void (*apply)(std::string&);
  std::string expected;
};

class StateDamageTest : public testing::TestWithParam<Damage> {};

TEST_P(StateDamageTest, IsRefusedAsCorrupted) {
  std::string bytes = state::EncodeStateFile(StateWithKeys(5));
  GetParam().apply(bytes);
  auto decoded = state::DecodeStateFile(bytes, "state.pb");
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("state file state.pb is corrupted"));
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr(GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, StateDamageTest,
    testing::Values(
        Damage{"FlippedPayloadByte", [](std::string& b) { b[30] ^= 0x01; }, "checksum mismatch"},
        Damage{"FlippedChecksumByte", [](std::string& b) { b.back() ^= 0x80; }, "checksum mismatch"},
        Damage{"Truncated", [](std::string& b) { b.resize(b.size() - 7); }, "length mismatch"},
        Damage{"TrailingGarbage", [](std::string& b) { b += "xyz"; }, "length mismatch"},
        Damage{"BadMagic", [](std::string& b) { b[0] = 'X'; }, "bad magic"},
        Damage{"Empty", [](std::string& b) { b.clear(); }, "bad magic"},
        Damage{"HeaderOnly", [](std::string& b) { b.resize(20); }, "truncated header"},
        Damage{"VersionZero", [](std::string& b) { b[11] = 0; }, "format version 0"}),
    [](const testing::TestParamInfo<Damage>& info) { return info.param.name; });

// A crash (the child _exits) at each step of a write leaves the old or the new state, and a
// later start cleans up the temp file.
class StateCrashTest : public testing::TestWithParam<std::string> {};

TEST_P(StateCrashTest, LeavesOldOrNew) {
  TempDir dir;
  std::string path = dir.File("state.pb");
  state::v1::State old_state = StateWithKeys(2);
  state::v1::State new_state = StateWithKeys(3);
  ASSERT_TRUE(state::WriteStateFile(path, old_state).ok());
  const std::string crash_at = GetParam();
  pid_t pid = fork();
  if (pid == 0) {
    (void)state::WriteStateFile(path, new_state, [&](std::string_view step) {
      if (step == crash_at) _exit(0);
    });
    _exit(1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "the hook never ran at " << crash_at;
  auto read = state::ReadStateFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE(read->has_value());
  bool before_rename = crash_at == "temp-created" || crash_at == "temp-written" || crash_at == "temp-synced";
  EXPECT_EQ((*read)->SerializeAsString(),
            (before_rename ? old_state : new_state).SerializeAsString());
  EXPECT_EQ(state::RemoveStaleTempFiles(path), before_rename ? 1 : 0);
  EXPECT_EQ(state::RemoveStaleTempFiles(path), 0);
}

INSTANTIATE_TEST_SUITE_P(Steps, StateCrashTest,
                         testing::Values("temp-created", "temp-written", "temp-synced", "renamed",
                                         "dir-synced"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

TEST(StateFileTest, FailedWriteLeavesOldFile) {
  TempDir dir;
  std::string path = dir.File("state.pb");
  ASSERT_TRUE(state::WriteStateFile(path, StateWithKeys(1)).ok());
  std::string before = Slurp(path);
  // A write that cannot even create its temp file changes nothing.
  EXPECT_FALSE(state::WriteStateFile(dir.File("missing/state.pb"), StateWithKeys(2)).ok());
  EXPECT_EQ(Slurp(path), before);
}

// ---- the file behind StateBackend ----

TEST(FileStateBackendTest, LockIsExclusiveUntilUnlocked) {
  TempDir dir;
  state::FileStateBackend first(dir.path());
  state::FileStateBackend second(dir.path());
  EXPECT_EQ(first.Describe(), "file:" + dir.File("state.pb"));
  ASSERT_TRUE(first.Lock().ok());
  EXPECT_TRUE(first.Lock().ok());  // held already
  absl::Status refused = second.Lock();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("in use by another alknet-agent"));
  EXPECT_THAT(std::string(refused.message()), HasSubstr(dir.File("state.lock")));
  first.Unlock();
  EXPECT_TRUE(second.Lock().ok());
  EXPECT_FALSE(first.Lock().ok());
}

TEST(FileStateBackendTest, CommitStoresTheNextGenerationOnly) {
  TempDir dir;
  state::FileStateBackend backend(dir.path());
  ASSERT_TRUE(backend.Lock().ok());
  Spit(dir.File("state.pb.tmp.1.2"), "left by a crash");
  auto empty = backend.Load();
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_FALSE(empty->has_value());
  EXPECT_FALSE(std::filesystem::exists(dir.File("state.pb.tmp.1.2")));

  auto skipped = backend.Commit(0, StateWithKeys(2));  // generation 2 does not follow 0
  ASSERT_FALSE(skipped.ok());
  EXPECT_EQ(skipped.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir.File("state.pb")));

  auto committed = backend.Commit(0, StateWithKeys(1));
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->durability_warning, "");
  auto loaded = backend.Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->SerializeAsString(), StateWithKeys(1).SerializeAsString());
  bool called = false;
  EXPECT_TRUE(backend.Watch(1, [&](state::v1::State) { called = true; }, [&](bool) { called = true; }).ok());
  EXPECT_FALSE(called);
}

TEST(FileStateBackendTest, FailedDirectorySyncIsADurabilityWarning) {
  TempDir dir;
  std::vector<std::string> steps;
  state::FileStateBackend backend(
      dir.path(), [](const std::string&) { return absl::InternalError("fsync directory: EIO"); },
      [&](std::string_view step) { steps.emplace_back(step); });
  auto committed = backend.Commit(0, StateWithKeys(1));
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_THAT(committed->durability_warning, HasSubstr("EIO"));
  EXPECT_THAT(steps, ::testing::ElementsAre("temp-created", "temp-written", "temp-synced", "renamed"));
}

TEST(FileStateBackendTest, DamagedFileIsAnErrorNamingThePath) {
  TempDir dir;
  std::string bytes = state::EncodeStateFile(StateWithKeys(1));
  bytes.back() ^= 1;
  Spit(dir.File("state.pb"), bytes);
  auto loaded = state::FileStateBackend(dir.path() + "/").Load();
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(dir.File("state.pb")));
}

// ---- the admin core over the state file ----

class AdminCoreStateTest : public testing::Test {
 protected:
  AdminCoreStateTest() : logger_(LogLevel::kError) {
    config_.state_dir = dir_.path();
    config_.authorized_keys = {dir_.File("authorized_keys")};
    config::ResolveDefaults(config_);
  }

  absl::StatusOr<std::unique_ptr<admin::AdminCore>> Open() {
    return admin::AdminCore::Open(config_, {.version = "test"}, logger_, keys_);
  }

  TempDir dir_;
  config::AgentConfig config_;
  Logger logger_;
  auth::KeyStore keys_{std::make_shared<const auth::KeySet>(std::vector<auth::AuthorizedKey>{})};
};

TEST_F(AdminCoreStateTest, FirstStartSeedsTheStateFromTheConfig) {
  config_.limits.max_sessions = 77;
  {
    auto core = Open();
    ASSERT_TRUE(core.ok()) << core.status();
    EXPECT_EQ((*core)->limits().max_sessions, 77);
  }
  auto read = state::ReadStateFile(admin::StateFilePath(dir_.path()));
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_EQ((*read)->policy().limits().max_sessions(), 77);
  EXPECT_EQ((*read)->policy().config_baseline().max_sessions(), 77);
}

TEST_F(AdminCoreStateTest, ApiLimitsSurviveUnchangedConfigAndLoseToAChangedOne) {
  {
    auto core = Open();
    ASSERT_TRUE(core.ok()) << core.status();
    admin::v1::SetPolicyRequest request;
    request.mutable_policy()->mutable_limits()->set_max_sessions(5);
    request.mutable_policy()->mutable_limits()->set_connect_timeout("3s");
    ASSERT_TRUE((*core)->SetPolicy(request).ok());
  }
  {
    auto core = Open();  // same config file: the API's values stand
    ASSERT_TRUE(core.ok()) << core.status();
    EXPECT_EQ((*core)->limits().max_sessions, 5);
    EXPECT_EQ((*core)->limits().connect_timeout, absl::Seconds(3));
  }
  config_.limits.max_sessions = 900;  // the operator edits the config file: it wins for that field
  auto core = Open();
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_EQ((*core)->limits().max_sessions, 900);
  EXPECT_EQ((*core)->limits().connect_timeout, absl::Seconds(3));
}

TEST_F(AdminCoreStateTest, InvalidPolicyChangesNothing) {
  auto core = Open();
  ASSERT_TRUE(core.ok()) << core.status();
  std::string before = Slurp(admin::StateFilePath(dir_.path()));
  admin::v1::SetPolicyRequest request;
  request.mutable_policy()->mutable_limits()->set_max_sessions(5);
  request.mutable_policy()->mutable_limits()->set_max_startups(0);
  auto result = (*core)->SetPolicy(request);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message(), "limits.max_startups: '0' is out of range (1..100000)");
  request.mutable_policy()->mutable_limits()->set_max_startups(5);
  request.mutable_policy()->mutable_limits()->set_per_source_max_startups(6);
  result = (*core)->SetPolicy(request);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("limits.per_source_max_startups (6)"));
  EXPECT_EQ((*core)->limits().max_sessions, config_.limits.max_sessions);
  EXPECT_EQ(Slurp(admin::StateFilePath(dir_.path())), before);
}

TEST_F(AdminCoreStateTest, NewerOrCorruptedStateFileIsRefusedAndNeverOverwritten) {
  std::string path = admin::StateFilePath(dir_.path());
  std::string newer = state::EncodeStateFile(StateWithKeys(1));
  newer[11] = 9;
  Spit(path, newer);
  auto core = Open();
  ASSERT_FALSE(core.ok());
  EXPECT_EQ(core.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Slurp(path), newer);

  std::string corrupted = state::EncodeStateFile(StateWithKeys(1));
  corrupted[25] ^= 0x10;
  Spit(path, corrupted);
  core = Open();
  ASSERT_FALSE(core.ok());
  EXPECT_EQ(core.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Slurp(path), corrupted);
}

TEST_F(AdminCoreStateTest, SecondAgentOnTheSameStateDirIsRefused) {
  auto first = Open();
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Open();
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in use by another alknet-agent"));
}

// One configuration structure: the API's Limits fields are exactly the config's limits.* keys.
// Security round, item 11: a directory fsync that fails after the rename must not make the
// caller hear "not added" while the file (and so the next start) has the key. Once renamed,
// the change is committed: the write succeeds with a durability warning.
TEST(SecurityRound, Item11StateFileDirectoryFsyncFailureAfterRenameIsCommitted) {
  TempDir dir;
  std::string path = dir.File("state.pb");
  ASSERT_TRUE(state::WriteStateFile(path, StateWithKeys(1)).ok());
  int syncs = 0;
  absl::StatusOr<state::WriteResult> written = state::WriteStateFile(
      path, StateWithKeys(2), nullptr, [&](const std::string&) {
        ++syncs;
        return absl::InternalError("fsync directory: Input/output error");
      });
  EXPECT_EQ(syncs, 1);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_THAT(written->durability_warning, HasSubstr("Input/output error"));
  auto read = state::ReadStateFile(path);
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_EQ((*read)->SerializeAsString(), StateWithKeys(2).SerializeAsString());
}

TEST_F(AdminCoreStateTest, Item11StateFileAddKeyWithFailedDirectoryFsyncIsAddedInMemoryAndOnDisk) {
  bool fail_sync = false;
  auto core = admin::AdminCore::Open(
      config_,
      {.version = "test",
       .sync_state_directory = [&](const std::string&) {
         return fail_sync ? absl::InternalError("fsync directory: Input/output error")
                          : absl::OkStatus();
       }},
      logger_, keys_);
  ASSERT_TRUE(core.ok()) << core.status();
  fail_sync = true;
  admin::v1::AddKeyRequest request;
  request.set_public_key(
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOm4QdJenLqPSU+htqPgiLdjy4cVpkzsthN1WMwqSrjf t");
  auto added = (*core)->AddKey(request);
  ASSERT_TRUE(added.ok()) << added.status();  // the file has it: so does the answer
  EXPECT_EQ((*core)->ListKeys().keys_size(), 1);
  EXPECT_EQ(keys_.Current()->size(), 1u);
  // And a policy change (the other write path) the same way.
  admin::v1::SetPolicyRequest policy;
  policy.mutable_policy()->mutable_limits()->set_max_sessions(5);
  ASSERT_TRUE((*core)->SetPolicy(policy).ok());
  EXPECT_EQ((*core)->limits().max_sessions, 5);
  core->reset();
  auto restarted = Open();  // what a restart sees is what the caller was told
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_EQ((*restarted)->ListKeys().keys_size(), 1);
  EXPECT_EQ((*restarted)->limits().max_sessions, 5);
}

// Security round, item 2: the admin API refuses a LOCAL forward whose target is a reserved
// "alknet-*" name (the far agent's own services), naming the field.
TEST_F(AdminCoreStateTest, Item2AdminApiLocalForwardToReservedDestinationIsRefused) {
  auto core = Open();
  ASSERT_TRUE(core.ok()) << core.status();
  admin::v1::AddForwardRequest request;
  request.mutable_forward()->set_kind(admin::v1::FORWARD_KIND_LOCAL);
  request.mutable_forward()->set_upstream("office");
  request.mutable_forward()->set_listen("127.0.0.1:0");
  request.mutable_forward()->set_target("Alknet-Admin:22");
  auto added = (*core)->AddForward(request);
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(added.status().message()),
              HasSubstr("forward.target: the target host 'Alknet-Admin' is reserved"));
}

// Every flat policy section (limits, penalties, rate_limits) has the same fields in the API as
// in the config schema, and converts both ways without loss.
TEST(PolicySchemaTest, FlatSectionsMirrorTheConfigSchema) {
  admin::v1::PolicySpec policy;
  for (const std::string& section : admin::FlatPolicySections()) {
    const auto* descriptor = admin::FlatSection(policy, section).GetDescriptor();
    std::set<std::string> proto_fields;
    for (int i = 0; i < descriptor->field_count(); ++i) {
      proto_fields.insert(absl::StrCat(section, ".", descriptor->field(i)->name()));
    }
    std::set<std::string> config_fields;
    for (const config::FieldSpec& field : config::Fields()) {
      if (std::string(field.yaml_path).rfind(section + ".", 0) == 0) {
        config_fields.insert(std::string(field.yaml_path));
      }
    }
    EXPECT_EQ(proto_fields, config_fields) << section;
  }
}

TEST(PolicySchemaTest, PolicyConvertsBothWaysWithoutLoss) {
  config::AgentConfig config;
  config.limits.max_sessions = 12;
  config.limits.login_grace_time = absl::Seconds(90);
  config.rate_limits.bandwidth_per_key = 10'000'000;
  config.rate_limits.channels_per_session = {30, 'm'};
  config.rate_limits.max_sessions_per_key = 2;
  config.penalties.enabled = false;
  config.penalties.min = absl::Seconds(30);
  config.penalties.exempt = {"10.0.0.0/8", "192.0.2.7/32"};
  admin::v1::PolicySpec policy = admin::PolicyToProto(config);
  EXPECT_EQ(policy.limits().login_grace_time(), "1m30s");
  EXPECT_EQ(policy.rate_limits().bandwidth_per_key(), "10MB");
  EXPECT_EQ(policy.penalties().exempt(), "10.0.0.0/8,192.0.2.7/32");
  EXPECT_FALSE(policy.penalties().enabled());
  config::AgentConfig copy;
  ASSERT_TRUE(admin::ApplyPolicyProto(policy, copy).ok());
  EXPECT_EQ(copy.limits.max_sessions, 12);
  EXPECT_EQ(copy.rate_limits, config.rate_limits);
  EXPECT_EQ(copy.penalties.exempt, config.penalties.exempt);
  EXPECT_EQ(admin::PolicyToProto(copy).SerializeAsString(), policy.SerializeAsString());
}

TEST(PolicySchemaTest, ABadFieldIsNamedAndAnEmptyListClearsIt) {
  config::AgentConfig config;
  config.penalties.exempt = {"10.0.0.0/8"};
  admin::v1::PolicySpec bad;
  bad.mutable_rate_limits()->set_sessions_per_key("often");
  absl::Status status = admin::ApplyPolicyProto(bad, config);
  EXPECT_THAT(std::string(status.message()), HasSubstr("rate_limits.sessions_per_key"));
  bad.Clear();
  bad.mutable_penalties()->set_exempt("10.0.0.1/8");
  status = admin::ApplyPolicyProto(bad, config);
  EXPECT_THAT(std::string(status.message()), HasSubstr("penalties.exempt"));
  admin::v1::PolicySpec clear;
  clear.mutable_penalties()->set_exempt("");
  ASSERT_TRUE(admin::ApplyPolicyProto(clear, config).ok());
  EXPECT_TRUE(config.penalties.exempt.empty());
}

}  // namespace
}  // namespace alknet
