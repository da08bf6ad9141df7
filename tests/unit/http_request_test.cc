// HTTP request-head parser: complete, incomplete and invalid heads, keep-alive rules, bounds.
#include "server/http/http_request.h"

#include <string>

#include <gtest/gtest.h>

namespace alknet::http {
namespace {

TEST(HttpRequestTest, ParsesACompleteHead) {
  ParseResult result = ParseRequestHead("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nrest");
  ASSERT_EQ(result.state, ParseState::kComplete);
  EXPECT_EQ(result.head.method, "GET");
  EXPECT_EQ(result.head.target, "/metrics");
  EXPECT_EQ(result.head.version, "HTTP/1.1");
  EXPECT_TRUE(result.head.keep_alive);
  ASSERT_EQ(result.head.headers.size(), 2u);
  EXPECT_EQ(result.head.headers[0].first, "host");
  EXPECT_EQ(result.head.head_size, std::string("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").size());
}

TEST(HttpRequestTest, KeepAliveFollowsVersionAndConnectionHeader) {
  EXPECT_FALSE(ParseRequestHead("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").head.keep_alive);
  EXPECT_FALSE(ParseRequestHead("GET / HTTP/1.0\r\n\r\n").head.keep_alive);
  EXPECT_TRUE(ParseRequestHead("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").head.keep_alive);
}

TEST(HttpRequestTest, IncompleteUntilTheBlankLine) {
  EXPECT_EQ(ParseRequestHead("GET / HTTP/1.1\r\nHost: x\r\n").state, ParseState::kIncomplete);
  EXPECT_EQ(ParseRequestHead("GE").state, ParseState::kIncomplete);
  EXPECT_EQ(ParseRequestHead("").state, ParseState::kIncomplete);
}

TEST(HttpRequestTest, RejectsMalformedHeads) {
  const char* cases[] = {
      "GET\r\n\r\n",                          // no target, no version
      "GET / HTTP/2.0\r\n\r\n",               // unsupported version
      "G(T / HTTP/1.1\r\n\r\n",               // bad method character
      "GET / HTTP/1.1\r\nNoColon\r\n\r\n",    // header without colon
      "GET / HTTP/1.1\r\n: empty\r\n\r\n",    // empty header name
      "GET /\x01 HTTP/1.1\r\n\r\n",           // control character in target
      "\x16\x03\x01\x02\x00",                 // a TLS ClientHello is not HTTP
      "SSH-2.0-OpenSSH_9.2\r\n\r\n",          // nor is an SSH banner
  };
  for (const char* text : cases) {
    EXPECT_EQ(ParseRequestHead(text).state, ParseState::kInvalid) << text;
  }
}

TEST(HttpRequestTest, BoundsSizeAndHeaderCount) {
  std::string huge = "GET / HTTP/1.1\r\nX: " + std::string(kMaxRequestHead, 'a');
  EXPECT_EQ(ParseRequestHead(huge).state, ParseState::kInvalid);
  std::string many = "GET / HTTP/1.1\r\n";
  for (size_t i = 0; i <= kMaxHeaders; ++i) many += "H" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  EXPECT_EQ(ParseRequestHead(many).state, ParseState::kInvalid);
}

}  // namespace
}  // namespace alknet::http
