// state.store: "file" or etcd[s]://host:port,.../prefix, and the state.* rules of Validate.
#include "server/config/state_store_url.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/config/config.h"

namespace alknet::config {
namespace {

using ::testing::HasSubstr;

TEST(StateStoreUrlTest, ParsesFileAndEtcdUrlsAndPrintsThemBack) {
  auto file = ParseStateStoreUrl("file");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->kind, StateStoreUrl::Kind::kFile);
  EXPECT_EQ(file->ToString(), "file");

  auto etcd = ParseStateStoreUrl("etcd://10.0.0.1:2379,[::1]:2380,etcd.example:2379/alknet/prod/");
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  EXPECT_FALSE(etcd->tls);
  ASSERT_EQ(etcd->endpoints.size(), 3u);
  EXPECT_EQ(etcd->endpoints[1].host, "::1");
  EXPECT_EQ(etcd->endpoints[2].port, 2379);
  EXPECT_EQ(etcd->prefix, "/alknet/prod");
  EXPECT_EQ(etcd->ToString(), "etcd://10.0.0.1:2379,[::1]:2380,etcd.example:2379/alknet/prod");

  auto tls = ParseStateStoreUrl("etcds://etcd:2379");
  ASSERT_TRUE(tls.ok());
  EXPECT_TRUE(tls->tls);
  EXPECT_EQ(tls->prefix, "/alknet");
}

TEST(StateStoreUrlTest, BadUrlsSayWhatIsWrong) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {Case{"", "must be 'file' or etcd://"}, Case{"http://h:1", "must be 'file'"},
                        Case{"etcd://", "no etcd endpoint"}, Case{"etcd:///x", "no etcd endpoint"},
                        Case{"etcd://h", "etcd endpoint 'h'"}, Case{"etcd://h:0", "etcd endpoint 'h:0'"},
                        Case{"etcd://h:1,", "etcd endpoint ''"}, Case{"etcd://h:1/", "must not be '/'"},
                        Case{"etcd://h:1/a//b", "empty, '.' or '..' segment"},
                        Case{"etcd://h:1/a/../b", "empty, '.' or '..' segment"},
                        Case{"etcd://h:1/a b", "letters, digits"},
                        Case{"etcd://[[?]:2", "not a host name or IP address"}}) {
    auto parsed = ParseStateStoreUrl(c.text);
    EXPECT_FALSE(parsed.ok()) << c.text;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.message)) << c.text;
  }
}

TEST(StateStoreUrlTest, ValidateKeepsEtcdOptionsWithAnEtcdStore) {
  AgentConfig config;
  ResolveDefaults(config);
  config.state.etcd_ca = "/ca.pem";
  EXPECT_THAT(std::string(Validate(config).message()), HasSubstr("only for an etcds://"));
  config.state.store = *ParseStateStoreUrl("etcds://h:1");
  EXPECT_TRUE(Validate(config).ok()) << Validate(config);
  config.state.etcd_cert = "/c.pem";
  EXPECT_THAT(std::string(Validate(config).message()), HasSubstr("set both or neither"));
  config.state.etcd_key = "/k.pem";
  EXPECT_TRUE(Validate(config).ok()) << Validate(config);
  config.state = {};
  config.state.replica_id = "r1";
  EXPECT_THAT(std::string(Validate(config).message()), HasSubstr("only for an etcd state.store"));
}

}  // namespace
}  // namespace alknet::config
