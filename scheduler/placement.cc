#include "scheduler/placement.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace joule {
namespace {

bool ModelMatches(const std::string& wanted, const GpuView& gpu) {
  return wanted.empty() || wanted == gpu.model;
}

// A GPU new work may go to: not in use, and not near its throttle
// temperature.
bool Usable(const GpuView& gpu) { return gpu.free && !gpu.hot; }

std::string GpuNoun(const PlacementRequest& request) {
  return request.gpu_model.empty() ? "GPUs"
                                   : absl::StrCat(request.gpu_model, " GPUs");
}

// The free GPUs a replica would get on `node`: those of the models energy
// routing chose first (on a node with several models), then the coolest,
// then by index.
std::vector<int32_t> PickGpus(const PlacementRequest& request,
                              const NodeView& node) {
  std::vector<const GpuView*> candidates;
  for (const GpuView& gpu : node.gpus) {
    if (Usable(gpu) && ModelMatches(request.gpu_model, gpu)) {
      candidates.push_back(&gpu);
    }
  }
  auto routed = [&request](const GpuView* gpu) {
    return request.routed_models.empty() || request.routed_models.count(gpu->model) > 0;
  };
  std::sort(candidates.begin(), candidates.end(),
            [&routed](const GpuView* a, const GpuView* b) {
              if (routed(a) != routed(b)) return routed(a);
              if (a->temp_c != b->temp_c) return a->temp_c < b->temp_c;
              return a->index < b->index;
            });
  std::vector<int32_t> picked;
  for (int i = 0; i < request.gpus && i < static_cast<int>(candidates.size());
       ++i) {
    picked.push_back(candidates[i]->index);
  }
  std::sort(picked.begin(), picked.end());
  return picked;
}

bool FitsWhenEmpty(const PlacementRequest& request, const NodeView& node) {
  return node.TotalGpus(request.gpu_model) >= request.gpus &&
         node.total_cpus >= request.cpus &&
         node.total_memory_bytes >= request.memory_bytes;
}

class NodeReadyFilter : public FilterPlugin {
 public:
  std::string Name() const override { return "NodeReady"; }
  std::string Filter(const PlacementRequest&, const NodeView& node,
                     const ClusterSnapshot&) const override {
    return node.ready ? "" : "node is down";
  }
};

class TelemetryFreshFilter : public FilterPlugin {
 public:
  explicit TelemetryFreshFilter(absl::Duration max_age) : max_age_(max_age) {}
  std::string Name() const override { return "TelemetryFresh"; }
  std::string Filter(const PlacementRequest&, const NodeView& node,
                     const ClusterSnapshot& snapshot) const override {
    const absl::Duration age = snapshot.now - node.last_telemetry;
    if (age <= max_age_) return "";
    return absl::StrFormat("no telemetry for %.0fs (limit %.0fs)",
                           absl::ToDoubleSeconds(age),
                           absl::ToDoubleSeconds(max_age_));
  }

 private:
  absl::Duration max_age_;
};

class GpuModelFilter : public FilterPlugin {
 public:
  std::string Name() const override { return "GpuModel"; }
  std::string Filter(const PlacementRequest& request, const NodeView& node,
                     const ClusterSnapshot&) const override {
    if (request.gpus == 0) return "";
    const int total = node.TotalGpus(request.gpu_model);
    if (total >= request.gpus) return "";
    return absl::StrFormat("has %d %s, a replica needs %d", total,
                           GpuNoun(request), request.gpus);
  }
};

class FreeResourcesFilter : public FilterPlugin {
 public:
  std::string Name() const override { return "FreeResources"; }
  std::string Filter(const PlacementRequest& request, const NodeView& node,
                     const ClusterSnapshot&) const override {
    const int free_gpus = node.FreeGpus(request.gpu_model);
    if (free_gpus < request.gpus) {
      int hot = 0;
      std::vector<std::string> held;
      for (const GpuView& gpu : node.gpus) {
        if (!ModelMatches(request.gpu_model, gpu)) continue;
        hot += gpu.free && gpu.hot;
        if (!gpu.held_by.empty()) {
          held.push_back(absl::StrCat("GPU ", gpu.index, " held by pod ", gpu.held_by));
        }
      }
      std::vector<std::string> notes;
      if (hot > 0) notes.push_back(absl::StrFormat("%d more too hot", hot));
      constexpr size_t kHeldNamed = 3;
      if (held.size() > kHeldNamed) {
        const size_t more = held.size() - kHeldNamed;
        held.resize(kHeldNamed);
        held.push_back(absl::StrCat("and ", more, " more held by pods"));
      }
      if (!held.empty()) notes.push_back(absl::StrJoin(held, ", "));
      return absl::StrFormat(
          "%d free %s%s, a replica needs %d", free_gpus, GpuNoun(request),
          notes.empty() ? "" : absl::StrCat(" (", absl::StrJoin(notes, "; "), ")"),
          request.gpus);
    }
    if (node.free_cpus + 1e-9 < request.cpus) {
      return absl::StrFormat("%.2f free CPUs, a replica needs %.2f",
                             node.free_cpus, request.cpus);
    }
    if (node.free_memory_bytes < request.memory_bytes) {
      return absl::StrFormat("%d free memory bytes, a replica needs %d",
                             node.free_memory_bytes, request.memory_bytes);
    }
    return "";
  }
};

// Keeps a job off GPU models its energy routing leaves out
// (PlacementRequest::routed_models): the node needs enough free GPUs of a
// routed model for one replica.
class EnergyRoutingFilter : public FilterPlugin {
 public:
  std::string Name() const override { return "EnergyRouting"; }
  std::string Filter(const PlacementRequest& request, const NodeView& node,
                     const ClusterSnapshot&) const override {
    if (request.routed_models.empty() || request.gpus == 0) return "";
    int routed = 0;
    for (const GpuView& gpu : node.gpus) {
      routed += Usable(gpu) && ModelMatches(request.gpu_model, gpu) &&
                request.routed_models.count(gpu.model) > 0;
    }
    return routed >= request.gpus ? "" : request.routing_note;
  }
};

// Prefers the node where the replica costs the fewest joules. Where the job's
// class has been profiled on every GPU model that could take it, the cost is
// predicted joules per sample: the GPUs' measured J/sample at the
// objective's cap, plus, when the node is idle, its static power over the
// time a sample takes there (waking a node costs its fans and board too).
// Otherwise a prior: the replica's added power (the GPUs' power limits, plus
// static power on an idle node). Normalized against the cheapest node.
class EnergyEfficiencyScorer : public ScorePlugin {
 public:
  std::string Name() const override { return "EnergyEfficiency"; }

  struct Cheapest : State {
    bool learned = false;
    double cost = 0;  // the cheapest candidate's; 0 when there is none
  };

  std::unique_ptr<State> PreScore(const PlacementRequest& request,
                                  const ClusterSnapshot& snapshot) const override {
    auto cheapest = std::make_unique<Cheapest>();
    cheapest->learned = AllLearned(request, snapshot);
    bool any = false;
    for (const NodeView& node : snapshot.nodes) {
      if (!node.ready || node.FreeGpus(request.gpu_model) < request.gpus) continue;
      const double cost = cheapest->learned ? JoulesPerSample(request, node)
                                            : MarginalPowerW(request, node);
      if (!any || cost < cheapest->cost) cheapest->cost = cost;
      any = true;
    }
    return cheapest;
  }

  double Score(const PlacementRequest& request, const NodeView& node,
               const ClusterSnapshot&, const State* state) const override {
    const auto* cheapest = static_cast<const Cheapest*>(state);
    const double mine = cheapest->learned ? JoulesPerSample(request, node)
                                          : MarginalPowerW(request, node);
    if (mine <= 0) return 100;
    return 100.0 * std::min(cheapest->cost, mine) / mine;
  }

 private:
  // Costs in one unit or not at all: every candidate's model must be known.
  static bool AllLearned(const PlacementRequest& request, const ClusterSnapshot& snapshot) {
    if (request.gpus == 0 || request.learned_cost.empty()) return false;
    for (const NodeView& node : snapshot.nodes) {
      if (!node.ready || node.FreeGpus(request.gpu_model) < request.gpus) continue;
      for (int32_t index : PickGpus(request, node)) {
        for (const GpuView& gpu : node.gpus) {
          if (gpu.index == index && !request.learned_cost.count(gpu.model)) return false;
        }
      }
    }
    return true;
  }

  static double JoulesPerSample(const PlacementRequest& request, const NodeView& node) {
    std::vector<int32_t> picked = PickGpus(request, node);
    if (picked.empty()) return 0;
    std::string model;
    for (const GpuView& gpu : node.gpus) {
      if (gpu.index == picked[0]) model = gpu.model;
    }
    auto cost = request.learned_cost.find(model);
    if (cost == request.learned_cost.end() || cost->second.samples_per_second <= 0) return 0;
    double joules = cost->second.joules_per_sample;
    if (node.running_tasks == 0) joules += node.static_power_w / cost->second.samples_per_second;
    return joules;
  }

  static double MarginalPowerW(const PlacementRequest& request,
                               const NodeView& node) {
    double watts = node.running_tasks == 0 ? node.static_power_w : 0;
    for (int32_t index : PickGpus(request, node)) {
      for (const GpuView& gpu : node.gpus) {
        if (gpu.index == index) watts += gpu.power_limit_default_w;
      }
    }
    return watts;
  }
};

// Prefers awake nodes: a suspended one costs a resume (minutes) and its
// static power from then on. 0 for an asleep node, 100 otherwise.
class AwakeScorer : public ScorePlugin {
 public:
  std::string Name() const override { return "Awake"; }
  double Score(const PlacementRequest&, const NodeView& node,
               const ClusterSnapshot&, const State*) const override {
    return node.asleep ? 0 : 100;
  }
};

// Bin-packing: prefers nodes that are already busy, so whole nodes stay
// idle. Scores the share of the node in use before this replica (an idle
// node scores 0, whatever its size).
class ConsolidationScorer : public ScorePlugin {
 public:
  std::string Name() const override { return "Consolidation"; }
  double Score(const PlacementRequest& request, const NodeView& node,
               const ClusterSnapshot&, const State*) const override {
    if (request.gpus > 0 && !node.gpus.empty()) {
      const int total = static_cast<int>(node.gpus.size());
      return 100.0 * (total - node.FreeGpus("")) / total;
    }
    if (node.total_cpus <= 0) return 0;
    return 100.0 * (node.total_cpus - node.free_cpus) / node.total_cpus;
  }
};

// Prefers GPUs far from their throttle temperature.
class ThermalHeadroomScorer : public ScorePlugin {
 public:
  std::string Name() const override { return "ThermalHeadroom"; }
  double Score(const PlacementRequest& request, const NodeView& node,
               const ClusterSnapshot&, const State*) const override {
    double score = 100;
    for (int32_t index : PickGpus(request, node)) {
      for (const GpuView& gpu : node.gpus) {
        if (gpu.index != index || gpu.throttle_temp_c <= 0) continue;
        const double headroom =
            std::clamp((gpu.throttle_temp_c - gpu.temp_c) / gpu.throttle_temp_c,
                       0.0, 1.0);
        score = std::min(score, 100.0 * headroom);
      }
    }
    return score;
  }
};

// Keeps CPU-only work off GPU nodes: a GPU node's CPUs and memory feed its
// GPUs, and a CPU job there can leave a GPU job unplaceable.
class GpuFitScorer : public ScorePlugin {
 public:
  std::string Name() const override { return "GpuFit"; }
  double Score(const PlacementRequest& request, const NodeView& node,
               const ClusterSnapshot&, const State*) const override {
    if (request.gpus == 0 && !node.gpus.empty()) return 0;
    return 100;
  }
};

}  // namespace

int NodeView::FreeGpus(const std::string& model) const {
  int n = 0;
  for (const GpuView& gpu : gpus) n += Usable(gpu) && ModelMatches(model, gpu);
  return n;
}

int NodeView::TotalGpus(const std::string& model) const {
  int n = 0;
  for (const GpuView& gpu : gpus) n += ModelMatches(model, gpu);
  return n;
}

PlacementPipeline::PlacementPipeline(
    std::vector<std::unique_ptr<FilterPlugin>> filters,
    std::vector<WeightedScorer> scorers)
    : filters_(std::move(filters)), scorers_(std::move(scorers)) {}

namespace {

std::vector<std::unique_ptr<FilterPlugin>> DefaultFilters(
    absl::Duration telemetry_freshness) {
  std::vector<std::unique_ptr<FilterPlugin>> filters;
  filters.push_back(std::make_unique<NodeReadyFilter>());
  filters.push_back(std::make_unique<TelemetryFreshFilter>(telemetry_freshness));
  filters.push_back(std::make_unique<GpuModelFilter>());
  filters.push_back(std::make_unique<FreeResourcesFilter>());
  return filters;
}

}  // namespace

std::unique_ptr<PlacementPipeline> PlacementPipeline::FirstFit(
    absl::Duration telemetry_freshness) {
  return std::make_unique<PlacementPipeline>(DefaultFilters(telemetry_freshness),
                                             std::vector<WeightedScorer>());
}

std::unique_ptr<PlacementPipeline> PlacementPipeline::Default(
    absl::Duration telemetry_freshness) {
  std::vector<std::unique_ptr<FilterPlugin>> filters =
      DefaultFilters(telemetry_freshness);
  filters.push_back(std::make_unique<EnergyRoutingFilter>());
  std::vector<WeightedScorer> scorers;
  scorers.push_back({std::make_unique<EnergyEfficiencyScorer>(), 2});
  scorers.push_back({std::make_unique<ConsolidationScorer>(), 1});
  scorers.push_back({std::make_unique<ThermalHeadroomScorer>(), 1});
  scorers.push_back({std::make_unique<GpuFitScorer>(), 3});
  scorers.push_back({std::make_unique<AwakeScorer>(), 5});
  return std::make_unique<PlacementPipeline>(std::move(filters),
                                             std::move(scorers));
}

void PlacementPipeline::Reserve(const PlacementRequest& request,
                                const ReplicaPlacement& placement,
                                ClusterSnapshot* snapshot) {
  for (NodeView& node : snapshot->nodes) {
    if (node.name != placement.node) continue;
    for (GpuView& gpu : node.gpus) {
      if (std::find(placement.gpu_indices.begin(), placement.gpu_indices.end(),
                    gpu.index) != placement.gpu_indices.end()) {
        gpu.free = false;
      }
    }
    node.free_cpus -= request.cpus;
    node.free_memory_bytes -= request.memory_bytes;
    ++node.running_tasks;
  }
}

PlacementResult PlacementPipeline::Place(const PlacementRequest& request,
                                         const ClusterSnapshot& snapshot) const {
  PlacementResult result;
  // 1. Infeasible now: no node could hold a replica even if it were empty.
  const NodeView* largest = nullptr;
  bool any_fits = false;
  for (const NodeView& node : snapshot.nodes) {
    any_fits |= FitsWhenEmpty(request, node);
    if (largest == nullptr ||
        node.TotalGpus(request.gpu_model) > largest->TotalGpus(request.gpu_model)) {
      largest = &node;
    }
  }
  if (!any_fits) {
    result.kind = PlacementResult::Kind::kInfeasible;
    if (largest == nullptr) {
      result.reason = "unschedulable: no nodes are registered";
    } else {
      result.reason = absl::StrFormat(
          "unschedulable: no node can hold one replica (%d %s, %.2f CPUs, %d "
          "memory bytes); largest: %s with %d %s, %.2f CPUs",
          request.gpus, GpuNoun(request), request.cpus, request.memory_bytes,
          largest->name, largest->TotalGpus(request.gpu_model),
          GpuNoun(request), largest->total_cpus);
    }
    return result;
  }

  // 2. Place each replica on a private copy, reserving as we go. The copy is
  // made only when a later replica needs the reservation (copying every node
  // per single-replica job dominated long placement cycles).
  ClusterSnapshot copy;
  const ClusterSnapshot* working = &snapshot;
  for (int32_t replica = 0; replica < request.replicas; ++replica) {
    std::vector<NodeVerdict> verdicts;
    const NodeView* best = nullptr;
    double best_score = -1;
    std::map<std::string, int> reasons;
    // PreScore: per-replica state of each scorer, computed once.
    std::vector<std::unique_ptr<ScorePlugin::State>> states;
    states.reserve(scorers_.size());
    for (const WeightedScorer& scorer : scorers_) {
      states.push_back(scorer.plugin->PreScore(request, *working));
    }
    for (const NodeView& node : working->nodes) {
      NodeVerdict verdict;
      verdict.node = node.name;
      for (const auto& filter : filters_) {
        std::string reason = filter->Filter(request, node, *working);
        if (!reason.empty()) {
          ++reasons[absl::StrCat(filter->Name(), ": ", reason)];
          verdict.rejected_by.push_back({filter->Name(), std::move(reason)});
          break;
        }
      }
      if (verdict.rejected_by.empty()) {
        for (size_t i = 0; i < scorers_.size(); ++i) {
          const WeightedScorer& scorer = scorers_[i];
          const double score = std::clamp(
              scorer.plugin->Score(request, node, *working, states[i].get()), 0.0, 100.0);
          verdict.scores.push_back({scorer.plugin->Name(), score, scorer.weight});
          verdict.total_score += score * scorer.weight;
        }
        if (verdict.total_score > best_score ||
            (verdict.total_score == best_score && node.name < best->name)) {
          best = &node;
          best_score = verdict.total_score;
        }
      }
      verdicts.push_back(std::move(verdict));
    }
    if (replica == 0) result.verdicts = std::move(verdicts);
    if (best == nullptr) {
      // 3. Some replica cannot be placed now: reserve nothing.
      auto most_common = std::max_element(
          reasons.begin(), reasons.end(),
          [](const auto& a, const auto& b) { return a.second < b.second; });
      result.kind = PlacementResult::Kind::kRetryLater;
      result.replicas.clear();
      result.reason = absl::StrFormat(
          "waiting for resources: replica %d of %d fits on no node now (%s)",
          replica + 1, request.replicas,
          most_common == reasons.end() ? "no nodes" : most_common->first);
      return result;
    }
    ReplicaPlacement placement{best->name, PickGpus(request, *best)};
    if (replica + 1 < request.replicas) {
      if (working == &snapshot) {
        copy = snapshot;
        working = &copy;
      }
      Reserve(request, placement, &copy);
    }
    result.replicas.push_back(std::move(placement));
  }
  result.kind = PlacementResult::Kind::kPlaced;
  return result;
}

}  // namespace joule
