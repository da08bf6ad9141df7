// A strict check that one log line is a valid JSON object of string values (RFC 8259 strings:
// no raw control characters, only the defined escapes, valid UTF-8), with no repeated key.
#pragma once

#include <cctype>
#include <set>
#include <string>
#include <string_view>

namespace alknet::test_json {

// Reads a JSON string at `text[at]` (the opening quote); returns false if it is not valid.
inline bool ReadJsonString(std::string_view text, size_t& at, std::string* decoded) {
  if (at >= text.size() || text[at] != '"') return false;
  ++at;
  while (at < text.size()) {
    const auto c = static_cast<unsigned char>(text[at]);
    if (c == '"') {
      ++at;
      return true;
    }
    if (c < 0x20) return false;
    if (c == '\\') {
      if (++at >= text.size()) return false;
      const char e = text[at];
      if (e == 'u') {
        if (at + 4 >= text.size()) return false;
        for (int i = 1; i <= 4; ++i) {
          if (!std::isxdigit(static_cast<unsigned char>(text[at + i]))) return false;
        }
        if (decoded != nullptr) decoded->append(text.substr(at - 1, 6));
        at += 5;
        continue;
      }
      if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) return false;
      if (decoded != nullptr) decoded->push_back(e);
      ++at;
      continue;
    }
    size_t length = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                                   : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (length == 0 || at + length > text.size()) return false;
    for (size_t i = 1; i < length; ++i) {
      if ((static_cast<unsigned char>(text[at + i]) & 0xc0) != 0x80) return false;
    }
    if (decoded != nullptr) decoded->append(text.substr(at, length));
    at += length;
  }
  return false;
}

// `line` (with its trailing newline) is {"k":"v",...} with unique keys.
inline bool IsFlatJsonObjectLine(std::string_view line) {
  if (line.empty() || line.back() != '\n') return false;
  line.remove_suffix(1);
  if (line.size() < 2 || line.front() != '{' || line.back() != '}') return false;
  size_t at = 1;
  std::set<std::string> keys;
  for (;;) {
    std::string key;
    if (!ReadJsonString(line, at, &key)) return false;
    if (!keys.insert(key).second) return false;
    if (at >= line.size() || line[at++] != ':') return false;
    if (!ReadJsonString(line, at, nullptr)) return false;
    if (at >= line.size()) return false;
    if (line[at] == '}') return at + 1 == line.size();
    if (line[at++] != ',') return false;
  }
}

}  // namespace alknet::test_json
