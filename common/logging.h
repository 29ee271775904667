#ifndef DSV3_COMMON_LOGGING_H_
#define DSV3_COMMON_LOGGING_H_

// Structured logging to stderr: one line per record, as text or as JSON lines
// (--log_json). A record carries a level, the process role, optional key/value fields
// (request_id first among them when a record is about a request) and a message.
//
//   DSV3_LOG(INFO) << "listening on " << addr;
//   DSV3_LOG(WARNING).With("request_id", id) << "client left";

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace dsv3 {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

struct LogConfig {
  LogLevel min_level = LogLevel::kInfo;
  bool json = false;
  std::string role = "dsv3";
};

// Sets the process-wide configuration; call once at start-up, before threads log.
void ConfigureLogging(const LogConfig& config);
// Parses "debug", "info", "warning" or "error".
bool ParseLogLevel(absl::string_view text, LogLevel* level);
bool LogLevelEnabled(LogLevel level);

// One log record; written when it goes out of scope.
class LogRecord {
 public:
  LogRecord(LogLevel level, const char* file, int line);
  ~LogRecord();
  LogRecord(const LogRecord&) = delete;
  LogRecord& operator=(const LogRecord&) = delete;

  LogRecord& With(std::string key, std::string value) {
    fields_.emplace_back(std::move(key), std::move(value));
    return *this;
  }
  template <typename T>
  LogRecord& operator<<(const T& value) {
    message_ << value;
    return *this;
  }

 private:
  LogLevel level_;
  const char* file_;
  int line_;
  std::vector<std::pair<std::string, std::string>> fields_;
  std::ostringstream message_;
};

// Appends `text` to `out` as the inside of a JSON string literal.
void AppendJsonEscaped(absl::string_view text, std::string* out);

}  // namespace dsv3

#define DSV3_LOG_LEVEL_DEBUG ::dsv3::LogLevel::kDebug
#define DSV3_LOG_LEVEL_INFO ::dsv3::LogLevel::kInfo
#define DSV3_LOG_LEVEL_WARNING ::dsv3::LogLevel::kWarning
#define DSV3_LOG_LEVEL_ERROR ::dsv3::LogLevel::kError

// The stream expression is only evaluated when the level is enabled.
#define DSV3_LOG(level)                                   \
  if (!::dsv3::LogLevelEnabled(DSV3_LOG_LEVEL_##level)) { \
  } else                                                  \
    ::dsv3::LogRecord(DSV3_LOG_LEVEL_##level, __FILE__, __LINE__)

#endif  // DSV3_COMMON_LOGGING_H_
