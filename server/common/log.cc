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

bool NeedsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return true;
    }
  }
  return false;
}

// Escapes for both the quoted text form and JSON strings: control characters never reach the log raw.
void AppendEscaped(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
}

// " k=v k2=\"quoted value\"": the key=value form of the text format, also the JSON "msg" of
// lines whose content is all fields (the auth line), so one fail2ban regex fits both formats.
void AppendTextFields(std::string& line, std::initializer_list<LogField> fields) {
  for (const LogField& field : fields) {
    if (!line.empty()) line += ' ';
    absl::StrAppend(&line, Sv(field.key), "=");
    if (field.always_quote || NeedsQuotes(field.value)) {
      line += '"';
      AppendEscaped(line, field.value);
      line += '"';
    } else {
      line += field.value;
    }
  }
}

}  // namespace

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
    AppendEscaped(line, component);
    line += "\",\"msg\":\"";
    if (message.empty()) {
      std::string text;
      AppendTextFields(text, fields);
      AppendEscaped(line, text);
    } else {
      AppendEscaped(line, message);
    }
    line += '"';
    for (const LogField& field : fields) {
      line += ",\"";
      AppendEscaped(line, field.key);
      line += "\":\"";
      AppendEscaped(line, field.value);
      line += '"';
    }
    line += "}\n";
  } else {
    absl::StrAppend(&line, time, " ", Sv(LogLevelName(level)), " ", Sv(component), ":");
    if (!message.empty()) absl::StrAppend(&line, " ", Sv(message));
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
