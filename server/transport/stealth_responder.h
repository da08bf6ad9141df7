// What a tls:// listener does with the first bytes a client sends: an SSH banner goes to SSH,
// anything else is answered the way a stock Debian nginx 1.22.1 answers it (404 for a valid
// request, 400/414/501/505 for a bad one, silence and a close on a timeout). Pure logic, no I/O:
// the transport feeds bytes in and writes the bytes that come out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace alknet::stealth {

// ---- SSH banner ----

enum class BannerVerdict {
  kNeedMore,  // still a prefix of "SSH-2.0-<printable>*\r?\n" within 255 bytes
  kSsh,       // a complete SSH-2.0 identification line
  kNotSsh,    // can never become one
};

struct BannerResult {
  BannerVerdict verdict = BannerVerdict::kNeedMore;
  size_t line_size = 0;  // kSsh: bytes of the line including its "\n"
};

// RFC 4253 4.2: the client's first line is "SSH-2.0-softwareversion[ SP comments]" CR LF, at most
// 255 bytes; printable US-ASCII. A bare LF is accepted, as OpenSSH does.
inline constexpr size_t kMaxBannerLine = 255;
BannerResult ClassifyBanner(std::string_view data);

// ---- nginx ----

inline constexpr std::string_view kServerToken = "nginx/1.22.1";

// nginx's defaults that shape what a client can observe.
inline constexpr int kMaxKeepaliveRequests = 1000;           // keepalive_requests
inline constexpr size_t kLargeHeaderBuffer = 8192;           // large_client_header_buffers 4 8k
inline constexpr size_t kMaxHeadBytes = 4 * kLargeHeaderBuffer;
inline constexpr uint64_t kClientMaxBodySize = 1024 * 1024;  // client_max_body_size 1m

// "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 7231 IMF-fixdate).
std::string HttpDate(absl::Time now);

// Status 494 is nginx's internal "Request Header Or Cookie Too Large", sent as a 400.
struct ErrorPage {
  int status = 404;
  bool head = false;         // HEAD: header only
  bool keep_alive = false;   // "Connection: keep-alive" vs "close"
  bool msie_padding = false; // User-Agent had MSIE or Chrome (msie_padding on)
  bool http09 = false;       // HTTP/0.9 request: body only, no status line or headers
};
// The exact bytes nginx sends for its built-in error page.
std::string RenderErrorPage(const ErrorPage& page, absl::Time now);

// One connection's worth of nginx's request handling (a default server whose only location
// returns 404). Feed it what the client sent; it appends responses to `out`.
class NginxEmulator {
 public:
  enum class Next {
    kRead,             // keep reading (keep-alive, or mid-request)
    kCloseAfterWrite,  // write `out`, then close_notify and close
  };

  Next Feed(std::string_view data, absl::Time now, std::string& out);
  // True once a complete response has been produced since the last call (the transport restarts
  // its idle timer, like keepalive_timeout after a response).
  bool TakeResponded() {
    bool value = responded_;
    responded_ = false;
    return value;
  }
  int requests() const { return requests_; }
  // No byte of a next request has arrived (nginx's keep-alive / wait state). A timeout there
  // closes with close_notify; in the middle of a request nginx closes without one.
  bool idle() const { return state_ == State::kStart && !started_; }

 private:
  enum class State {
    kStart,
    kMethod,
    kSpacesBeforeUri,
    kScheme,
    kSchemeSlash,
    kSchemeSlash2,
    kHost,
    kPath,
    kSpacesAfterUri,
    kHttpH,
    kHttpHT,
    kHttpHTT,
    kHttpHTTP,
    kFirstMajor,
    kMajor,
    kFirstMinor,
    kMinor,
    kSpacesAfterVersion,
    kAlmostDone,
    kHttp09AlmostDone,
    kHeaders,      // collecting header lines
    kDiscardBody,  // skipping a Content-Length body
    kChunkSize,
    kChunkExtension,
    kChunkSizeAlmostDone,
    kChunkData,
    kChunkDataCr,
    kChunkDataLf,
    kTrailer,
    kClosed,
  };

  struct Request {
    std::string method;
    std::string path;  // up to '?', still percent-encoded
    int major = 0;
    int minor = 0;
    bool http09 = false;
    bool has_host = false;
    bool host_invalid = false;
    bool duplicate_host = false;
    bool has_content_length = false;
    bool bad_content_length = false;
    uint64_t content_length = 0;
    bool has_transfer_encoding = false;
    bool chunked = false;
    bool duplicate_transfer_encoding = false;
    int connection = 0;  // 0 unset, 1 close, 2 keep-alive
    bool user_agent_seen = false;
    bool msie = false;
    bool msie6 = false;
    bool chrome = false;
    size_t line_bytes = 0;  // request line so far
    size_t head_bytes = 0;
  };

  // Consumes bytes of the request line; returns false when a response was produced.
  bool StepRequestLine(char c, absl::Time now, std::string& out, Next& next);
  bool HeaderLine(std::string_view line, absl::Time now, std::string& out, Next& next);
  void HeadComplete(absl::Time now, std::string& out, Next& next);
  void Error(int status, absl::Time now, std::string& out, Next& next);
  bool StepChunked(char c);
  void FlushPending(bool broken, absl::Time now, std::string& out, Next& next);
  void ResetRequest();

  State state_ = State::kStart;
  Request request_;
  std::string line_;  // the header line being collected
  uint64_t body_left_ = 0;
  uint64_t chunk_left_ = 0;
  bool chunk_digits_ = false;
  bool trailer_empty_ = true;
  bool close_after_body_ = false;
  bool pending_response_ = false;  // a chunked request's answer, sent at the end of Feed()
  ErrorPage pending_page_;
  int requests_ = 0;
  bool responded_ = false;
  bool started_ = false;  // bytes of the current request seen (leading CR/LF included)
};

}  // namespace alknet::stealth
