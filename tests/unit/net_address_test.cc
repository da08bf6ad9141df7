// Endpoint parsing: host:port, [v6]:port, scheme URLs, and the errors for bad ones.
#include "server/common/net_address.h"

#include <gtest/gtest.h>

namespace alknet {
namespace {

TEST(NetAddressTest, ParsesHostPortForms) {
  auto v4 = ParseHostPort("127.0.0.1:2222");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 2222);
  auto v6 = ParseHostPort("[::1]:22");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "[::1]:22");
  auto name = ParseHostPort("db.internal:5432");
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(name->host, "db.internal");
}

TEST(NetAddressTest, RejectsMalformedWithAReason) {
  struct Case {
    const char* text;
    const char* message_part;
  } cases[] = {
      {"127.0.0.1", "no :port"},       {":22", "empty host"},
      {"host:", "invalid port"},       {"host:65536", "invalid port"},
      {"host:12ab", "invalid port"},   {"::1:22", "need brackets"},
      {"[::1]22", "not [IPv6]:port"},  {"[::1", "not [IPv6]:port"},
  };
  for (const Case& c : cases) {
    auto parsed = ParseHostPort(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_NE(std::string(parsed.status().message()).find(c.message_part), std::string::npos)
        << c.text << ": " << parsed.status().message();
  }
  EXPECT_FALSE(ParseHostPort("host:0", /*allow_zero=*/false).ok());
}

TEST(NetAddressTest, EndpointUrlsNeedAKnownScheme) {
  auto url = ParseEndpointUrl("tcp://0.0.0.0:2222");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->scheme, "tcp");
  EXPECT_EQ(url->ToString(), "tcp://0.0.0.0:2222");
  EXPECT_FALSE(ParseEndpointUrl("127.0.0.1:2222").ok());
  EXPECT_FALSE(ParseEndpointUrl("udp://127.0.0.1:2222").ok());
}

}  // namespace
}  // namespace alknet
