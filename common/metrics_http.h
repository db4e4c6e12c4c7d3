#ifndef JOULE_COMMON_METRICS_HTTP_H_
#define JOULE_COMMON_METRICS_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace joule {

// Serves `registry` in Prometheus's text format at http://LISTEN/metrics
// (prometheus-cpp's exposer, on its own threads). `listen` is "HOST:PORT";
// port 0 picks a free one. Announces "metrics on HOST:PORT" (the port bound)
// in the log and on stdout, where tests and scripts read it, and returns it
// in `bound` when given. A malformed address is INVALID_ARGUMENT; one that
// cannot be bound is UNAVAILABLE; both name it.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsServer(
    const std::string& listen, const std::shared_ptr<prometheus::Registry>& registry,
    std::string* bound = nullptr);

// The registry in the text exposition format, as a scrape would get it.
std::string RenderMetrics(prometheus::Registry& registry);

}  // namespace joule

#endif  // JOULE_COMMON_METRICS_HTTP_H_
