#include "sim/engine/oracle.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "scheduler/bandit/batch_size_bandit.h"

namespace joule::sim {

absl::StatusOr<PolicyRun> ComputeOracle(const WorkModel& model, const ClusterConfig& cluster,
                                        const std::vector<SimJob>& jobs) {
  const auto wall_start = std::chrono::steady_clock::now();
  // Static power per GPU of each model's nodes (the lowest, if several
  // node types carry one model).
  std::map<std::string, double> static_per_gpu;
  for (const NodeType& type : cluster.node_types) {
    const std::string gpu(GpuModelName(type.gpu_model));
    const double share = type.static_power_w / type.gpus_per_node;
    auto it = static_per_gpu.find(gpu);
    if (it == static_per_gpu.end() || share < it->second) static_per_gpu[gpu] = share;
  }
  PolicyRun run;
  run.policy = "oracle";
  for (const SimJob& job : jobs) {
    std::set<int32_t> batches;
    for (int32_t b : CandidateBatchSizes(job.batch_min, job.batch_default, job.batch_max)) {
      batches.insert(b);
    }
    for (const std::string& gpu : model.cluster_gpus()) {
      for (int b : model.tables().BatchSizes(job.parts, gpu)) {
        if (b >= job.batch_min && b <= job.batch_max) batches.insert(b);
      }
    }
    double best_j = std::numeric_limits<double>::infinity(), best_gpu_j = 0, best_s = 0;
    for (int32_t batch : batches) {
      absl::StatusOr<double> epochs = model.Epochs(job, batch);
      if (!epochs.ok()) return epochs.status();
      for (const std::string& gpu : model.cluster_gpus()) {
        for (double cap : model.tables().PowerLimits(job.parts, gpu)) {
          absl::StatusOr<EpochCost> cost = model.Cost(job, gpu, cap, batch);
          if (!cost.ok()) return cost.status();
          // G GPUs share the epochs: time E t / G, energy E t (P + s).
          const double gpu_j = *epochs * cost->seconds * cost->average_power_w;
          const double energy_j =
              *epochs * cost->seconds * (cost->average_power_w + static_per_gpu[gpu]);
          if (energy_j < best_j) {
            best_j = energy_j;
            best_gpu_j = gpu_j;
            best_s = *epochs * cost->seconds / job.TotalGpus();
          }
        }
      }
    }
    JobOutcome outcome;
    outcome.trace_id = job.trace.id;
    outcome.workload = job.workload;
    outcome.gpus = job.TotalGpus();
    outcome.arrival_s = job.trace.arrival_s;
    outcome.start_s = job.trace.arrival_s;
    outcome.end_s = job.trace.arrival_s + best_s;
    outcome.energy_j = best_j;
    outcome.gpu_energy_j = best_gpu_j;
    outcome.finished = true;
    run.makespan_s = std::max(run.makespan_s, outcome.end_s);
    run.jobs.push_back(std::move(outcome));
    ++run.events;
  }
  run.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return run;
}

}  // namespace joule::sim
