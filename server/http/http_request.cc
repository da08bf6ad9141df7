// Incremental parser for an HTTP/1.x request head (request line + headers), bounded in size.
#include "server/http/http_request.h"

#include <algorithm>
#include <cctype>

namespace alknet::http {
namespace {

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

ParseResult Invalid(std::string error) {
  ParseResult result;
  result.state = ParseState::kInvalid;
  result.error = std::move(error);
  return result;
}

}  // namespace

ParseResult ParseRequestHead(std::string_view data) {
  size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (data.size() >= kMaxRequestHead) return Invalid("request head too large");
    // Reject early what can never become a request line.
    for (char c : data.substr(0, std::min<size_t>(data.size(), 16))) {
      if (c == ' ' || c == '\r' || c == '\n') break;
      if (!IsTokenChar(c)) return Invalid("bad method");
    }
    return {};
  }
  if (end + 4 > kMaxRequestHead) return Invalid("request head too large");
  ParseResult result;
  RequestHead& head = result.head;
  head.head_size = end + 4;
  std::string_view rest = data.substr(0, end + 2);  // keep the last CRLF as a line end

  size_t line_end = rest.find("\r\n");
  std::string_view request_line = rest.substr(0, line_end);
  rest.remove_prefix(line_end + 2);
  size_t first_space = request_line.find(' ');
  size_t last_space = request_line.rfind(' ');
  if (first_space == std::string_view::npos || first_space == last_space) {
    return Invalid("bad request line");
  }
  std::string_view method = request_line.substr(0, first_space);
  std::string_view target = request_line.substr(first_space + 1, last_space - first_space - 1);
  std::string_view version = request_line.substr(last_space + 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), IsTokenChar)) {
    return Invalid("bad method");
  }
  if (target.empty() || target.find(' ') != std::string_view::npos) return Invalid("bad target");
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return Invalid("bad target");
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return Invalid("unsupported version");
  head.method = std::string(method);
  head.target = std::string(target);
  head.version = std::string(version);
  head.keep_alive = version == "HTTP/1.1";

  while (!rest.empty()) {
    line_end = rest.find("\r\n");
    std::string_view line = rest.substr(0, line_end);
    rest.remove_prefix(line_end + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return Invalid("bad header line");
    std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), IsTokenChar)) return Invalid("bad header name");
    if (head.headers.size() >= kMaxHeaders) return Invalid("too many headers");
    std::string value(Trim(line.substr(colon + 1)));
    for (char c : value) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return Invalid("bad header value");
      }
    }
    std::string lower_name = Lower(name);
    if (lower_name == "connection") {
      std::string lower_value = Lower(value);
      if (lower_value.find("close") != std::string::npos) head.keep_alive = false;
      if (lower_value.find("keep-alive") != std::string::npos) head.keep_alive = true;
    }
    head.headers.emplace_back(std::move(lower_name), std::move(value));
  }
  result.state = ParseState::kComplete;
  return result;
}

}  // namespace alknet::http
