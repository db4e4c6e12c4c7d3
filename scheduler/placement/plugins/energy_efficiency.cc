#include "scheduler/placement/plugins/energy_efficiency.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>


namespace joule {
namespace {

struct Learned : ScorePlugin::State {
  // Every candidate's GPU model has a learned cost: costs are joules per
  // sample. Otherwise watts, for every candidate alike.
  bool learned = false;
};

const PlacementRequest::ModelCost* CostOf(const PlacementRequest& request,
                                          const Candidate& candidate) {
  if (candidate.gpus.empty()) return nullptr;
  auto cost = request.learned_cost.find(candidate.gpus.front()->model);
  return cost == request.learned_cost.end() ? nullptr : &cost->second;
}

double JoulesPerSample(const PlacementRequest& request, const Candidate& candidate) {
  const PlacementRequest::ModelCost* cost = CostOf(request, candidate);
  if (cost == nullptr || cost->samples_per_second <= 0) return 0;
  double joules = cost->joules_per_sample;
  if (candidate.node->running_tasks == 0) {
    joules += candidate.node->static_power_w / cost->samples_per_second;
  }
  return joules;
}

double MarginalPowerW(const Candidate& candidate) {
  double watts = candidate.node->running_tasks == 0 ? candidate.node->static_power_w : 0;
  for (const GpuView* gpu : candidate.gpus) watts += gpu->power_limit_default_w;
  return watts;
}

}  // namespace

std::unique_ptr<ScorePlugin::State> EnergyEfficiencyScorer::PreScore(
    const PlacementRequest& request, const std::vector<Candidate>& candidates) const {
  auto state = std::make_unique<Learned>();
  // Costs in one unit or not at all: every candidate's model must be known.
  state->learned = request.gpus > 0 && !request.learned_cost.empty();
  for (const Candidate& candidate : candidates) {
    if (!state->learned) break;
    for (const GpuView* gpu : candidate.gpus) {
      if (request.learned_cost.count(gpu->model) == 0) {
        state->learned = false;
        break;
      }
    }
  }
  return state;
}

double EnergyEfficiencyScorer::Score(const PlacementRequest& request,
                                     const Candidate& candidate, const State* state) const {
  return static_cast<const Learned*>(state)->learned ? JoulesPerSample(request, candidate)
                                                     : MarginalPowerW(candidate);
}

void EnergyEfficiencyScorer::Normalize(const State*, std::vector<double>* scores) const {
  double cheapest = 0;
  bool any = false;
  for (double cost : *scores) {
    if (cost <= 0) continue;
    if (!any || cost < cheapest) cheapest = cost;
    any = true;
  }
  for (double& cost : *scores) cost = cost <= 0 ? 100 : 100.0 * cheapest / cost;
}

}  // namespace joule
