// The -R policy: which listen requests a key may make and where the agent binds them
// (sshd's GatewayPorts=no plus permitlisten= and restrict / no-port-forwarding).
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "server/forward/forward_policy.h"

namespace alknet {
namespace {

auth::HostPortPattern Listen(std::string host, uint16_t port, bool any_port = false) {
  return auth::HostPortPattern{std::move(host), port, any_port};
}

struct Case {
  std::string name;
  std::vector<auth::HostPortPattern> permit_listen;
  bool forwarding = true;
  std::string host;
  uint32_t port;
  ForwardVerdict verdict;
  std::string bind;  // when allowed
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class RemoteListenTest : public ::testing::TestWithParam<Case> {};

TEST_P(RemoteListenTest, Decides) {
  const Case& c = GetParam();
  auth::KeyOptions options;
  options.permit_listen = c.permit_listen;
  options.port_forwarding = c.forwarding;
  ListenDecision decision = CheckRemoteListen(options, c.host, c.port);
  EXPECT_EQ(ForwardVerdictName(decision.verdict), ForwardVerdictName(c.verdict));
  if (c.verdict == ForwardVerdict::kAllowed) {
    EXPECT_EQ(decision.bind_host, c.bind);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RemoteListenTest,
    ::testing::Values(
        Case{"LocalhostBindsLoopback", {}, true, "localhost", 8080, ForwardVerdict::kAllowed, "127.0.0.1"},
        Case{"EmptyBindsLoopback", {}, true, "", 8080, ForwardVerdict::kAllowed, "127.0.0.1"},
        Case{"StarBindsLoopback", {}, true, "*", 8080, ForwardVerdict::kAllowed, "127.0.0.1"},
        Case{"AnyV4BindsLoopback", {}, true, "0.0.0.0", 8080, ForwardVerdict::kAllowed, "127.0.0.1"},
        Case{"OtherAddressBindsLoopback", {}, true, "192.0.2.7", 8080, ForwardVerdict::kAllowed, "127.0.0.1"},
        Case{"LoopbackLiteralKept", {}, true, "127.0.0.2", 8080, ForwardVerdict::kAllowed, "127.0.0.2"},
        Case{"V6LoopbackKept", {}, true, "::1", 8080, ForwardVerdict::kAllowed, "::1"},
        Case{"PortZeroAllowed", {}, true, "localhost", 0, ForwardVerdict::kAllowed, "127.0.0.1"},
        Case{"PrivilegedPortRefused", {}, true, "localhost", 80, ForwardVerdict::kPrivilegedPort, ""},
        Case{"Restricted", {}, false, "localhost", 8080, ForwardVerdict::kForwardingDisabled, ""},
        Case{"PermitListenPortOnly", {Listen("*", 8080)}, true, "localhost", 8080, ForwardVerdict::kAllowed,
             "127.0.0.1"},
        Case{"PermitListenOtherPort", {Listen("*", 8080)}, true, "localhost", 8081,
             ForwardVerdict::kListenNotPermitted, ""},
        Case{"PermitListenPortZeroNeedsStar", {Listen("*", 8080)}, true, "localhost", 0,
             ForwardVerdict::kListenNotPermitted, ""},
        Case{"PermitListenAnyPort", {Listen("*", 0, true)}, true, "localhost", 0, ForwardVerdict::kAllowed,
             "127.0.0.1"},
        Case{"PermitListenStarDoesNotOpenGateway", {Listen("*", 8080)}, true, "0.0.0.0", 8080,
             ForwardVerdict::kAllowed, "127.0.0.1"},
        Case{"PermitListenNamesWildcard", {Listen("0.0.0.0", 8080)}, true, "*", 8080, ForwardVerdict::kAllowed,
             "0.0.0.0"},
        Case{"PermitListenNamesAddress", {Listen("192.0.2.7", 8080)}, true, "192.0.2.7", 8080,
             ForwardVerdict::kAllowed, "192.0.2.7"},
        Case{"PermitListenWrongHost", {Listen("192.0.2.7", 8080)}, true, "localhost", 8080,
             ForwardVerdict::kListenNotPermitted, ""},
        Case{"PermitListenPrivilegedNamed", {Listen("*", 80)}, true, "localhost", 80, ForwardVerdict::kAllowed,
             "127.0.0.1"},
        Case{"ControlCharacters", {}, true, std::string("a\nb"), 8080, ForwardVerdict::kInvalidDestination, ""},
        Case{"PortTooLarge", {}, true, "localhost", 70000, ForwardVerdict::kInvalidDestination, ""}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace alknet
