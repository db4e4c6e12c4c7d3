#include "scheduler/placement/gpu_pick.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"

namespace joule {

PickedGpus PickGpus(const PlacementRequest& request, const NodeView& node) {
  PickedGpus usable;
  for (const GpuView& gpu : node.gpus) {
    if (Usable(gpu) && ModelMatches(request.gpu_model, gpu)) usable.push_back(&gpu);
  }
  const size_t wanted = std::min(usable.size(), static_cast<size_t>(std::max(0, request.gpus)));
  auto by_index = [](const GpuView* a, const GpuView* b) { return a->index < b->index; };
  if (wanted == usable.size()) {
    std::sort(usable.begin(), usable.end(), by_index);
    return usable;
  }
  struct Option {
    bool routed;
    double temp_c;
    const GpuView* gpu;
  };
  absl::InlinedVector<Option, 16> options;
  for (const GpuView* gpu : usable) {
    options.push_back({request.routed_models.empty() || request.routed_models.count(gpu->model) > 0,
                       gpu->temp_c, gpu});
  }
  std::sort(options.begin(), options.end(), [](const Option& a, const Option& b) {
    if (a.routed != b.routed) return a.routed;
    if (a.temp_c != b.temp_c) return a.temp_c < b.temp_c;
    return a.gpu->index < b.gpu->index;
  });
  PickedGpus picked;
  for (size_t i = 0; i < wanted; ++i) picked.push_back(options[i].gpu);
  std::sort(picked.begin(), picked.end(), by_index);
  return picked;
}

std::string GpuNoun(const PlacementRequest& request) {
  return request.gpu_model.empty() ? "GPUs" : absl::StrCat(request.gpu_model, " GPUs");
}

}  // namespace joule
