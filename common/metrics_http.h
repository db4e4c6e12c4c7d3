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
// port 0 picks a free one, and `bound` gets "HOST:PORT" with the port bound.
// An address that cannot be bound is an error naming it.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsServer(
    const std::string& listen, const std::shared_ptr<prometheus::Registry>& registry,
    std::string* bound);

// The registry in the text exposition format, as a scrape would get it.
std::string RenderMetrics(prometheus::Registry& registry);

}  // namespace joule

#endif  // JOULE_COMMON_METRICS_HTTP_H_
