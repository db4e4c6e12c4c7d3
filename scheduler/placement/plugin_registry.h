#ifndef JOULE_SCHEDULER_PLACEMENT_PLUGIN_REGISTRY_H_
#define JOULE_SCHEDULER_PLACEMENT_PLUGIN_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/placement/framework.h"

namespace joule {

// What plugins take from the scheduler's options.
struct PluginArgs {
  // TelemetryFresh's limit.
  absl::Duration telemetry_freshness = absl::Seconds(30);
};

// The plugins a placement profile may name, and their constructors. An
// unknown name is NOT_FOUND, naming the plugins that exist. Thread-safe
// (stateless).
std::vector<std::string> FilterPluginNames();
std::vector<std::string> ScorePluginNames();
absl::StatusOr<std::unique_ptr<FilterPlugin>> NewFilterPlugin(const std::string& name,
                                                              const PluginArgs& args);
absl::StatusOr<std::unique_ptr<ScorePlugin>> NewScorePlugin(const std::string& name);

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PLUGIN_REGISTRY_H_
