#include "scheduler/energy_model.h"

#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace joule {

std::string EnergyModel::Key(const std::string& profile_class, const std::string& model,
                             int gpus) {
  auto clean = [](std::string text) {
    for (char& c : text) {
      if (c == '@' || c == '/' || c == ' ') c = '_';
    }
    return text;
  };
  return absl::StrCat(clean(profile_class), "@", clean(model), "x", gpus);
}

void EnergyModel::Put(const std::string& key, std::vector<CapPoint> profile) {
  if (profile.empty()) return;
  profiles_[key] = std::move(profile);
}

const std::vector<CapPoint>* EnergyModel::Measured(const std::string& profile_class,
                                                   const std::string& model, int gpus) const {
  auto it = profiles_.find(Key(profile_class, model, gpus));
  return it == profiles_.end() ? nullptr : &it->second;
}

std::optional<std::vector<CapPoint>> EnergyModel::ForGpus(const std::string& profile_class,
                                                          const std::string& model, int gpus,
                                                          int* measured_gpus) const {
  if (gpus <= 0) return std::nullopt;
  const std::string exact = Key(profile_class, model, gpus);
  const std::string prefix = exact.substr(0, exact.rfind('x') + 1);
  const std::vector<CapPoint>* found = nullptr;
  int found_gpus = 0;
  for (auto it = profiles_.lower_bound(prefix);
       it != profiles_.end() && absl::StartsWith(it->first, prefix); ++it) {
    int count = 0;
    if (!absl::SimpleAtoi(absl::string_view(it->first).substr(prefix.size()), &count) ||
        count <= 0) {
      continue;
    }
    const double distance = std::abs(std::log2(static_cast<double>(count) / gpus));
    const double best = std::abs(std::log2(static_cast<double>(found_gpus) / gpus));
    if (found == nullptr || distance < best || (distance == best && count < found_gpus)) {
      found = &it->second;
      found_gpus = count;
    }
  }
  if (found == nullptr) return std::nullopt;
  std::vector<CapPoint> profile = *found;
  const double scale = static_cast<double>(gpus) / found_gpus;
  for (CapPoint& point : profile) {
    point.power_w *= scale;
    point.throughput *= scale;
  }
  if (measured_gpus != nullptr) *measured_gpus = found_gpus;
  return profile;
}

absl::StatusOr<EnergyPrediction> EnergyModel::Predict(const std::string& profile_class,
                                                      const std::string& model, int gpus,
                                                      const v1::Objective& objective,
                                                      double static_w, bool caps_count_static,
                                                      absl::Time now,
                                                      const std::string& job_class,
                                                      int32_t batch_size) const {
  EnergyPrediction prediction;
  std::optional<std::vector<CapPoint>> profile =
      ForGpus(profile_class, model, gpus, &prediction.measured_gpus);
  if (!profile) {
    return absl::NotFoundError(
        absl::StrCat("class ", profile_class, " has no power profile on ", model));
  }
  absl::StatusOr<CapDecision> decision =
      ChooseCap(*profile, objective, profile->front().cap_w * gpus, 0, now,
                caps_count_static ? static_w : 0);
  if (!decision.ok()) return decision.status();
  prediction.decision = *std::move(decision);
  for (const CapPoint& point : *profile) {
    if (point.cap_w == prediction.decision.cap_w && point.throughput > 0) {
      prediction.samples_per_second = point.throughput;
      prediction.gpu_joules_per_sample = point.power_w / point.throughput;
      prediction.joules_per_sample = (point.power_w + static_w) / point.throughput;
    }
  }
  if (batch_size > 0) {
    std::vector<RunCostEstimate> runs = runs_.Predict(job_class, model, {batch_size});
    if (!runs.empty()) prediction.at_batch = runs.front();
  }
  return prediction;
}

}  // namespace joule
