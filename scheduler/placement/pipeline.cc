#include "scheduler/placement/pipeline.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "scheduler/placement/gpu_pick.h"
#include "scheduler/placement/plugins/energy_routing.h"
#include "scheduler/placement/plugins/free_resources.h"
#include "scheduler/placement/plugins/gpu_model.h"

namespace joule {
namespace {

// The GPU model whose free-GPU index a request's candidates come from: with
// `routing` (the profile has the EnergyRouting filter), the one routed model
// when routing leaves exactly one (of the requested model); else the
// requested model ("" = any). Every node that could pass the filters is in
// this model's buckets of `request.gpus` free or more.
std::string IndexModel(const PlacementRequest& request, bool routing) {
  if (!routing) return request.gpu_model;
  std::string only;
  int routed = 0;
  for (const std::string& model : request.routed_models) {
    if (!request.gpu_model.empty() && model != request.gpu_model) continue;
    only = model;
    ++routed;
  }
  return routed == 1 ? only : request.gpu_model;
}

// Calls `visit(node_index)` for the nodes a request's filters should see,
// until it returns false. GPU requests: the index buckets of `gpus` free or
// more, fewest free first, each in node order; or, with `by_name`, all of
// them merged into node (= name) order. Others: every node in order.
template <typename Visit>
void VisitCandidates(const PlacementRequest& request, const ClusterSnapshot& snapshot,
                     const ClusterSnapshot::ModelIndex* index, bool by_name, Visit visit) {
  if (request.gpus <= 0) {
    for (int i = 0; i < static_cast<int>(snapshot.nodes.size()); ++i) {
      if (!visit(i)) return;
    }
    return;
  }
  if (index == nullptr) return;
  const int buckets = static_cast<int>(index->by_free.size());
  if (!by_name) {
    for (int k = request.gpus; k < buckets; ++k) {
      for (int node : index->by_free[k]) {
        if (!visit(node)) return;
      }
    }
    return;
  }
  // A k-way merge of at most (GPUs per node + 1) sorted buckets.
  using Iterator = absl::btree_set<int>::const_iterator;
  std::vector<std::pair<Iterator, Iterator>> heads;
  for (int k = request.gpus; k < buckets; ++k) {
    if (!index->by_free[k].empty()) heads.emplace_back(index->by_free[k].begin(), index->by_free[k].end());
  }
  while (!heads.empty()) {
    size_t min = 0;
    for (size_t h = 1; h < heads.size(); ++h) {
      if (*heads[h].first < *heads[min].first) min = h;
    }
    if (!visit(*heads[min].first)) return;
    if (++heads[min].first == heads[min].second) heads.erase(heads.begin() + min);
  }
}

}  // namespace

PlacementPipeline::PlacementPipeline(std::string profile_name,
                                     std::vector<std::unique_ptr<FilterPlugin>> filters,
                                     std::vector<WeightedScorer> scorers,
                                     int percentage_of_nodes_to_score,
                                     int min_feasible_nodes_to_score, int explain_top_candidates)
    : profile_name_(std::move(profile_name)),
      filters_(std::move(filters)),
      scorers_(std::move(scorers)),
      percentage_of_nodes_to_score_(percentage_of_nodes_to_score),
      min_feasible_nodes_to_score_(min_feasible_nodes_to_score),
      explain_top_candidates_(explain_top_candidates) {
  for (const auto& filter : filters_) routing_ |= filter->Name() == EnergyRoutingFilter::kName;
}

absl::StatusOr<std::unique_ptr<PlacementPipeline>> PlacementPipeline::FromProfile(
    const PlacementProfile& profile, const PluginArgs& args) {
  absl::Status valid = ValidateProfile(profile);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("profile ", profile.name, ": ", valid.message()));
  }
  std::vector<std::unique_ptr<FilterPlugin>> filters;
  for (const std::string& name : profile.filters) {
    absl::StatusOr<std::unique_ptr<FilterPlugin>> filter = NewFilterPlugin(name, args);
    if (!filter.ok()) return filter.status();
    filters.push_back(*std::move(filter));
  }
  std::vector<WeightedScorer> scorers;
  for (const PlacementProfile::Scorer& entry : profile.scorers) {
    absl::StatusOr<std::unique_ptr<ScorePlugin>> scorer = NewScorePlugin(entry.name);
    if (!scorer.ok()) return scorer.status();
    scorers.push_back({*std::move(scorer), entry.weight});
  }
  return std::make_unique<PlacementPipeline>(
      profile.name, std::move(filters), std::move(scorers), profile.percentage_of_nodes_to_score,
      profile.min_feasible_nodes_to_score, profile.explain_top_candidates);
}

int PlacementPipeline::FeasibleNodesToFind(int nodes) const {
  // A profile without scorers takes the first feasible node in name order.
  if (scorers_.empty()) return 1;
  if (percentage_of_nodes_to_score_ >= 100 || nodes <= min_feasible_nodes_to_score_) return nodes;
  int percentage = percentage_of_nodes_to_score_;
  if (percentage == 0) percentage = std::max(5, 50 - nodes / 125);
  return std::max(nodes * percentage / 100, min_feasible_nodes_to_score_);
}

bool PlacementPipeline::PlaceReplica(const PlacementRequest& request,
                                     const ClusterSnapshot& snapshot, bool explain,
                                     Candidate* chosen, CycleSummary* summary) const {
  const int64_t total = static_cast<int64_t>(snapshot.nodes.size());
  summary->nodes_total = total;
  // 1. PreFilter.
  for (const auto& filter : filters_) {
    PluginStatus status = filter->PreFilter(request, snapshot);
    if (status.ok()) continue;
    status.plugin = filter->Name();
    summary->rejections.push_back({status.plugin, status.code, total, status.reason});
    summary->code = status.code;
    summary->pre_filter = std::move(status);
    return false;
  }

  // 2. Filter. Nodes the index rules out are counted, not visited.
  const std::string index_model = IndexModel(request, routing_);
  const ClusterSnapshot::ModelIndex* index =
      request.gpus > 0 ? snapshot.model(index_model) : nullptr;
  const ClusterSnapshot::ModelIndex* requested =
      request.gpus > 0 ? snapshot.model(request.gpu_model) : nullptr;
  int64_t not_visited_unresolvable = 0;
  int64_t not_visited_unschedulable = 0;
  if (request.gpus > 0) {
    const int64_t with_total = requested == nullptr ? 0 : requested->NodesWithTotal(request.gpus);
    const int64_t with_free = index == nullptr ? 0 : index->NodesWithFree(request.gpus);
    not_visited_unresolvable = total - with_total;
    not_visited_unschedulable = with_total - with_free;
  }
  const int to_find = FeasibleNodesToFind(static_cast<int>(total));
  // Per filter: rejections by code, and the first node each turned away.
  struct Tally {
    int64_t by_code[4] = {0, 0, 0, 0};
    int example_node = -1;
  };
  std::vector<Tally> tallies(filters_.size());
  bool every_rejection_unresolvable = true;
  std::vector<Candidate> feasible;
  feasible.reserve(std::min<int64_t>(to_find, 1024));
  bool stopped = false;
  VisitCandidates(request, snapshot, index, scorers_.empty(), [&](int node_index) {
    if (static_cast<int>(feasible.size()) >= to_find) {
      stopped = true;
      return false;
    }
    const NodeView& node = snapshot.nodes[node_index];
    ++summary->nodes_filtered;
    for (size_t f = 0; f < filters_.size(); ++f) {
      const PluginCode code = filters_[f]->Filter(request, node, snapshot);
      if (code == PluginCode::kSuccess) continue;
      Tally& tally = tallies[f];
      ++tally.by_code[static_cast<int>(code)];
      if (tally.example_node < 0) tally.example_node = node_index;
      every_rejection_unresolvable &= code == PluginCode::kUnresolvable;
      return true;
    }
    feasible.push_back({node_index, &node, PickGpus(request, node)});
    return true;
  });
  summary->nodes_feasible = static_cast<int64_t>(feasible.size());
  summary->sampled = stopped;

  // The rejection counts, most first.
  for (size_t f = 0; f < filters_.size(); ++f) {
    const Tally& tally = tallies[f];
    for (int code = 1; code < 4; ++code) {
      if (tally.by_code[code] == 0) continue;
      const NodeView& example = snapshot.nodes[tally.example_node];
      summary->rejections.push_back(
          {filters_[f]->Name(), static_cast<PluginCode>(code), tally.by_code[code],
           absl::StrCat(example.name, ": ", filters_[f]->Reason(request, example, snapshot))});
    }
  }
  const std::string noun = GpuNoun(request);
  if (not_visited_unresolvable > 0) {
    summary->rejections.push_back(
        {GpuModelFilter::kName, PluginCode::kUnresolvable, not_visited_unresolvable,
         absl::StrFormat("fewer than %d %s in all", request.gpus, noun)});
  }
  if (not_visited_unschedulable > 0) {
    const bool routed = index_model != request.gpu_model;
    summary->rejections.push_back(
        {routed ? EnergyRoutingFilter::kName : FreeResourcesFilter::kName,
         PluginCode::kUnschedulable, not_visited_unschedulable,
         routed ? absl::StrFormat("fewer than %d free %s GPUs (%s)", request.gpus, index_model,
                                  request.routing_note)
                : absl::StrFormat("fewer than %d free %s now", request.gpus, noun)});
  }
  std::stable_sort(summary->rejections.begin(), summary->rejections.end(),
                   [](const RejectionCount& a, const RejectionCount& b) { return a.nodes > b.nodes; });

  if (feasible.empty()) {
    // Unresolvable only if no node could ever take it.
    summary->code = every_rejection_unresolvable && not_visited_unschedulable == 0
                                   ? PluginCode::kUnresolvable
                                   : PluginCode::kUnschedulable;
    return false;
  }

  // 3. Score, normalize, weigh.
  const size_t n = feasible.size();
  std::vector<double> totals(n, 0);
  std::vector<std::vector<double>> normalized(scorers_.size());
  for (size_t s = 0; s < scorers_.size(); ++s) {
    const WeightedScorer& scorer = scorers_[s];
    std::unique_ptr<ScorePlugin::State> state = scorer.plugin->PreScore(request, feasible);
    std::vector<double>& scores = normalized[s];
    scores.resize(n);
    for (size_t c = 0; c < n; ++c) scores[c] = scorer.plugin->Score(request, feasible[c], state.get());
    scorer.plugin->Normalize(state.get(), &scores);
    for (size_t c = 0; c < n; ++c) {
      scores[c] = std::clamp(scores[c], 0.0, 100.0);
      totals[c] += scores[c] * scorer.weight;
    }
  }
  auto better = [&](size_t a, size_t b) {
    if (totals[a] != totals[b]) return totals[a] > totals[b];
    return feasible[a].node->name < feasible[b].node->name;
  };
  size_t best = 0;
  for (size_t c = 1; c < n; ++c) {
    if (better(c, best)) best = c;
  }
  if (explain && explain_top_candidates_ > 0) {
    std::vector<size_t> order(n);
    for (size_t c = 0; c < n; ++c) order[c] = c;
    const size_t keep = std::min(n, static_cast<size_t>(explain_top_candidates_));
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), better);
    for (size_t i = 0; i < keep; ++i) {
      const size_t c = order[i];
      ScoredCandidate top;
      top.node = feasible[c].node->name;
      for (size_t s = 0; s < scorers_.size(); ++s) {
        top.scores.push_back({scorers_[s].plugin->Name(), normalized[s][c], scorers_[s].weight});
      }
      top.total_score = totals[c];
      summary->top.push_back(std::move(top));
    }
  }
  *chosen = std::move(feasible[best]);
  return true;
}

PlacementResult PlacementPipeline::Place(const PlacementRequest& request,
                                         ClusterSnapshot* snapshot) const {
  PlacementResult result;
  std::vector<std::pair<int, std::vector<int32_t>>> reserved;
  for (int32_t replica = 0; replica < request.replicas; ++replica) {
    Candidate chosen;
    CycleSummary summary;
    const bool placed = PlaceReplica(request, *snapshot, replica == 0, &chosen, &summary);
    if (replica == 0 || !placed) result.summary = std::move(summary);
    if (placed) {
      std::vector<int32_t> gpus = GpuIndices(chosen.gpus);
      snapshot->Reserve(chosen.node_index, gpus, request.cpus, request.memory_bytes);
      reserved.push_back({chosen.node_index, gpus});
      result.replicas.push_back({snapshot->nodes[chosen.node_index].name, std::move(gpus)});
      continue;
    }
    // Nothing is kept of a gang that does not fit whole.
    for (const auto& [node_index, gpus] : reserved) {
      snapshot->Unreserve(node_index, gpus, request.cpus, request.memory_bytes);
    }
    result.replicas.clear();
    const CycleSummary& failed = result.summary;
    if (failed.code == PluginCode::kError) {
      result.kind = PlacementResult::Kind::kError;
      result.reason = absl::StrCat("placement error: ", failed.pre_filter.plugin, ": ",
                                   failed.pre_filter.reason);
      return result;
    }
    if (failed.code == PluginCode::kUnresolvable) {
      result.kind = PlacementResult::Kind::kInfeasible;
      const NodeView* largest = nullptr;
      for (const NodeView& node : snapshot->nodes) {
        if (largest == nullptr ||
            node.TotalGpus(request.gpu_model) > largest->TotalGpus(request.gpu_model)) {
          largest = &node;
        }
      }
      if (largest == nullptr) {
        result.reason = "unschedulable: no nodes are registered";
      } else {
        result.reason = absl::StrFormat(
            "unschedulable: no node can hold one replica (%d %s, %.2f CPUs, %d memory bytes); "
            "largest: %s with %d %s, %.2f CPUs",
            request.gpus, GpuNoun(request), request.cpus, request.memory_bytes, largest->name,
            largest->TotalGpus(request.gpu_model), GpuNoun(request), largest->total_cpus);
      }
      return result;
    }
    result.kind = PlacementResult::Kind::kRetryLater;
    std::string why = "no nodes";
    if (!failed.rejections.empty()) {
      const RejectionCount& most = failed.rejections.front();
      why = most.nodes == failed.nodes_total
                ? absl::StrCat(most.plugin, ": ", most.example)
                : absl::StrFormat("%s on %d of %d nodes, e.g. %s", most.plugin, most.nodes,
                                  failed.nodes_total, most.example);
    }
    result.reason = absl::StrFormat("waiting for resources: replica %d of %d fits on no node now (%s)",
                                    replica + 1, request.replicas, why);
    return result;
  }
  result.kind = PlacementResult::Kind::kPlaced;
  return result;
}

}  // namespace joule
