// Leveled, structured log lines (text or JSON) written to one injected sink.
#include "server/common/log.h"
#include "server/common/strings.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace alknet {
namespace {

// The length of the valid UTF-8 sequence at the start of `text` (1..4), or 0 when the first
// byte does not start one (stray continuation, overlong form, surrogate, beyond U+10FFFF).
size_t Utf8SequenceLength(std::string_view text) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  size_t length;
  unsigned char low = 0x80, high = 0xbf;  // the allowed range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;   // overlong
    if (lead == 0xed) high = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;   // overlong
    if (lead == 0xf4) high = 0x8f;  // beyond U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  if (byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xbf) return 0;
  }
  return length;
}

bool NeedsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || byte < 0x20 || byte >= 0x7f) return true;
  }
  return false;
}

// Escapes for both the quoted text form and JSON strings: control characters and DEL become
// \u00XX, bytes that are not valid UTF-8 become \ufffd, valid UTF-8 stays as it is. The result
// is a valid JSON string body and never contains a raw line break. `quotes` false (the text
// form's unquoted component and message): '"' and '\\' stay as they are.
void AppendEscaped(std::string& out, std::string_view value, bool quotes = true) {
  while (!value.empty()) {
    const char c = value.front();
    const auto byte = static_cast<unsigned char>(c);
    size_t used = 1;
    switch (quotes ? c : '\0') {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (byte < 0x20 || byte == 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", byte);
        } else if (byte < 0x80) {
          out += c;
        } else if (size_t length = Utf8SequenceLength(value); length > 0) {
          out.append(value.data(), length);
          used = length;
        } else {
          out += "\\ufffd";
        }
    }
    value.remove_prefix(used);
  }
}

// " k=v k2=\"quoted value\"": the key=value form of the text format, also the JSON "msg" of
// lines whose content is all fields (the auth line), so one fail2ban regex fits both formats.
void AppendTextFields(std::string& line, std::initializer_list<LogField> fields) {
  for (const LogField& field : fields) {
    if (!line.empty()) line += ' ';
    absl::StrAppend(&line, Sv(field.key), "=");
    const std::string value = TruncateForLog(field.value, kMaxLogValueBytes);
    if (field.always_quote || NeedsQuotes(value)) {
      line += '"';
      AppendEscaped(line, value);
      line += '"';
    } else {
      line += value;
    }
  }
}

}  // namespace

std::string TruncateForLog(std::string_view value, size_t max_bytes) {
  if (value.size() <= max_bytes) return std::string(value);
  size_t cut = max_bytes;
  // Back off to a character boundary (at most 3 continuation bytes).
  for (int i = 0; i < 3 && cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xc0) == 0x80; ++i) {
    --cut;
  }
  return absl::StrCat(Sv(value.substr(0, cut)), "...");
}

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name) {
  std::string lower = absl::AsciiStrToLower(Sv(name));
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warn" || lower == "warning") return LogLevel::kWarning;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log level '", Sv(name), "' (expected debug, info, warn or error)"));
}

absl::StatusOr<LogFormat> ParseLogFormat(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log format '", Sv(name), "' (expected text or json)"));
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "INFO";
}

void Logger::Write(LogLevel level, std::string_view component, std::string_view message,
                   std::initializer_list<LogField> fields) {
  std::string line;
  line.reserve(256);
  std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  if (format_ == LogFormat::kJson) {
    absl::StrAppend(&line, "{\"time\":\"", time, "\",\"level\":\"", Sv(LogLevelName(level)),
                    "\",\"component\":\"");
    AppendEscaped(line, TruncateForLog(component, kMaxLogValueBytes));
    line += '"';
    if (!message.empty()) {
      line += ",\"msg\":\"";
      AppendEscaped(line, TruncateForLog(message, kMaxLogValueBytes));
      line += '"';
    }
    // Each field once: a message-less line (the auth line) is all fields.
    for (const LogField& field : fields) {
      line += ",\"";
      AppendEscaped(line, TruncateForLog(field.key, kMaxLogValueBytes));
      line += "\":\"";
      AppendEscaped(line, TruncateForLog(field.value, kMaxLogValueBytes));
      line += '"';
    }
    line += "}\n";
  } else {
    absl::StrAppend(&line, time, " ", Sv(LogLevelName(level)), " ");
    AppendEscaped(line, TruncateForLog(component, kMaxLogValueBytes), /*quotes=*/false);
    line += ':';
    if (!message.empty()) {
      line += ' ';
      AppendEscaped(line, TruncateForLog(message, kMaxLogValueBytes), /*quotes=*/false);
    }
    std::string text;
    AppendTextFields(text, fields);
    if (!text.empty()) absl::StrAppend(&line, " ", text);
    line += '\n';
  }
  absl::MutexLock lock(&mu_);
  std::fwrite(line.data(), 1, line.size(), sink_);
  std::fflush(sink_);
}

}  // namespace alknet
