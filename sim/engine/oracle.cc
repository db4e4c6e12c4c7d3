#include "sim/engine/oracle.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/device_catalog.h"
#include "scheduler/bandit/batch_size_bandit.h"

namespace joule::sim {

absl::StatusOr<PolicyRun> ComputeOracle(const WorkModel& model, const ClusterConfig& cluster,
                                        const std::vector<SimJob>& jobs,
                                        const std::vector<GpuModelSpec>& catalog) {
  const auto wall_start = std::chrono::steady_clock::now();
  // Static power per GPU of each model's nodes (the lowest, if several
  // node types carry one model).
  std::map<std::string, double> static_per_gpu;
  for (const NodeType& type : cluster.node_types) {
    const std::string gpu(type.gpu_model);
    const double share = type.static_power_w / type.gpus_per_node;
    auto it = static_per_gpu.find(gpu);
    if (it == static_per_gpu.end() || share < it->second) static_per_gpu[gpu] = share;
  }
  PolicyRun run;
  run.policy = "oracle";
  // GPU-seconds each model is busy, for the cluster-energy basis.
  std::map<std::string, double> busy_gpu_s;
  double jobs_gpu_j = 0;
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
    std::string best_gpu;
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
            best_gpu = gpu;
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
    busy_gpu_s[best_gpu] += best_s * job.TotalGpus();
    jobs_gpu_j += best_gpu_j;
    run.jobs.push_back(std::move(outcome));
    ++run.events;
  }
  // The cluster-energy basis, always on: every node's static power and every
  // idle GPU's idle power up to the makespan, plus the jobs' GPU energy.
  // (Running every job at once ignores capacity, so a model's GPUs may be
  // oversubscribed; their idle time is then taken as zero.)
  double cluster_j = jobs_gpu_j;
  for (const NodeType& type : cluster.node_types) {
    cluster_j += type.static_power_w * type.count * run.makespan_s;
  }
  std::map<std::string, int> gpus_of;
  for (const NodeType& type : cluster.node_types) {
    gpus_of[type.gpu_model] += type.count * type.gpus_per_node;
  }
  for (const auto& [gpu, count] : gpus_of) {
    absl::optional<GpuModelSpec> spec = FindGpuModel(catalog, gpu);
    if (!spec) return absl::NotFoundError(absl::StrCat("GPU model ", gpu, " not in the catalog"));
    cluster_j += spec->idle_power_w * std::max(0.0, count * run.makespan_s - busy_gpu_s[gpu]);
  }
  run.cluster_energy_j = cluster_j;
  run.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return run;
}

}  // namespace joule::sim
