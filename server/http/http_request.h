// Incremental parser for an HTTP/1.x request head (request line + headers), bounded in size.
// Used by the status endpoints and by the TLS stealth responder; never trusts its input.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace alknet::http {

struct RequestHead {
  std::string method;   // "GET", "HEAD", ...
  std::string target;   // "/metrics"
  std::string version;  // "HTTP/1.1"
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  bool keep_alive = false;  // HTTP/1.1 default unless "Connection: close"; 1.0 needs keep-alive
  size_t head_size = 0;     // bytes consumed, including the blank line
};

enum class ParseState { kIncomplete, kComplete, kInvalid };

struct ParseResult {
  ParseState state = ParseState::kIncomplete;
  RequestHead head;
  std::string error;  // for kInvalid
};

inline constexpr size_t kMaxRequestHead = 8192;
inline constexpr size_t kMaxHeaders = 64;

// Parses the head from the start of `data` (which may hold more bytes after it).
ParseResult ParseRequestHead(std::string_view data);

}  // namespace alknet::http
