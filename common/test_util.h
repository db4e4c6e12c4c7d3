#ifndef JOULE_COMMON_TEST_UTIL_H_
#define JOULE_COMMON_TEST_UTIL_H_

#include <string>

#include "absl/status/status.h"

namespace joule {

// Helpers for tests that talk to real servers on loopback.

// GET http://ADDRESS/PATH over a plain socket (HTTP/1.0): the whole response
// (status line, headers, body), or "" when nothing answers.
std::string HttpGet(const std::string& address, const std::string& path);

// The body of an HTTP response ("" when it has none).
std::string HttpBody(const std::string& response);

// `promtool check metrics` on `text`. OK when it passes; FAILED_PRECONDITION
// naming scripts/setup.sh when promtool is not on PATH (tests fail then,
// never skip); otherwise INVALID_ARGUMENT with promtool's findings.
absl::Status PromtoolCheckMetrics(const std::string& text);

// A loopback port that refuses connections: bound, never listening, for as
// long as the object lives.
class DeadPort {
 public:
  DeadPort();
  ~DeadPort();
  DeadPort(const DeadPort&) = delete;
  DeadPort& operator=(const DeadPort&) = delete;

  // "127.0.0.1:PORT".
  const std::string& address() const { return address_; }

 private:
  int fd_ = -1;
  std::string address_;
};

}  // namespace joule

#endif  // JOULE_COMMON_TEST_UTIL_H_
