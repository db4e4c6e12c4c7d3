#ifndef JOULE_AGENT_KUBELET_TESTING_METRIC_VALUE_H_
#define JOULE_AGENT_KUBELET_TESTING_METRIC_VALUE_H_

// For tests: the value of one series of a Prometheus registry.

#include <map>
#include <optional>
#include <string>

#include "prometheus/registry.h"

namespace joule {

// The counter's or gauge's value of family `name` whose labels are exactly
// `labels`; nullopt when there is no such series.
inline std::optional<double> MetricValue(prometheus::Registry& registry, const std::string& name,
                                         const std::map<std::string, std::string>& labels) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::map<std::string, std::string> have;
      for (const auto& label : metric.label) have[label.name] = label.value;
      if (have != labels) continue;
      return family.type == prometheus::MetricType::Counter ? metric.counter.value
                                                            : metric.gauge.value;
    }
  }
  return std::nullopt;
}

}  // namespace joule

#endif  // JOULE_AGENT_KUBELET_TESTING_METRIC_VALUE_H_
