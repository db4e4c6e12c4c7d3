#include "common/metrics_http.h"

#include <exception>
#include <iostream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "prometheus/text_serializer.h"

namespace joule {

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsServer(
    const std::string& listen, const std::shared_ptr<prometheus::Registry>& registry,
    std::string* bound) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen ", listen, ": want HOST:PORT"));
  }
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen));
  }
  exposer->RegisterCollectable(registry);
  const std::string address = absl::StrCat(listen.substr(0, colon), ":", ports[0]);
  JLOG(INFO) << "metrics on " << address;
  std::cout << "metrics on " << address << std::endl;
  if (bound != nullptr) *bound = address;
  return exposer;
}

std::string RenderMetrics(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace joule
