#ifndef JOULE_COMMON_METRICS_HTTP_H_
#define JOULE_COMMON_METRICS_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace joule {

struct MetricsServerOptions {
  // A file of "USER sha256:<hex of SHA-256(password)>" lines
  // (common/basic_auth_file.h): /metrics then wants HTTP basic auth with
  // one of them and answers 401 otherwise. Read again when it changes, at
  // most every auth_reload_interval. Empty: no authentication.
  std::string auth_file;
  absl::Duration auth_reload_interval = absl::Seconds(2);
  // For the reload interval; RealClock when null.
  const Clock* clock = nullptr;
  // The HTTP server (civetweb) gives each connection a worker thread for
  // as long as it is open, so slow or idle clients can hold workers: there
  // are enough of them for a few such clients, each is released when a
  // request has not arrived whole within request_timeout, and there is no
  // keep-alive (a scrape is one connection), so that no client holds a
  // worker between scrapes.
  int worker_threads = 16;
  absl::Duration request_timeout = absl::Seconds(2);
};

// Serves `registry` in Prometheus's text format at http://LISTEN/metrics
// (prometheus-cpp's exposer, on its own threads). `listen` is "HOST:PORT";
// port 0 picks a free one. Announces "metrics on HOST:PORT" (the port bound)
// in the log and on stdout, where tests and scripts read it, and returns it
// in `bound` when given. A malformed address is INVALID_ARGUMENT; one that
// cannot be bound is UNAVAILABLE; both name it. An auth file that cannot be
// read or parsed is returned as its error (NOT_FOUND, INVALID_ARGUMENT).
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsServer(
    const std::string& listen, const std::shared_ptr<prometheus::Registry>& registry,
    std::string* bound = nullptr, const MetricsServerOptions& options = {});

// What StartMetricsServer checks before it binds anything: `listen` is
// HOST:PORT, an address beyond loopback comes with an auth file, and the
// auth file reads and parses. For configuration checks (--check-config).
absl::Status CheckMetricsServer(const std::string& listen, const MetricsServerOptions& options);

// The registry in the text exposition format, as a scrape would get it.
std::string RenderMetrics(prometheus::Registry& registry);

}  // namespace joule

#endif  // JOULE_COMMON_METRICS_HTTP_H_
