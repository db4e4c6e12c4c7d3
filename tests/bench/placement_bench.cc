// Placement benchmark: one placement cycle over a large queue on a large
// cluster, the pipeline (index, PreFilter, sampling) against the naive full
// scan (every filter on every node, every scorer on every feasible node) on
// the same cluster and the same jobs, in the same process.
//
//   bazel run -c opt //tests/bench:placement_bench -- --nodes=10000 --jobs=100000
//
// The cluster: `nodes` nodes of 8 GPUs, four models (H100, A100, A40, V100
// in 1:2:3:4 proportions; every 20th node splits 4 + 4 between two models),
// random temperatures (about 2 % of GPUs too hot), 5 % of nodes down. The
// queue: 1, 2, 4 or 8 GPUs per replica, 10 % gangs of 2 to 16 replicas, 20 %
// naming a GPU model, a third with learned costs per model and a third of
// those energy-routed to one or two models, 5 % CPU-only. Seeded: the same
// flags give the same cluster and queue.
//
// Exits 1 when sampling off and the naive scan disagree on a job, or the
// whole queue misses a target (>= 5,000 placements/s, p99 <= 2 ms).
//
// Printed: decisions per second, placements, placements per second, and
// p50 / p99 / max of the decision time (one job, all replicas), for the
// pipeline on the whole queue; then the pipeline and the naive scan on the
// first --baseline-jobs jobs (the scan is O(nodes) per replica, too slow for
// the whole queue), with the speed-up, and whether the two placed every job
// alike (sampling off for that comparison: with sampling on, the pipeline
// may choose another node of equal or near-equal score).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "scheduler/placement/full_scan.h"
#include "scheduler/placement/pipeline.h"
#include "scheduler/placement/plugin_registry.h"
#include "scheduler/placement/profile.h"

namespace joule {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

struct Model {
  const char* name;
  double limit_w;
  int share;  // of 10
};
const Model kModels[] = {{"H100", 700, 1}, {"A100", 400, 2}, {"A40", 300, 3}, {"V100", 250, 4}};

const Model& PickModel(std::mt19937_64& rng) {
  int roll = static_cast<int>(rng() % 10);
  for (const Model& model : kModels) {
    if (roll < model.share) return model;
    roll -= model.share;
  }
  return kModels[3];
}

ClusterSnapshot MakeCluster(int nodes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  ClusterSnapshot snapshot;
  snapshot.now = kNow;
  snapshot.nodes.reserve(nodes);
  for (int n = 0; n < nodes; ++n) {
    NodeView node;
    node.name = absl::StrFormat("node-%05d", n);
    node.ready = rng() % 20 != 0;
    node.last_telemetry = kNow - absl::Seconds(rng() % 10);
    node.total_cpus = node.free_cpus = 64;
    node.total_memory_bytes = node.free_memory_bytes = int64_t{512} << 30;
    node.static_power_w = 150 + rng() % 100;
    const Model& first = PickModel(rng);
    const Model& second = n % 20 == 0 ? PickModel(rng) : first;
    for (int g = 0; g < 8; ++g) {
      const Model& model = g < 4 ? first : second;
      GpuView gpu;
      gpu.index = g;
      gpu.model = model.name;
      gpu.power_limit_default_w = model.limit_w;
      gpu.idle_power_w = model.limit_w / 10;
      gpu.throttle_temp_c = 85;
      gpu.temp_c = 30 + rng() % 52;
      gpu.hot = gpu.temp_c >= 80;
      node.gpus.push_back(gpu);
    }
    snapshot.nodes.push_back(std::move(node));
  }
  snapshot.Index();
  return snapshot;
}

std::vector<PlacementRequest> MakeQueue(int jobs, uint64_t seed) {
  std::mt19937_64 rng(seed + 1);
  std::vector<PlacementRequest> queue;
  queue.reserve(jobs);
  for (int j = 0; j < jobs; ++j) {
    PlacementRequest request;
    request.job_id = absl::StrCat("job-", j);
    const int kind = static_cast<int>(rng() % 100);
    request.gpus = kind < 5 ? 0 : 1 << (rng() % 4);
    request.replicas = kind >= 90 ? 2 + static_cast<int>(rng() % 15) : 1;
    request.cpus = 1 + static_cast<double>(rng() % 8);
    request.memory_bytes = int64_t{1} << (30 + rng() % 5);
    if (rng() % 5 == 0) request.gpu_model = PickModel(rng).name;
    if (request.gpus > 0 && rng() % 3 == 0) {
      for (const Model& model : kModels) {
        request.learned_cost[model.name] = {0.2 + (rng() % 100) / 40.0, 50.0 + rng() % 400};
      }
      if (rng() % 3 == 0) {
        request.routed_models.insert(PickModel(rng).name);
        if (rng() % 2 == 0) request.routed_models.insert(PickModel(rng).name);
        request.routing_note = "routed for fewer joules";
      }
    }
    queue.push_back(std::move(request));
  }
  return queue;
}

struct Run {
  int64_t decisions = 0;
  int64_t placed = 0;
  double seconds = 0;
  std::vector<double> micros;  // per decision
  std::vector<std::vector<ReplicaPlacement>> placements;
};

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  const size_t k = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  std::nth_element(values.begin(), values.begin() + k, values.end());
  return values[k];
}

template <typename Decide>
Run Cycle(const std::vector<PlacementRequest>& queue, int jobs, bool keep, Decide decide) {
  Run run;
  run.micros.reserve(jobs);
  const auto start = std::chrono::steady_clock::now();
  for (int j = 0; j < jobs; ++j) {
    const auto before = std::chrono::steady_clock::now();
    std::vector<ReplicaPlacement> placed = decide(queue[j]);
    const auto after = std::chrono::steady_clock::now();
    run.micros.push_back(std::chrono::duration<double, std::micro>(after - before).count());
    ++run.decisions;
    run.placed += !placed.empty();
    if (keep) run.placements.push_back(std::move(placed));
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

void Print(const std::string& label, const Run& run) {
  std::printf("%-34s %8lld decisions %7.0f/s  %7lld placed %8.0f/s  p50 %7.1f us  p99 %8.1f us  max %8.1f us\n",
              label.c_str(), static_cast<long long>(run.decisions), run.decisions / run.seconds,
              static_cast<long long>(run.placed), run.placed / run.seconds,
              Percentile(run.micros, 0.50), Percentile(run.micros, 0.99),
              *std::max_element(run.micros.begin(), run.micros.end()));
}

std::unique_ptr<PlacementPipeline> Build(const PlacementProfile& profile) {
  absl::StatusOr<std::unique_ptr<PlacementPipeline>> pipeline =
      PlacementPipeline::FromProfile(profile, PluginArgs{absl::Seconds(30)});
  if (!pipeline.ok()) {
    std::fprintf(stderr, "%s\n", std::string(pipeline.status().message()).c_str());
    std::exit(2);
  }
  return *std::move(pipeline);
}

int Main(int argc, char** argv) {
  int nodes = 10'000;
  int jobs = 100'000;
  int baseline_jobs = 2'000;
  uint64_t seed = 1;
  CLI::App app("Placement: the pipeline against the naive full scan, same cluster, same queue");
  app.add_option("--nodes", nodes, "nodes of 8 GPUs")->check(CLI::Range(1, 1'000'000));
  app.add_option("--jobs", jobs, "queued jobs")->check(CLI::Range(1, 10'000'000));
  app.add_option("--baseline-jobs", baseline_jobs,
                 "jobs placed by both the pipeline and the naive scan")
      ->check(CLI::Range(1, 10'000'000));
  app.add_option("--seed", seed, "cluster and queue seed");
  CLI11_PARSE(app, argc, argv);
  baseline_jobs = std::min(baseline_jobs, jobs);

  const ClusterSnapshot cluster = MakeCluster(nodes, seed);
  const std::vector<PlacementRequest> queue = MakeQueue(jobs, seed);
  int64_t gpus = 0;
  for (const NodeView& node : cluster.nodes) gpus += static_cast<int64_t>(node.gpus.size());
  std::printf("cluster: %d nodes, %lld GPUs (4 models); queue: %d jobs; seed %llu\n", nodes,
              static_cast<long long>(gpus), jobs, static_cast<unsigned long long>(seed));

  const std::unique_ptr<PlacementPipeline> sampled = Build(EnergyProfile());
  PlacementProfile all_nodes = EnergyProfile();
  all_nodes.percentage_of_nodes_to_score = 100;
  const std::unique_ptr<PlacementPipeline> unsampled = Build(all_nodes);
  std::printf("energy profile: %d feasible nodes are enough (percentage_of_nodes_to_score 0 = adaptive)\n\n",
              sampled->FeasibleNodesToFind(nodes));

  ClusterSnapshot working = cluster;
  const Run whole = Cycle(queue, jobs, false, [&](const PlacementRequest& request) {
    return sampled->Place(request, &working).replicas;
  });
  Print("pipeline, whole queue", whole);
  working = cluster;
  Print("pipeline, sampling off, whole queue",
        Cycle(queue, jobs, false, [&](const PlacementRequest& request) {
          return unsampled->Place(request, &working).replicas;
        }));

  std::printf("\nfirst %d jobs, same cluster:\n", baseline_jobs);
  working = cluster;
  const Run profile = Cycle(queue, baseline_jobs, false, [&](const PlacementRequest& request) {
    return sampled->Place(request, &working).replicas;
  });
  Print("pipeline, energy profile", profile);
  working = cluster;
  const Run fast = Cycle(queue, baseline_jobs, true, [&](const PlacementRequest& request) {
    return unsampled->Place(request, &working).replicas;
  });
  Print("pipeline, sampling off", fast);
  ClusterSnapshot naive_state = cluster;
  const Run naive = Cycle(queue, baseline_jobs, true, [&](const PlacementRequest& request) {
    std::vector<ReplicaPlacement> placed = NaiveFullScan(*unsampled, request, naive_state);
    // Keep the naive scan's own cluster state in step with its choices.
    for (const ReplicaPlacement& replica : placed) {
      naive_state.Reserve(naive_state.Find(replica.node), replica.gpu_indices, request.cpus,
                          request.memory_bytes);
    }
    return placed;
  });
  Print("naive full scan (baseline)", naive);
  int64_t same = 0;
  for (int j = 0; j < baseline_jobs; ++j) {
    const auto& a = fast.placements[j];
    const auto& b = naive.placements[j];
    bool equal = a.size() == b.size();
    for (size_t r = 0; equal && r < a.size(); ++r) {
      equal = a[r].node == b[r].node && a[r].gpu_indices == b[r].gpu_indices;
    }
    same += equal;
  }
  std::printf("\nover the naive scan: the energy profile %.1fx the decisions/s, p99 %.1fx "
              "lower; sampling off %.1fx the decisions/s, p99 %.1fx lower, identical "
              "placements: %lld of %d jobs\n",
              (profile.decisions / profile.seconds) / (naive.decisions / naive.seconds),
              Percentile(naive.micros, 0.99) / Percentile(profile.micros, 0.99),
              (fast.decisions / fast.seconds) / (naive.decisions / naive.seconds),
              Percentile(naive.micros, 0.99) / Percentile(fast.micros, 0.99),
              static_cast<long long>(same), baseline_jobs);
  // The targets, for the whole queue with the energy profile.
  constexpr double kTargetPlacementsPerS = 5000;
  constexpr double kTargetP99Us = 2000;
  const double placements_per_s = whole.placed / whole.seconds;
  const double p99_us = Percentile(whole.micros, 0.99);
  const bool rate_ok = placements_per_s >= kTargetPlacementsPerS;
  const bool p99_ok = p99_us <= kTargetP99Us;
  std::printf("placements/s: %.0f (target >= %.0f): %s\n", placements_per_s, kTargetPlacementsPerS,
              rate_ok ? "PASS" : "FAIL");
  std::printf("p99 decision: %.0f us (target <= %.0f us): %s\n", p99_us, kTargetP99Us,
              p99_ok ? "PASS" : "FAIL");
  return same == baseline_jobs && rate_ok && p99_ok ? 0 : 1;
}

}  // namespace
}  // namespace joule

int main(int argc, char** argv) { return joule::Main(argc, argv); }
