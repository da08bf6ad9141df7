// SSH banner classification and a byte-exact imitation of nginx 1.22.1's answers.
//
// The nginx rules below were taken from observing Debian's nginx 1.22.1 (a default server
// whose location returns 404) with scripted probes, not from its source: which bytes make a
// request invalid (400), when it keeps the connection open, the error page bodies and the
// MSIE/Chrome padding. tests/interop/tls_test.cc compares the two side by side.
#include "server/transport/stealth_responder.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "server/common/strings.h"

namespace alknet::stealth {
namespace {

constexpr std::string_view kSshPrefix = "SSH-2.0-";

constexpr std::string_view kPaddingLine =
    "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n";

bool IsUpperMethodChar(char c) { return (c >= 'A' && c <= 'Z') || c == '_' || c == '-'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsControl(char c) {
  auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}
// Sets a request's path to a short literal. GCC 12 at -O3 inlines std::string's assignment
// here and then reports a memcpy "overlap" of 2^63 bytes (-Wrestrict, GCC bug 105329); the
// assignment is well-defined, so the warning is silenced for this one statement only.
void SetPath(std::string& path, std::string_view literal) {
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
  path.assign(literal.data(), literal.size());
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool ContainsCaseless(std::string_view haystack, std::string_view needle) {
  return Lower(haystack).find(needle) != std::string::npos;
}

std::string_view TrimSpaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::string_view Reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Not Allowed";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Large";
    case 494: return "Bad Request";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
  }
  return "Bad Request";
}

std::string Body(int status) {
  if (status == 494) {
    return absl::StrCat(
        "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n"
        "<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"
        "<center>Request Header Or Cookie Too Large</center>\r\n<hr><center>",
        Sv(kServerToken), "</center>\r\n</body>\r\n</html>\r\n");
  }
  std::string title = absl::StrCat(status, " ", Sv(Reason(status)));
  return absl::StrCat("<html>\r\n<head><title>", title, "</title></head>\r\n<body>\r\n<center><h1>",
                      title, "</h1></center>\r\n<hr><center>", Sv(kServerToken),
                      "</center>\r\n</body>\r\n</html>\r\n");
}

// The percent-decoded path must not climb above the root and must not hold %00 or a broken
// escape (nginx: 400).
bool PathIsValid(std::string_view raw) {
  std::string decoded;
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '?') break;
    if (c == '%') {
      if (i + 2 >= raw.size()) return false;
      int high = HexValue(raw[i + 1]);
      int low = HexValue(raw[i + 2]);
      if (high < 0 || low < 0) return false;
      c = static_cast<char>(high * 16 + low);
      if (c == '\0') return false;
      i += 2;
    }
    decoded.push_back(c);
  }
  int depth = 0;
  size_t start = 0;
  while (start <= decoded.size()) {
    size_t slash = decoded.find('/', start);
    if (slash == std::string::npos) slash = decoded.size();
    std::string_view segment(decoded.data() + start, slash - start);
    if (segment == "..") {
      if (depth == 0) return false;
      --depth;
    } else if (!segment.empty() && segment != ".") {
      ++depth;
    }
    start = slash + 1;
  }
  return true;
}

// nginx's Host check: no '/', NUL, spaces or controls, no "..", and not empty once a port and
// trailing dots are removed.
bool HostIsValid(std::string_view host) {
  size_t host_len = host.size();
  bool literal = !host.empty() && host.front() == '[';
  bool in_port = false;
  for (size_t i = 0; i < host.size(); ++i) {
    char c = host[i];
    if (c == '/' || c == '\0' || static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
    if (c == '.' && i > 0 && host[i - 1] == '.' && !in_port) return false;
    if (c == ']' && literal) literal = false;
    if (c == ':' && !literal && !in_port) {
      host_len = i;
      in_port = true;
    }
  }
  while (host_len > 0 && host[host_len - 1] == '.') --host_len;
  return host_len > 0;
}

}  // namespace

BannerResult ClassifyBanner(std::string_view data) {
  BannerResult result;
  size_t prefix = std::min(data.size(), kSshPrefix.size());
  if (data.substr(0, prefix) != kSshPrefix.substr(0, prefix)) {
    result.verdict = BannerVerdict::kNotSsh;
    return result;
  }
  size_t limit = std::min(data.size(), kMaxBannerLine);
  for (size_t i = kSshPrefix.size(); i < limit; ++i) {
    char c = data[i];
    if (c == '\n') {
      size_t content_end = i;
      if (content_end > 0 && data[content_end - 1] == '\r') --content_end;
      // "SSH-2.0-" needs a software version of at least one character.
      if (content_end <= kSshPrefix.size()) {
        result.verdict = BannerVerdict::kNotSsh;
        return result;
      }
      result.verdict = BannerVerdict::kSsh;
      result.line_size = i + 1;
      return result;
    }
    if (c == '\r') {
      if (i + 1 < data.size() && data[i + 1] != '\n') {
        result.verdict = BannerVerdict::kNotSsh;
        return result;
      }
      continue;
    }
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      result.verdict = BannerVerdict::kNotSsh;
      return result;
    }
  }
  result.verdict = data.size() >= kMaxBannerLine ? BannerVerdict::kNotSsh : BannerVerdict::kNeedMore;
  return result;
}

std::string HttpDate(absl::Time now) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t seconds = absl::ToTimeT(now);
  struct tm tm {};
  gmtime_r(&seconds, &tm);
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buffer;
}

std::string RenderErrorPage(const ErrorPage& page, absl::Time now) {
  std::string body = Body(page.status);
  if (page.msie_padding && !page.http09) {
    for (int i = 0; i < 6; ++i) body.append(kPaddingLine.data(), kPaddingLine.size());
  }
  if (page.http09) return body;
  int shown_status = page.status == 494 ? 400 : page.status;
  std::string out = absl::StrCat("HTTP/1.1 ", shown_status, " ", Sv(Reason(page.status)),
                                 "\r\nServer: ", Sv(kServerToken), "\r\nDate: ", HttpDate(now),
                                 "\r\nContent-Type: text/html\r\nContent-Length: ", body.size(),
                                 "\r\nConnection: ", page.keep_alive ? "keep-alive" : "close",
                                 "\r\n\r\n");
  if (!page.head) out.append(body);
  return out;
}

// ---- NginxEmulator ----

void NginxEmulator::ResetRequest() {
  request_ = Request{};
  line_.clear();
  state_ = State::kStart;
  started_ = false;
}

void NginxEmulator::Error(int status, absl::Time now, std::string& out, Next& next) {
  ErrorPage page;
  page.status = status;
  page.head = request_.method == "HEAD" && !request_.http09;
  page.keep_alive = false;
  page.msie_padding = request_.msie || request_.chrome;
  page.http09 = request_.http09;
  out.append(RenderErrorPage(page, now));
  responded_ = true;
  ++requests_;
  state_ = State::kClosed;
  next = Next::kCloseAfterWrite;
}

bool NginxEmulator::StepRequestLine(char c, absl::Time now, std::string& out, Next& next) {
  Request& r = request_;
  if (state_ != State::kStart) {
    if (++r.line_bytes > kLargeHeaderBuffer) {
      Error(414, now, out, next);
      return false;
    }
  }
  auto bad = [&] {
    Error(400, now, out, next);
    return false;
  };
  // A request line that ends before " HTTP/x.y" is HTTP/0.9 (one more '\n' after a '\r').
  auto http09_line_end = [&] {
    r.http09 = true;
    if (c == '\r') {
      state_ = State::kHttp09AlmostDone;
      return true;
    }
    HeadComplete(now, out, next);
    return false;
  };
  switch (state_) {
    case State::kStart:
      started_ = true;
      if (c == '\r' || c == '\n') return true;
      if (!IsUpperMethodChar(c)) return bad();
      r.method.push_back(c);
      r.line_bytes = 1;
      state_ = State::kMethod;
      return true;
    case State::kMethod:
      if (c == ' ') {
        state_ = State::kSpacesBeforeUri;
        return true;
      }
      if (!IsUpperMethodChar(c)) return bad();
      r.method.push_back(c);
      return true;
    case State::kSpacesBeforeUri:
      if (c == ' ') return true;
      if (c == '/') {
        r.path.push_back(c);
        state_ = State::kPath;
        return true;
      }
      if (IsAlpha(c)) {
        state_ = State::kScheme;
        return true;
      }
      return bad();
    case State::kScheme:
      if (IsAlpha(c) || IsDigit(c) || c == '+' || c == '-' || c == '.') return true;
      if (c == ':') {
        state_ = State::kSchemeSlash;
        return true;
      }
      return bad();
    case State::kSchemeSlash:
      if (c != '/') return bad();
      state_ = State::kSchemeSlash2;
      return true;
    case State::kSchemeSlash2:
      if (c != '/') return bad();
      state_ = State::kHost;
      return true;
    case State::kHost:
      if (IsAlpha(c) || IsDigit(c) || c == '.' || c == '-' || c == '_' || c == ':' || c == '[' ||
          c == ']') {
        return true;
      }
      if (c == '/') {
        r.path.push_back(c);
        state_ = State::kPath;
        return true;
      }
      if (c == '?') {
        SetPath(r.path, "/?");
        state_ = State::kPath;
        return true;
      }
      if (c == ' ') {
        SetPath(r.path, "/");
        state_ = State::kSpacesAfterUri;
        return true;
      }
      if (c == '\r' || c == '\n') {
        SetPath(r.path, "/");
        return http09_line_end();
      }
      return bad();
    case State::kPath:
      if (c == ' ') {
        state_ = State::kSpacesAfterUri;
        return true;
      }
      if (c == '\r' || c == '\n') return http09_line_end();
      if (IsControl(c)) return bad();
      r.path.push_back(c);
      return true;
    case State::kSpacesAfterUri:
      if (c == ' ') return true;
      if (c == 'H') {
        state_ = State::kHttpH;
        return true;
      }
      if (c == '\r' || c == '\n') return http09_line_end();
      return bad();
    case State::kHttpH:
      if (c != 'T') return bad();
      state_ = State::kHttpHT;
      return true;
    case State::kHttpHT:
      if (c != 'T') return bad();
      state_ = State::kHttpHTT;
      return true;
    case State::kHttpHTT:
      if (c != 'P') return bad();
      state_ = State::kHttpHTTP;
      return true;
    case State::kHttpHTTP:
      if (c != '/') return bad();
      state_ = State::kFirstMajor;
      return true;
    case State::kFirstMajor:
      if (c < '1' || c > '9') return bad();
      r.major = c - '0';
      state_ = State::kMajor;
      return true;
    case State::kMajor:
      if (c == '.') {
        state_ = State::kFirstMinor;
        return true;
      }
      if (!IsDigit(c)) return bad();
      r.major = r.major * 10 + (c - '0');
      if (r.major > 99) {
        Error(505, now, out, next);
        return false;
      }
      return true;
    case State::kFirstMinor:
      if (!IsDigit(c)) return bad();
      r.minor = c - '0';
      state_ = State::kMinor;
      return true;
    case State::kMinor:
      if (c == ' ') {
        state_ = State::kSpacesAfterVersion;
        return true;
      }
      if (c == '\r') {
        state_ = State::kAlmostDone;
        return true;
      }
      if (c == '\n') break;
      if (!IsDigit(c)) return bad();
      r.minor = r.minor * 10 + (c - '0');
      if (r.minor > 999) return bad();
      return true;
    case State::kSpacesAfterVersion:
      if (c == ' ') return true;
      if (c == '\r') {
        state_ = State::kAlmostDone;
        return true;
      }
      if (c == '\n') break;
      return bad();
    case State::kAlmostDone:
      if (c != '\n') return bad();
      break;
    case State::kHttp09AlmostDone:
      if (c != '\n') return bad();
      HeadComplete(now, out, next);
      return false;
    default:
      return bad();
  }
  // The request line is complete (with a version).
  if (r.major > 1) {
    Error(505, now, out, next);
    return false;
  }
  if (!PathIsValid(r.path)) return bad();
  r.head_bytes = r.line_bytes;
  state_ = State::kHeaders;
  line_.clear();
  return true;
}

bool NginxEmulator::HeaderLine(std::string_view line, absl::Time now, std::string& out,
                               Next& next) {
  Request& r = request_;
  auto bad = [&] {
    Error(400, now, out, next);
    return false;
  };
  if (line.front() == ' ' || line.front() == '\t' || line.front() == ':') return bad();
  size_t colon = line.find(':');
  std::string_view name = line.substr(0, colon);
  for (char c : name) {
    if (c == ' ' || c == '\t' || IsControl(c)) return bad();
  }
  if (colon == std::string_view::npos) return true;  // nginx ignores a line without a colon
  std::string_view raw_value = line.substr(colon + 1);
  if (raw_value.find('\0') != std::string_view::npos) return bad();
  std::string_view value = TrimSpaces(raw_value);
  std::string lower = Lower(name);
  if (lower == "host") {
    if (r.has_host) return bad();
    r.has_host = true;
    if (!HostIsValid(value)) return bad();
  } else if (lower == "content-length") {
    if (r.has_content_length) return bad();
    r.has_content_length = true;
    if (value.empty() || value.size() > 18 || !std::all_of(value.begin(), value.end(), IsDigit)) {
      r.bad_content_length = true;
    } else {
      r.content_length = 0;
      for (char c : value) r.content_length = r.content_length * 10 + static_cast<uint64_t>(c - '0');
    }
  } else if (lower == "transfer-encoding") {
    if (r.has_transfer_encoding) return bad();
    r.has_transfer_encoding = true;
    r.chunked = Lower(value) == "chunked";
  } else if (lower == "connection") {
    if (ContainsCaseless(value, "close")) {
      r.connection = 1;
    } else if (ContainsCaseless(value, "keep-alive")) {
      r.connection = 2;
    }
  } else if (lower == "user-agent" && !r.user_agent_seen) {
    r.user_agent_seen = true;
    size_t msie = value.find("MSIE ");
    if (msie != std::string_view::npos && msie + 7 < value.size()) {
      r.msie = true;
      if (value[msie + 6] == '.') {
        char major = value[msie + 5];
        if (major == '4' || major == '5') r.msie6 = true;
        if (major == '6' && value.find("SV1", msie + 8) == std::string_view::npos) r.msie6 = true;
      }
    }
    bool opera = value.find("Opera") != std::string_view::npos;
    if (opera) r.msie = r.msie6 = false;
    if (!r.msie && !opera && value.find("Gecko/") == std::string_view::npos &&
        value.find("Chrome/") != std::string_view::npos) {
      r.chrome = true;
    }
  }
  return true;
}

void NginxEmulator::HeadComplete(absl::Time now, std::string& out, Next& next) {
  Request& r = request_;
  if (r.http09) {
    if (r.method != "GET") {
      Error(400, now, out, next);
      return;
    }
    if (!PathIsValid(r.path)) {
      Error(400, now, out, next);
      return;
    }
    Error(404, now, out, next);
    return;
  }
  bool http11 = r.major == 1 && r.minor >= 1;
  if (!r.has_host && http11) return Error(400, now, out, next);
  if (r.bad_content_length) return Error(400, now, out, next);
  if (r.has_transfer_encoding) {
    if (!http11) return Error(400, now, out, next);
    if (!r.chunked) return Error(501, now, out, next);
    if (r.has_content_length) return Error(400, now, out, next);
  }
  if (r.method == "TRACE") return Error(405, now, out, next);
  if (r.has_content_length && r.content_length > kClientMaxBodySize) {
    return Error(413, now, out, next);
  }
  ++requests_;
  bool keep_alive = http11 ? r.connection != 1 : r.connection == 2;
  if (r.msie6 && r.method == "POST") keep_alive = false;
  if (requests_ >= kMaxKeepaliveRequests) keep_alive = false;
  ErrorPage page;
  page.status = 404;
  page.head = r.method == "HEAD";
  page.keep_alive = keep_alive;
  page.msie_padding = r.msie || r.chrome;
  if (r.chunked) {
    // nginx reads what has arrived of a chunked body before it answers: a broken chunk in
    // that data turns the answer into "Connection: close". Answer at the end of this Feed().
    pending_page_ = page;
    pending_response_ = true;
    close_after_body_ = !keep_alive;
    chunk_left_ = 0;
    chunk_digits_ = false;
    state_ = State::kChunkSize;
    return;
  }
  out.append(RenderErrorPage(page, now));
  responded_ = true;
  if (!keep_alive) {
    state_ = State::kClosed;
    next = Next::kCloseAfterWrite;
    return;
  }
  body_left_ = r.has_content_length ? r.content_length : 0;
  bool has_body = body_left_ > 0;
  ResetRequest();
  if (has_body) state_ = State::kDiscardBody;
}

void NginxEmulator::FlushPending(bool broken, absl::Time now, std::string& out, Next& next) {
  if (!pending_response_) return;
  pending_response_ = false;
  if (broken) pending_page_.keep_alive = false;
  out.append(RenderErrorPage(pending_page_, now));
  responded_ = true;
  if (!pending_page_.keep_alive) {
    state_ = State::kClosed;
    next = Next::kCloseAfterWrite;
  }
}

// One byte of a chunked body being discarded; false when it is malformed.
bool NginxEmulator::StepChunked(char c) {
  switch (state_) {
    case State::kChunkSize: {
      int digit = HexValue(c);
      if (digit >= 0) {
        if (chunk_left_ > (uint64_t{1} << 40)) return false;
        chunk_left_ = chunk_left_ * 16 + static_cast<uint64_t>(digit);
        chunk_digits_ = true;
        return true;
      }
      if (!chunk_digits_) return false;
      if (c == ';' || c == ' ' || c == '\t') {
        state_ = State::kChunkExtension;
        return true;
      }
      if (c == '\r') {
        state_ = State::kChunkSizeAlmostDone;
        return true;
      }
      if (c == '\n') break;
      return false;
    }
    case State::kChunkExtension:
      if (c == '\r') state_ = State::kChunkSizeAlmostDone;
      if (c == '\n') break;
      return true;
    case State::kChunkSizeAlmostDone:
      if (c != '\n') return false;
      break;
    case State::kChunkData:
      if (--chunk_left_ == 0) state_ = State::kChunkDataCr;
      return true;
    case State::kChunkDataCr:
      if (c == '\r') {
        state_ = State::kChunkDataLf;
        return true;
      }
      if (c != '\n') return false;
      state_ = State::kChunkSize;
      chunk_left_ = 0;
      chunk_digits_ = false;
      return true;
    case State::kChunkDataLf:
      if (c != '\n') return false;
      state_ = State::kChunkSize;
      chunk_left_ = 0;
      chunk_digits_ = false;
      return true;
    case State::kTrailer:
      if (c == '\n') {
        if (trailer_empty_) {
          state_ = State::kStart;  // body done (the caller resets the request)
          return true;
        }
        trailer_empty_ = true;
      } else if (c != '\r') {
        trailer_empty_ = false;
      }
      return true;
    default:
      return false;
  }
  // End of a chunk-size line.
  if (chunk_left_ == 0) {
    state_ = State::kTrailer;
    trailer_empty_ = true;
  } else {
    state_ = State::kChunkData;
  }
  return true;
}

NginxEmulator::Next NginxEmulator::Feed(std::string_view data, absl::Time now, std::string& out) {
  Next next = Next::kRead;
  size_t i = 0;
  while (i < data.size() && next == Next::kRead) {
    switch (state_) {
      case State::kClosed:
        return Next::kCloseAfterWrite;
      case State::kDiscardBody: {
        uint64_t take = std::min<uint64_t>(body_left_, data.size() - i);
        body_left_ -= take;
        i += static_cast<size_t>(take);
        if (body_left_ == 0) ResetRequest();
        break;
      }
      case State::kChunkSize:
      case State::kChunkExtension:
      case State::kChunkSizeAlmostDone:
      case State::kChunkData:
      case State::kChunkDataCr:
      case State::kChunkDataLf:
      case State::kTrailer: {
        if (state_ == State::kChunkData) {
          // Skip the chunk's data in one step.
          uint64_t take = std::min<uint64_t>(chunk_left_, data.size() - i);
          chunk_left_ -= take;
          i += static_cast<size_t>(take);
          if (chunk_left_ == 0) state_ = State::kChunkDataCr;
          break;
        }
        if (!StepChunked(data[i++])) {
          if (pending_response_) {
            FlushPending(/*broken=*/true, now, out, next);
          } else {
            state_ = State::kClosed;
            next = Next::kCloseAfterWrite;
          }
          break;
        }
        if (state_ == State::kStart) {  // the chunked body is over
          bool close = close_after_body_;
          FlushPending(/*broken=*/false, now, out, next);
          if (close || next != Next::kRead) {
            state_ = State::kClosed;
            next = Next::kCloseAfterWrite;
          } else {
            ResetRequest();
          }
        }
        break;
      }
      case State::kHeaders: {
        char c = data[i++];
        Request& r = request_;
        if (++r.head_bytes > kMaxHeadBytes || line_.size() + 1 > kLargeHeaderBuffer) {
          Error(494, now, out, next);
          break;
        }
        if (c != '\n') {
          line_.push_back(c);
          break;
        }
        std::string_view line = line_;
        while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.find('\r') != std::string_view::npos) {
          Error(400, now, out, next);
          break;
        }
        if (line.empty()) {
          HeadComplete(now, out, next);
          break;
        }
        std::string copy(line);
        line_.clear();
        HeaderLine(copy, now, out, next);
        break;
      }
      default:
        StepRequestLine(data[i++], now, out, next);
        break;
    }
  }
  if (state_ == State::kClosed) next = Next::kCloseAfterWrite;
  if (pending_response_ && next == Next::kRead) {
    bool close = close_after_body_;
    FlushPending(/*broken=*/false, now, out, next);
    if (close) {
      state_ = State::kClosed;
      next = Next::kCloseAfterWrite;
    }
  }
  return next;
}

}  // namespace alknet::stealth
