// The Policy service's forwarding section (ADR 0014) over a real state file: set, refused
// with the field named and nothing applied, kept across a restart, and TestForward.
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/admin/admin_core.h"
#include "agent/admin/forwarding_proto.h"
#include "server/config/config.h"
#include "tests/support/agent_process.h"

namespace alknet {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;
namespace v1 = ::alknet::admin::v1;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

class AdminForwardingTest : public ::testing::Test {
 protected:
  AdminForwardingTest() : logger_(LogLevel::kError) {
    config_.state_dir = dir_.path();
    config_.authorized_keys = {dir_.File("authorized_keys")};
    config::ResolveDefaults(config_);
  }
  absl::StatusOr<std::unique_ptr<admin::AdminCore>> Open() {
    return admin::AdminCore::Open(config_, {.version = "test"}, logger_, keys_);
  }
  static v1::ForwardingRule* AddRule(v1::SetPolicyRequest& request, const std::string& name,
                                     const std::string& action) {
    v1::ForwardingRule* rule = request.mutable_policy()->mutable_forwarding()->mutable_rules()->add_rules();
    rule->set_name(name);
    rule->set_action(action);
    return rule;
  }

  TempDir dir_;
  config::AgentConfig config_;
  Logger logger_;
  auth::KeyStore keys_{std::make_shared<const auth::KeySet>(std::vector<auth::AuthorizedKey>{})};
};

TEST_F(AdminForwardingTest, BadRuleIsRefusedWithTheFieldNamedAndNothingApplied) {
  auto core = Open();
  ASSERT_TRUE(core.ok()) << core.status();
  v1::SetPolicyRequest good;
  AddRule(good, "no-ten", "deny")->add_cidrs("10.0.0.0/8");
  good.mutable_policy()->mutable_forwarding()->set_default_action("deny");
  ASSERT_TRUE((*core)->SetPolicy(good).ok());
  std::string state_before = Slurp(dir_.File("state.pb"));

  v1::SetPolicyRequest bad;
  AddRule(bad, "ok", "allow")->add_hosts("*.example.com");
  AddRule(bad, "lan", "deny")->add_cidrs("192.168.0.0/16");
  AddRule(bad, "broken", "deny")->add_cidrs("10.0.0.0/33");
  bad.mutable_policy()->mutable_limits()->set_max_sessions(7);  // must not apply either
  absl::StatusOr<v1::SetPolicyResponse> refused = (*core)->SetPolicy(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("forwarding.rules[2].cidrs[0]: '10.0.0.0/33'"));
  v1::PolicySpec now = (*core)->GetPolicy().policy();
  ASSERT_EQ(now.forwarding().rules().rules_size(), 1);
  EXPECT_EQ(now.forwarding().rules().rules(0).name(), "no-ten");
  EXPECT_EQ(now.forwarding().default_action(), "deny");
  EXPECT_NE(now.limits().max_sessions(), 7);
  EXPECT_EQ(Slurp(dir_.File("state.pb")), state_before);

  v1::SetPolicyRequest nameless;
  AddRule(nameless, "", "deny");
  EXPECT_THAT((*core)->SetPolicy(nameless).status().message(), HasSubstr("forwarding.rules[0].name: missing"));
  v1::SetPolicyRequest duplicate;
  AddRule(duplicate, "a", "deny");
  AddRule(duplicate, "a", "allow");
  EXPECT_THAT((*core)->SetPolicy(duplicate).status().message(), HasSubstr("forwarding.rules[1].name"));
  v1::ValidatePolicyRequest validate;
  *validate.mutable_policy() = bad.policy();
  EXPECT_THAT((*core)->ValidatePolicy(validate).status().message(), HasSubstr("forwarding.rules[2].cidrs[0]"));
}

TEST_F(AdminForwardingTest, RulesSurviveARestartAndTheConfigFileWinsWhenItChanges) {
  {
    auto core = Open();
    ASSERT_TRUE(core.ok()) << core.status();
    v1::SetPolicyRequest request;
    AddRule(request, "api-rule", "deny")->set_ports("25");
    ASSERT_TRUE((*core)->SetPolicy(request).ok());
  }
  {
    auto core = Open();  // same config file: the API's rules stay
    ASSERT_TRUE(core.ok()) << core.status();
    ASSERT_EQ((*core)->forwarding().rules.size(), 1u);
    EXPECT_EQ((*core)->forwarding().rules[0].name, "api-rule");
  }
  config_.forwarding.default_allow = false;  // the operator edits the config file's section
  auto core = Open();
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_TRUE((*core)->forwarding().rules.empty());
  EXPECT_FALSE((*core)->forwarding().default_allow);
}

TEST_F(AdminForwardingTest, TestForwardNamesTheDecidingRulePerAddress) {
  auto core = Open();
  ASSERT_TRUE(core.ok()) << core.status();
  v1::SetPolicyRequest request;
  AddRule(request, "no-first-loopback", "deny")->add_cidrs("127.0.0.1/32");
  request.mutable_policy()->mutable_forwarding()->set_allow_loopback(true);
  ASSERT_TRUE((*core)->SetPolicy(request).ok());

  v1::TestForwardRequest literal;
  literal.set_host("169.254.169.254");
  literal.set_port(80);
  auto metadata = (*core)->TestForward(literal);
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  EXPECT_FALSE(metadata->allowed());
  EXPECT_FALSE(metadata->needs_address());
  EXPECT_EQ(metadata->by_name().rule(), "builtin:link-local");

  v1::TestForwardRequest name;
  name.set_host("localhost");
  name.set_port(22);
  auto resolved = (*core)->TestForward(name);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_TRUE(resolved->needs_address());
  bool saw_denied_v4 = false;
  for (const auto& row : resolved->addresses()) {
    if (row.address() == "127.0.0.1") {
      saw_denied_v4 = true;
      EXPECT_EQ(row.decision().rule(), "no-first-loopback");
      EXPECT_FALSE(row.decision().allow());
    }
  }
  EXPECT_TRUE(saw_denied_v4) << resolved->ShortDebugString();

  v1::TestForwardRequest bad;
  bad.set_host("x");
  bad.set_port(1);
  bad.set_direction("sideways");
  EXPECT_THAT((*core)->TestForward(bad).status().message(), HasSubstr("direction"));
}

}  // namespace
}  // namespace alknet
