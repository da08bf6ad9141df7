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

// One key=value pair of a log line. Values are quoted in text form when needed.
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

  // Writes one line: "<time> <LEVEL> <component>: <message> k=v ...".
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
