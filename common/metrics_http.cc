#include "common/metrics_http.h"

#include <algorithm>
#include <exception>
#include <iostream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/basic_auth_file.h"
#include "common/log.h"
#include "common/server_options.h"
#include "prometheus/text_serializer.h"

namespace joule {

namespace {

// The address checks of CheckMetricsServer.
absl::Status CheckMetricsListen(const std::string& listen, const MetricsServerOptions& options) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen ", listen, ": want HOST:PORT"));
  }
  // Every port Joule opens beyond loopback authenticates its clients.
  if (options.auth_file.empty() && !IsLoopbackListen(listen)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics-listen ", listen, ": /metrics beyond loopback needs --metrics-auth-file "
        "(HTTP basic auth for the scrapers); without it, listen on 127.0.0.1"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckMetricsServer(const std::string& listen, const MetricsServerOptions& options) {
  if (absl::Status address = CheckMetricsListen(listen, options); !address.ok()) return address;
  if (options.auth_file.empty()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<BasicAuthFile>> loaded = BasicAuthFile::Load(
      options.auth_file, options.clock != nullptr ? options.clock : RealClock::Get(),
      options.auth_reload_interval);
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("--metrics-auth-file: ", loaded.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsServer(
    const std::string& listen, const std::shared_ptr<prometheus::Registry>& registry,
    std::string* bound, const MetricsServerOptions& options) {
  if (absl::Status address = CheckMetricsListen(listen, options); !address.ok()) return address;
  std::shared_ptr<BasicAuthFile> auth;
  if (!options.auth_file.empty()) {
    absl::StatusOr<std::unique_ptr<BasicAuthFile>> loaded = BasicAuthFile::Load(
        options.auth_file, options.clock != nullptr ? options.clock : RealClock::Get(),
        options.auth_reload_interval);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("--metrics-auth-file: ", loaded.status().message()));
    }
    auth = *std::move(loaded);
  }
  // civetweb's options (prometheus-cpp passes them through).
  const std::vector<std::string> civetweb = {
      "listening_ports",    listen,
      "num_threads",        absl::StrCat(std::max(1, options.worker_threads)),
      "request_timeout_ms", absl::StrCat(absl::ToInt64Milliseconds(options.request_timeout)),
      "enable_keep_alive",  "no",
      // Request headers beyond this are refused before they cost memory.
      "max_request_size",   "16384",
  };
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(civetweb);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen));
  }
  exposer->RegisterCollectable(registry);
  if (auth != nullptr) {
    exposer->RegisterAuth(
        [auth](const std::string& user, const std::string& password) {
          return auth->Check(user, password);
        },
        "joule metrics");
  }
  const std::string address = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", ports[0]);
  JLOG(INFO) << "metrics on " << address
             << (auth != nullptr ? " (basic auth)" : " (no authentication)");
  std::cout << "metrics on " << address << std::endl;
  if (bound != nullptr) *bound = address;
  return exposer;
}

std::string RenderMetrics(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace joule
