// The TLS listener's banner decision and its nginx imitation. The expectations are what Debian's
// nginx 1.22.1 answered to the same bytes (probed side by side; tests/interop/tls_test.cc
// re-checks the main cases against a live nginx).
#include "server/transport/stealth_responder.h"
#include "server/transport/tls_context.h"
#include "server/transport/tls_ticket_keys.h"

#include <openssl/ssl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace alknet::stealth {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT

// ---- banner ----

TEST(ClassifyBannerTest, CompleteBannerLines) {
  BannerResult crlf = ClassifyBanner("SSH-2.0-OpenSSH_9.2\r\n");
  EXPECT_EQ(crlf.verdict, BannerVerdict::kSsh);
  EXPECT_EQ(crlf.line_size, 21u);
  BannerResult lf = ClassifyBanner("SSH-2.0-libssh_0.10.6\n");
  EXPECT_EQ(lf.verdict, BannerVerdict::kSsh);
  EXPECT_EQ(lf.line_size, 22u);
  // OpenSSH sends its KEXINIT right behind the banner: the line is still recognised.
  std::string with_kex = std::string("SSH-2.0-OpenSSH_9.2 Debian-2\r\n") + std::string("\0\0\x05\xdc\x0a\x14", 6);
  BannerResult kex = ClassifyBanner(with_kex);
  EXPECT_EQ(kex.verdict, BannerVerdict::kSsh);
  EXPECT_EQ(kex.line_size, 30u);
}

TEST(ClassifyBannerTest, PrefixesWaitForMore) {
  for (std::string_view partial : {"", "S", "SS", "SSH", "SSH-", "SSH-2", "SSH-2.0", "SSH-2.0-",
                                   "SSH-2.0-OpenSSH_9.2", "SSH-2.0-OpenSSH_9.2\r"}) {
    EXPECT_EQ(ClassifyBanner(partial).verdict, BannerVerdict::kNeedMore) << partial;
  }
  std::string long_partial = "SSH-2.0-" + std::string(kMaxBannerLine - 9, 'x');
  EXPECT_EQ(long_partial.size(), kMaxBannerLine - 1);
  EXPECT_EQ(ClassifyBanner(long_partial).verdict, BannerVerdict::kNeedMore);
}

TEST(ClassifyBannerTest, EverythingElseIsNotSsh) {
  for (std::string_view other :
       {std::string_view("GET / HTTP/1.1\r\n"), std::string_view("G"), std::string_view("GE"),
        std::string_view("SSH-1.5-x\r\n"), std::string_view("SSH-1.99-x\r\n"),
        std::string_view("ssh-2.0-x\r\n"), std::string_view("SSH-2.0-\r\n"),
        std::string_view("SSH-2.0-\n"), std::string_view("SSH-2.0-x\ry\r\n"),
        std::string_view("SSH-2.0-a\tb\r\n"), std::string_view("SSH-2.0-\x80\r\n"),
        std::string_view("\x16\x03\x01", 3), std::string_view("\0", 1),
        std::string_view(" SSH-2.0-x\r\n"), std::string_view("\r\nSSH-2.0-x\r\n")}) {
    EXPECT_EQ(ClassifyBanner(other).verdict, BannerVerdict::kNotSsh) << other;
  }
  std::string too_long = "SSH-2.0-" + std::string(kMaxBannerLine, 'x') + "\r\n";
  EXPECT_EQ(ClassifyBanner(too_long).verdict, BannerVerdict::kNotSsh);
  std::string exactly_255 = "SSH-2.0-" + std::string(kMaxBannerLine - 10, 'x') + "\r\n";
  ASSERT_EQ(exactly_255.size(), kMaxBannerLine);
  EXPECT_EQ(ClassifyBanner(exactly_255).verdict, BannerVerdict::kSsh);
}

TEST(ClassifyBannerTest, ByteByByteReachesTheSameVerdict) {
  std::string banner = "SSH-2.0-OpenSSH_9.2\r\n";
  for (size_t i = 1; i < banner.size(); ++i) {
    EXPECT_EQ(ClassifyBanner(banner.substr(0, i)).verdict, BannerVerdict::kNeedMore) << i;
  }
  EXPECT_EQ(ClassifyBanner(banner).verdict, BannerVerdict::kSsh);
}

// ---- rendering ----

TEST(HttpDateTest, Rfc7231Format) {
  EXPECT_EQ(HttpDate(kNow), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(HttpDate(absl::FromUnixSeconds(1795414939)), "Mon, 23 Nov 2026 06:22:19 GMT");
}

// Captured from nginx 1.22.1 (curl -k -i), Date aside.
constexpr std::string_view kNginx404 =
    "HTTP/1.1 404 Not Found\r\n"
    "Server: nginx/1.22.1\r\n"
    "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    "Content-Type: text/html\r\n"
    "Content-Length: 153\r\n"
    "Connection: keep-alive\r\n"
    "\r\n"
    "<html>\r\n"
    "<head><title>404 Not Found</title></head>\r\n"
    "<body>\r\n"
    "<center><h1>404 Not Found</h1></center>\r\n"
    "<hr><center>nginx/1.22.1</center>\r\n"
    "</body>\r\n"
    "</html>\r\n";

TEST(RenderErrorPageTest, Nginx404ByteForByte) {
  EXPECT_EQ(RenderErrorPage({.status = 404, .keep_alive = true}, kNow), kNginx404);
}

TEST(RenderErrorPageTest, HeadIsHeaderOnlyWithTheBodyLength) {
  std::string head = RenderErrorPage({.status = 404, .head = true, .keep_alive = true}, kNow);
  EXPECT_EQ(head, kNginx404.substr(0, kNginx404.find("<html>")));
}

TEST(RenderErrorPageTest, BodyLengthsMatchNginx) {
  struct Case {
    int status;
    size_t length;
    std::string_view status_line;
  };
  for (const Case& c : {Case{400, 157, "HTTP/1.1 400 Bad Request\r\n"},
                        Case{404, 153, "HTTP/1.1 404 Not Found\r\n"},
                        Case{405, 157, "HTTP/1.1 405 Not Allowed\r\n"},
                        Case{413, 183, "HTTP/1.1 413 Request Entity Too Large\r\n"},
                        Case{414, 177, "HTTP/1.1 414 Request-URI Too Large\r\n"},
                        Case{494, 233, "HTTP/1.1 400 Bad Request\r\n"},
                        Case{501, 165, "HTTP/1.1 501 Not Implemented\r\n"},
                        Case{505, 187, "HTTP/1.1 505 HTTP Version Not Supported\r\n"}}) {
    std::string page = RenderErrorPage({.status = c.status}, kNow);
    EXPECT_EQ(page.substr(0, c.status_line.size()), c.status_line);
    EXPECT_NE(page.find("Content-Length: " + std::to_string(c.length) + "\r\n"), std::string::npos)
        << c.status;
    EXPECT_EQ(page.size() - page.find("\r\n\r\n") - 4, c.length) << c.status;
    EXPECT_NE(page.find("Connection: close\r\n"), std::string::npos);
  }
}

TEST(RenderErrorPageTest, MsieAndChromePadding) {
  std::string page = RenderErrorPage({.status = 404, .keep_alive = true, .msie_padding = true}, kNow);
  EXPECT_NE(page.find("Content-Length: 555\r\n"), std::string::npos);
  std::string padding;
  for (int i = 0; i < 6; ++i) {
    padding += "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n";
  }
  EXPECT_EQ(page.substr(page.size() - padding.size()), padding);
}

TEST(RenderErrorPageTest, Http09IsTheBodyAlone) {
  std::string page = RenderErrorPage({.status = 404, .http09 = true}, kNow);
  EXPECT_EQ(page, kNginx404.substr(kNginx404.find("<html>")));
}

// ---- the emulator against nginx's observed answers ----

struct Answer {
  std::vector<int> statuses;  // status of each response, in order (0: an HTTP/0.9 body)
  std::vector<std::string> connection;
  bool close = false;  // close_notify after the answers (else: keeps reading)
  bool padded = false;
};

Answer Parse(const std::string& out, bool close) {
  Answer answer;
  answer.close = close;
  size_t at = 0;
  while (at < out.size()) {
    if (out.compare(at, 6, "<html>") == 0) {
      answer.statuses.push_back(0);
      break;
    }
    EXPECT_EQ(out.compare(at, 9, "HTTP/1.1 "), 0) << out.substr(at);
    answer.statuses.push_back(std::stoi(out.substr(at + 9, 3)));
    size_t connection = out.find("Connection: ", at);
    size_t eol = out.find("\r\n", connection);
    answer.connection.push_back(out.substr(connection + 12, eol - connection - 12));
    size_t length_at = out.find("Content-Length: ", at);
    size_t length = std::stoul(out.substr(length_at + 16));
    if (length == 555 || length == 559) answer.padded = true;
    size_t head_end = out.find("\r\n\r\n", at) + 4;
    bool head_only = out.compare(head_end, 6, "<html>") != 0;
    at = head_end + (head_only ? 0 : length);
  }
  return answer;
}

Answer RunEmulator(std::string_view input, bool byte_by_byte = false) {
  NginxEmulator emulator;
  std::string out;
  NginxEmulator::Next next = NginxEmulator::Next::kRead;
  if (byte_by_byte) {
    for (char c : input) {
      next = emulator.Feed(std::string_view(&c, 1), kNow, out);
      if (next != NginxEmulator::Next::kRead) break;
    }
  } else {
    next = emulator.Feed(input, kNow, out);
  }
  return Parse(out, next == NginxEmulator::Next::kCloseAfterWrite);
}

struct EmulatorCase {
  std::string name;
  std::string input;
  std::vector<int> statuses;
  bool close;
  bool padded = false;
};

void PrintTo(const EmulatorCase& c, std::ostream* os) { *os << c.name; }

class NginxEmulatorTest : public testing::TestWithParam<EmulatorCase> {};

TEST_P(NginxEmulatorTest, AnswersLikeNginx) {
  const EmulatorCase& c = GetParam();
  for (bool byte_by_byte : {false, true}) {
    Answer answer = RunEmulator(c.input, byte_by_byte);
    EXPECT_EQ(answer.statuses, c.statuses) << (byte_by_byte ? "byte by byte" : "one chunk");
    EXPECT_EQ(answer.close, c.close) << (byte_by_byte ? "byte by byte" : "one chunk");
    EXPECT_EQ(answer.padded, c.padded);
  }
}

const std::string kChromeUa =
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36\r\n";

INSTANTIATE_TEST_SUITE_P(
    Probes, NginxEmulatorTest,
    testing::Values(
        EmulatorCase{"Get", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"GetClose", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", {404}, true},
        EmulatorCase{"Http10", "GET / HTTP/1.0\r\n\r\n", {404}, true},
        EmulatorCase{"Http10KeepAlive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", {404}, false},
        EmulatorCase{"Head", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"HeadNoHost", "HEAD / HTTP/1.1\r\n\r\n", {400}, true},
        EmulatorCase{"NoHost", "GET / HTTP/1.1\r\n\r\n", {400}, true},
        EmulatorCase{"Lowercase", "get / HTTP/1.1\r\n\r\n", {400}, true},
        EmulatorCase{"Garbage", std::string("\x00\x01garbage\r\n\r\n", 13), {400}, true},
        EmulatorCase{"TlsInTls", std::string("\x16\x03\x01\x02\x00", 5), {400}, true},
        EmulatorCase{"Ssh15", "SSH-1.5-x\r\n", {400}, true},
        EmulatorCase{"Ssh20", "SSH-2.0-OpenSSH_9.2\r\n", {400}, true},
        EmulatorCase{"Partial", "GE", {}, false},
        EmulatorCase{"PartialHead", "GET / HTTP/1.1\r\nHost: x\r\n", {}, false},
        EmulatorCase{"Http09", "GET /\r\n", {0}, true},
        EmulatorCase{"Http09Head", "HEAD /\r\n", {0}, true},
        EmulatorCase{"Http09SpaceAfterUri", "GET / \r\n", {0}, true},
        EmulatorCase{"Http2Preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400}, true},
        EmulatorCase{"Http20", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", {505}, true},
        EmulatorCase{"Http100", "GET / HTTP/100.1\r\nHost: x\r\n\r\n", {505}, true},
        EmulatorCase{"Http09Version", "GET / HTTP/0.9\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"Http12", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"BadProtocol", "GET / FOO/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"UnknownMethod", "FOO / HTTP/1.1\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"Trace", "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", {405}, true},
        EmulatorCase{"SpaceInUri", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"RelativeUri", "GET a HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"AbsoluteUri", "GET http://foo/bar HTTP/1.1\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"AbsoluteUriNoHost", "GET http://h/ HTTP/1.1\r\n\r\n", {400}, true},
        EmulatorCase{"AtInHost", "GET http://h@x/ HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"Options", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"Connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"BareLf", "GET / HTTP/1.1\nHost: x\n\n", {404}, false},
        EmulatorCase{"LeadingCrlf", "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"LeadingSpace", " GET / HTTP/1.1\r\n\r\n", {400}, true},
        EmulatorCase{"CrWithoutLf", "GET / HTTP/1.1\rHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"SpaceInHeaderName", "GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", {400}, true},
        EmulatorCase{"NoColon", "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", {404}, false},
        EmulatorCase{"Underscore", "GET / HTTP/1.1\r\nHost: x\r\nX_Y: 1\r\n\r\n", {404}, false},
        EmulatorCase{"ControlInName", "GET / HTTP/1.1\r\nHost: x\r\nX\x01Y: 1\r\n\r\n", {400}, true},
        EmulatorCase{"ControlInValue", "GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", {404}, false},
        EmulatorCase{"NulInValue", std::string("GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 35), {400}, true},
        EmulatorCase{"Folded", "GET / HTTP/1.1\r\nHost: x\r\n X-Folded: y\r\n\r\n", {400}, true},
        EmulatorCase{"EmptyName", "GET / HTTP/1.1\r\n: empty\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"DuplicateHost", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", {400}, true},
        EmulatorCase{"SlashInHost", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", {400}, true},
        EmulatorCase{"DotDotHost", "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", {400}, true},
        EmulatorCase{"EmptyHost", "GET / HTTP/1.1\r\nHost: \r\n\r\n", {400}, true},
        EmulatorCase{"PortOnlyHost", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", {400}, true},
        EmulatorCase{"DotHost", "GET / HTTP/1.1\r\nHost: .\r\n\r\n", {400}, true},
        EmulatorCase{"SpaceHost", "GET / HTTP/1.1\r\nHost: x y\r\n\r\n", {400}, true},
        EmulatorCase{"Ipv6Host", "GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", {404}, false},
        EmulatorCase{"TrailingDotHost", "GET / HTTP/1.1\r\nHost: .x.\r\n\r\n", {404}, false},
        EmulatorCase{"PercentNul", "GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"BadEscape", "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"BadEscapeInQuery", "GET /?a=%zz HTTP/1.1\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"AboveRoot", "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"DotDotInside", "GET /a/../b HTTP/1.1\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"EncodedAboveRoot", "GET /a/%2e%2e/%2e%2e/ HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"Del", "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", {400}, true},
        EmulatorCase{"HighByte", "GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"Pipelined",
                     "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /y HTTP/1.0\r\n\r\n",
                     {404, 404, 404}, true},
        EmulatorCase{"BodyDiscarded",
                     "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                     "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
                     {404, 404}, false},
        EmulatorCase{"ChunkedDiscarded",
                     "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
                     {404, 404}, false},
        EmulatorCase{"BrokenChunk",
                     "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
                     {404}, true},
        EmulatorCase{"OtherEncoding", "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", {501}, true},
        EmulatorCase{"ChunkedHttp10", "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}, true},
        EmulatorCase{"ChunkedAndLength",
                     "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                     {400}, true},
        EmulatorCase{"BadLength", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", {400}, true},
        EmulatorCase{"NegativeLength", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", {400}, true},
        EmulatorCase{"HugeLength", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", {400}, true},
        EmulatorCase{"TooLargeBody", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", {413}, true},
        EmulatorCase{"DuplicateLength",
                     "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
                     {400}, true},
        EmulatorCase{"CloseWins", "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n", {404}, true},
        EmulatorCase{"LastConnectionWins",
                     "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
                     {404}, false},
        EmulatorCase{"Chrome", "GET / HTTP/1.1\r\nHost: x\r\n" + kChromeUa + "\r\n", {404}, false, true},
        EmulatorCase{"Msie", "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)\r\n\r\n", {404}, false, true},
        EmulatorCase{"ShortMsie", "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: MSIE 6.\r\n\r\n", {404}, false},
        EmulatorCase{"Firefox", "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (X11; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\r\n", {404}, false},
        EmulatorCase{"Opera", "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: Opera Chrome/1\r\n\r\n", {404}, false},
        EmulatorCase{"FirstUserAgentWins", "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: Chrome/x\r\nUser-Agent: Gecko/x\r\n\r\n", {404}, false, true},
        EmulatorCase{"ChromeError", "GET / HTTP/1.1\r\nUser-Agent: Chrome/1\r\n\r\n", {400}, true, true},
        EmulatorCase{"Msie6PostCloses",
                     "POST / HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)\r\n\r\n",
                     {404}, true, true},
        EmulatorCase{"UriTooLong", "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", {414}, true},
        EmulatorCase{"LongUriFine", "GET /" + std::string(1500, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", {404}, false},
        EmulatorCase{"HeaderTooLong", "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(9000, 'a') + "\r\n\r\n", {400}, true}),
    [](const testing::TestParamInfo<EmulatorCase>& info) { return info.param.name; });

TEST(NginxEmulatorTest, TooLargeHeaderUsesNginxs494Page) {
  NginxEmulator emulator;
  std::string out;
  emulator.Feed("GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(9000, 'a') + "\r\n\r\n", kNow, out);
  EXPECT_NE(out.find("<title>400 Request Header Or Cookie Too Large</title>"), std::string::npos);
}

TEST(NginxEmulatorTest, KeepAliveEndsAfterAThousandRequests) {
  NginxEmulator emulator;
  std::string out;
  for (int i = 1; i <= kMaxKeepaliveRequests; ++i) {
    out.clear();
    NginxEmulator::Next next = emulator.Feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n", kNow, out);
    ASSERT_TRUE(emulator.TakeResponded());
    if (i < kMaxKeepaliveRequests) {
      ASSERT_EQ(next, NginxEmulator::Next::kRead) << i;
      ASSERT_NE(out.find("Connection: keep-alive"), std::string::npos) << i;
    } else {
      EXPECT_EQ(next, NginxEmulator::Next::kCloseAfterWrite);
      EXPECT_NE(out.find("Connection: close"), std::string::npos);
    }
  }
  out.clear();
  EXPECT_EQ(emulator.Feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n", kNow, out),
            NginxEmulator::Next::kCloseAfterWrite);
  EXPECT_TRUE(out.empty());
}

TEST(NginxEmulatorTest, NeverSaysSsh) {
  for (std::string_view probe : {"SSH-2.0-x\r\n", "SSH-2.0-OpenSSH_9.2\r\n", "SSH-", "\r\n"}) {
    NginxEmulator emulator;
    std::string out;
    emulator.Feed(probe, kNow, out);
    EXPECT_EQ(out.find("SSH-"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace alknet::stealth

namespace alknet {
namespace {

// Ticket keys: one key per period; the previous one still opens tickets, older ones do not.
TEST(TicketKeyRingTest, RotatesAndKeepsOnlyThePreviousKey) {
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  TicketKeyRing ring(absl::Hours(1), [&now] { return now; });
  absl::StatusOr<TicketKeyRing::Key> first = ring.ForNewTicket();
  ASSERT_TRUE(first.ok());
  now += absl::Minutes(59);
  absl::StatusOr<TicketKeyRing::Key> same = ring.ForNewTicket();
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->name, first->name);
  EXPECT_EQ(same->aes, first->aes);

  now += absl::Minutes(1);
  absl::StatusOr<TicketKeyRing::Key> second = ring.ForNewTicket();
  ASSERT_TRUE(second.ok());
  EXPECT_NE(second->name, first->name);
  EXPECT_NE(second->aes, first->aes);
  EXPECT_NE(second->hmac, first->hmac);
  ASSERT_TRUE(ring.Find(first->name.data()).has_value());
  EXPECT_EQ(ring.Find(first->name.data())->aes, first->aes);
  EXPECT_TRUE(ring.Find(second->name.data()).has_value());

  // Opening alone rotates too: after another period the first key is gone.
  now += absl::Hours(1);
  EXPECT_FALSE(ring.Find(first->name.data()).has_value());
  EXPECT_TRUE(ring.Find(second->name.data()).has_value());
  unsigned char unknown[16] = {};
  EXPECT_FALSE(ring.Find(unknown).has_value());
}

// A TLS 1.2 handshake in memory between a client and a server context of `profile` that uses
// `ring`; `session` is offered for resumption. Returns the client's SSL (caller frees) or null.
SSL* HandshakeInMemory(SSL_CTX* server_ctx, SSL_SESSION* session) {
  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(client_ctx, TLS1_2_VERSION);
  SSL* client = SSL_new(client_ctx);
  SSL_CTX_free(client_ctx);  // the SSL keeps a reference
  SSL* server = SSL_new(server_ctx);
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
  SSL_set_bio(client, client_bio, client_bio);
  SSL_set_bio(server, server_bio, server_bio);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  if (session != nullptr) SSL_set_session(client, session);
  bool done = false;
  for (int i = 0; i < 20 && !done; ++i) {
    int c = SSL_do_handshake(client);
    int s = SSL_do_handshake(server);
    done = c == 1 && s == 1;
  }
  // A connection freed without a shutdown marks its session not resumable.
  SSL_set_shutdown(server, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_set_shutdown(client, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(server);
  if (!done) {
    SSL_free(client);
    return nullptr;
  }
  return client;
}

// The server's tickets are sealed with the ring's current key and open while the ring keeps that
// key; two rotations later the ticket no longer resumes (a full handshake instead).
TEST(TicketKeyRingTest, ServerContextSealsTicketsWithTheRing) {
  char dir_template[] = "/tmp/alknet-ticket-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::string dir = dir_template;
  ASSERT_TRUE(GenerateSelfSignedCertificate(dir + "/cert.pem", dir + "/key.pem", "localhost").ok());
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  auto ring = std::make_shared<TicketKeyRing>(absl::Hours(1), [&now] { return now; });
  absl::StatusOr<SslCtxPtr> ctx =
      BuildServerContext(dir + "/cert.pem", dir + "/key.pem", nullptr, TlsProfile::kNginx, ring);
  ASSERT_TRUE(ctx.ok()) << ctx.status();

  SSL* first = HandshakeInMemory(ctx->get(), nullptr);
  ASSERT_NE(first, nullptr);
  SSL_SESSION* session = SSL_get1_session(first);
  SSL_free(first);
  const unsigned char* ticket = nullptr;
  size_t ticket_length = 0;
  SSL_SESSION_get0_ticket(session, &ticket, &ticket_length);
  ASSERT_GE(ticket_length, 16u);
  absl::StatusOr<TicketKeyRing::Key> current = ring->ForNewTicket();
  ASSERT_TRUE(current.ok());
  EXPECT_TRUE(std::equal(current->name.begin(), current->name.end(), ticket));
  EXPECT_EQ(SSL_SESSION_get_ticket_lifetime_hint(session), 300u);

  SSL* resumed = HandshakeInMemory(ctx->get(), session);
  ASSERT_NE(resumed, nullptr);
  EXPECT_EQ(SSL_session_reused(resumed), 1);
  SSL_free(resumed);

  now += absl::Hours(1);  // rotated once: the previous key still opens it (within its 300 s
  SSL* still = HandshakeInMemory(ctx->get(), session);  // lifetime in real time)
  ASSERT_NE(still, nullptr);
  EXPECT_EQ(SSL_session_reused(still), 1);
  SSL_free(still);

  now += absl::Hours(1);  // rotated twice: the key is gone
  SSL* full = HandshakeInMemory(ctx->get(), session);
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(SSL_session_reused(full), 0);
  SSL_free(full);
  SSL_SESSION_free(session);
  unlink((dir + "/cert.pem").c_str());
  unlink((dir + "/key.pem").c_str());
  rmdir(dir.c_str());
}

// Two rings (two processes, two installs) never share a key.
TEST(TicketKeyRingTest, EveryRingHasItsOwnKeys) {
  TicketKeyRing a, b;
  absl::StatusOr<TicketKeyRing::Key> ka = a.ForNewTicket(), kb = b.ForNewTicket();
  ASSERT_TRUE(ka.ok() && kb.ok());
  EXPECT_NE(ka->name, kb->name);
  EXPECT_NE(ka->aes, kb->aes);
  EXPECT_FALSE(b.Find(ka->name.data()).has_value());
}

}  // namespace
}  // namespace alknet
