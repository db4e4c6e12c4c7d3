#include "scheduler/placement/framework.h"

#include <algorithm>
#include <vector>

namespace joule {

const char* PluginCodeName(PluginCode code) {
  switch (code) {
    case PluginCode::kSuccess:
      return "SUCCESS";
    case PluginCode::kUnschedulable:
      return "UNSCHEDULABLE";
    case PluginCode::kUnresolvable:
      return "UNRESOLVABLE";
    case PluginCode::kError:
      return "ERROR";
  }
  return "ERROR";
}

std::vector<int32_t> GpuIndices(const PickedGpus& gpus) {
  std::vector<int32_t> indices;
  indices.reserve(gpus.size());
  for (const GpuView* gpu : gpus) indices.push_back(gpu->index);
  return indices;
}

void ScorePlugin::Normalize(const State*, std::vector<double>* scores) const {
  for (double& score : *scores) score = std::clamp(score, 0.0, 100.0);
}

}  // namespace joule
