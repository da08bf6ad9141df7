// Leveled, structured log lines (text or JSON) written to one injected sink.
#pragma once

#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace alknet {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kText, kJson };

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name);
absl::StatusOr<LogFormat> ParseLogFormat(std::string_view name);
std::string_view LogLevelName(LogLevel level);

// Every field value and message is cut to this many bytes (then "..." is appended) before it
// is escaped, so no line grows with what a client sends. Escaping grows a byte at most 6x
// (\u00XX), so a line stays within a few KiB per field.
inline constexpr size_t kMaxLogValueBytes = 1024;
// sshd's limit for the user name it logs; other client-chosen strings (certificate key ids...)
// use their own small bounds where they are put into fields.
inline constexpr size_t kMaxLoggedUserName = 100;

// `value` cut to at most `max_bytes` (on a UTF-8 character boundary) with "..." appended when
// anything was cut.
std::string TruncateForLog(std::string_view value, size_t max_bytes);

// One key=value pair of a log line. Values are quoted in text form when needed. Control
// characters, DEL and bytes that are not valid UTF-8 are escaped (\u00XX, \ufffd), so a JSON
// line is always valid JSON and a text line is always one line.
struct LogField {
  std::string_view key;
  std::string value;
  bool always_quote = false;  // text form: quote even when the value needs no quotes
};

class Logger {
 public:
  explicit Logger(LogLevel min_level = LogLevel::kInfo, LogFormat format = LogFormat::kText,
                  std::FILE* sink = stderr)
      : min_level_(min_level), format_(format), sink_(sink) {}

  bool Enabled(LogLevel level) const { return level >= min_level_; }
  void set_min_level(LogLevel level) { min_level_ = level; }
  void set_format(LogFormat format) { format_ = format; }

  // Writes one line: "<time> <LEVEL> <component>: <message> k=v ...". JSON:
  // {"time":...,"level":...,"component":...,"msg":<message>,"k":"v",...}; a line without a
  // message (the auth line) has no "msg", its content is all in the fields, each written once.
  void Write(LogLevel level, std::string_view component, std::string_view message,
             std::initializer_list<LogField> fields = {});

  void Info(std::string_view component, std::string_view message,
            std::initializer_list<LogField> fields = {}) {
    if (Enabled(LogLevel::kInfo)) Write(LogLevel::kInfo, component, message, fields);
  }
  void Warn(std::string_view component, std::string_view message,
            std::initializer_list<LogField> fields = {}) {
    if (Enabled(LogLevel::kWarning)) Write(LogLevel::kWarning, component, message, fields);
  }
  void Error(std::string_view component, std::string_view message,
             std::initializer_list<LogField> fields = {}) {
    if (Enabled(LogLevel::kError)) Write(LogLevel::kError, component, message, fields);
  }
  void Debug(std::string_view component, std::string_view message,
             std::initializer_list<LogField> fields = {}) {
    if (Enabled(LogLevel::kDebug)) Write(LogLevel::kDebug, component, message, fields);
  }

 private:
  LogLevel min_level_;
  LogFormat format_;
  std::FILE* sink_;
  absl::Mutex mu_;
};

}  // namespace alknet
