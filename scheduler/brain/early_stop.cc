#include "scheduler/brain/early_stop.h"

#include <optional>
#include <string>

namespace joule {

std::optional<EarlyStopVerdict> EarlyStopWatch::Report(const std::string& task_id,
                                                       const v1::EarlyStop& rule,
                                                       double quality) {
  if (rule.patience() <= 0) return std::nullopt;
  auto [it, first] = tracks_.try_emplace(task_id);
  Track& track = it->second;
  const bool improved = first || (rule.higher_is_better() ? quality > track.best + rule.min_delta()
                                                          : quality < track.best - rule.min_delta());
  if (improved) {
    track.best = quality;
    track.stale = 0;
    return std::nullopt;
  }
  if (++track.stale < rule.patience()) return std::nullopt;
  EarlyStopVerdict verdict{track.best, track.stale};
  tracks_.erase(it);
  return verdict;
}

}  // namespace joule
