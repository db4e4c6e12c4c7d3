#ifndef JOULE_COMMON_LOG_H_
#define JOULE_COMMON_LOG_H_

#include <sstream>

// Minimal leveled logging to stderr, one line per statement:
//   JLOG(INFO) << "placed " << job_id;
// Abseil 20220623 has no absl/log, and the binaries need nothing more.

namespace joule {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below this level are dropped. Set once from main().
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

// Builds one line and writes it atomically to stderr when destroyed.
class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  ~LogLine();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Turns a stream expression into void for the JLOG conditional.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace joule

#define JLOG_LEVEL_DEBUG ::joule::LogLevel::kDebug
#define JLOG_LEVEL_INFO ::joule::LogLevel::kInfo
#define JLOG_LEVEL_WARNING ::joule::LogLevel::kWarning
#define JLOG_LEVEL_ERROR ::joule::LogLevel::kError

// An expression, not an if/else, so `if (x) JLOG(INFO) << ...;` followed by
// an else binds as written. `&` binds looser than `<<`, so the whole stream
// chain is built first and then discarded.
#define JLOG(level)                                                   \
  (JLOG_LEVEL_##level < ::joule::MinLogLevel())                       \
      ? (void)0                                                       \
      : ::joule::LogVoidify() &                                       \
            ::joule::LogLine(JLOG_LEVEL_##level, __FILE__, __LINE__).stream()

#endif  // JOULE_COMMON_LOG_H_
