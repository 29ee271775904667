#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsv3 {
namespace {

// Written once at start-up before other threads exist, read afterwards.
LogConfig& Config() {
  static auto* config = new LogConfig();
  return *config;
}
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  int micros = static_cast<int>(
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000);
  std::tm tm;
  gmtime_r(&secs, &tm);
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
}

const char* BaseName(const char* path) {
  const char* base = path;
  for (const char* p = path; *p; ++p) {
    if (*p == '/') base = p + 1;
  }
  return base;
}

}  // namespace

void ConfigureLogging(const LogConfig& config) {
  Config() = config;
  g_min_level.store(static_cast<int>(config.min_level), std::memory_order_relaxed);
}

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  std::string lower = absl::AsciiStrToLower(text);
  if (lower == "debug")
    *level = LogLevel::kDebug;
  else if (lower == "info")
    *level = LogLevel::kInfo;
  else if (lower == "warning" || lower == "warn")
    *level = LogLevel::kWarning;
  else if (lower == "error")
    *level = LogLevel::kError;
  else
    return false;
  return true;
}

bool LogLevelEnabled(LogLevel level) {
  // Relaxed: the level is a filter, not a synchronisation point.
  return static_cast<int>(level) >= g_min_level.load(std::memory_order_relaxed);
}

void AppendJsonEscaped(absl::string_view text, std::string* out) {
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
}

LogRecord::LogRecord(LogLevel level, const char* file, int line)
    : level_(level), file_(file), line_(line) {}

LogRecord::~LogRecord() {
  const LogConfig& config = Config();
  std::string line;
  if (config.json) {
    line = "{\"ts\":\"" + Timestamp() + "\",\"level\":\"" + LevelName(level_) + "\",\"role\":\"";
    AppendJsonEscaped(config.role, &line);
    absl::StrAppend(&line, "\",\"src\":\"", BaseName(file_), ":", line_, "\"");
    for (const auto& [key, value] : fields_) {
      line += ",\"";
      AppendJsonEscaped(key, &line);
      line += "\":\"";
      AppendJsonEscaped(value, &line);
      line += "\"";
    }
    line += ",\"msg\":\"";
    AppendJsonEscaped(message_.str(), &line);
    line += "\"}\n";
  } else {
    line = absl::StrFormat("%s %-7s %s %s:%d]", Timestamp(), LevelName(level_), config.role,
                           BaseName(file_), line_);
    for (const auto& [key, value] : fields_) absl::StrAppend(&line, " ", key, "=", value);
    absl::StrAppend(&line, " ", message_.str(), "\n");
  }
  // One write call per record keeps concurrent records from interleaving.
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace dsv3
