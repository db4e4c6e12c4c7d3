#include "scheduler/placement/plugin_registry.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "scheduler/placement/plugins/awake.h"
#include "scheduler/placement/plugins/consolidation.h"
#include "scheduler/placement/plugins/energy_efficiency.h"
#include "scheduler/placement/plugins/energy_routing.h"
#include "scheduler/placement/plugins/free_resources.h"
#include "scheduler/placement/plugins/gpu_fit.h"
#include "scheduler/placement/plugins/gpu_model.h"
#include "scheduler/placement/plugins/node_ready.h"
#include "scheduler/placement/plugins/telemetry_fresh.h"
#include "scheduler/placement/plugins/thermal_headroom.h"

namespace joule {

std::vector<std::string> FilterPluginNames() {
  return {GpuModelFilter::kName, NodeReadyFilter::kName, TelemetryFreshFilter::kName,
          FreeResourcesFilter::kName, EnergyRoutingFilter::kName};
}

std::vector<std::string> ScorePluginNames() {
  return {EnergyEfficiencyScorer::kName, ConsolidationScorer::kName,
          ThermalHeadroomScorer::kName, GpuFitScorer::kName, AwakeScorer::kName};
}

absl::StatusOr<std::unique_ptr<FilterPlugin>> NewFilterPlugin(const std::string& name,
                                                              const PluginArgs& args) {
  if (name == GpuModelFilter::kName) return std::make_unique<GpuModelFilter>();
  if (name == NodeReadyFilter::kName) return std::make_unique<NodeReadyFilter>();
  if (name == TelemetryFreshFilter::kName) {
    return std::make_unique<TelemetryFreshFilter>(args.telemetry_freshness);
  }
  if (name == FreeResourcesFilter::kName) return std::make_unique<FreeResourcesFilter>();
  if (name == EnergyRoutingFilter::kName) return std::make_unique<EnergyRoutingFilter>();
  return absl::NotFoundError(absl::StrCat("unknown filter plugin \"", name, "\" (known: ",
                                          absl::StrJoin(FilterPluginNames(), ", "), ")"));
}

absl::StatusOr<std::unique_ptr<ScorePlugin>> NewScorePlugin(const std::string& name) {
  if (name == EnergyEfficiencyScorer::kName) return std::make_unique<EnergyEfficiencyScorer>();
  if (name == ConsolidationScorer::kName) return std::make_unique<ConsolidationScorer>();
  if (name == ThermalHeadroomScorer::kName) return std::make_unique<ThermalHeadroomScorer>();
  if (name == GpuFitScorer::kName) return std::make_unique<GpuFitScorer>();
  if (name == AwakeScorer::kName) return std::make_unique<AwakeScorer>();
  return absl::NotFoundError(absl::StrCat("unknown score plugin \"", name, "\" (known: ",
                                          absl::StrJoin(ScorePluginNames(), ", "), ")"));
}

}  // namespace joule
