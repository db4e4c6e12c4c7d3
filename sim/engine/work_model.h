// How a Philly trace job becomes simulated work, and what that work costs on
// a simulated GPU. Every assumption the simulator makes about jobs lives here
// (documented in sim/README.md, "Work model"):
//
//  1. Shape. A job of g GPUs runs as one task when g fits on the cluster's
//     largest node, else as ceil(g / n) data-parallel replicas of ceil(g / r)
//     GPUs each (n = GPUs of the largest node, r = replicas). A job needing
//     more GPUs than the whole cluster has is shrunk to the largest power of
//     two that fits, keeping its GPU-seconds.
//  2. Size. The trace duration fixes the work at the reference configuration:
//     the job's default batch size on V100 at its maximum measured power
//     limit, with linear data-parallel scaling (G GPUs finish an epoch G times
//     faster than one): epochs_ref = duration x G / t_epoch(V100, max, b0).
//  3. Batch size. Epochs to the target at batch b scale with the recorded
//     runs of summary_train.csv: epochs(b) = epochs_ref x ETT(b) / ETT(b0),
//     where each ETT is one recorded run drawn with a generator seeded by
//     (seed, job id, batch), so a job's draws do not depend on the policy or
//     on what else ran.
//  4. Speed and power. Each GPU runs the measured single-GPU configuration
//     (PowerTables::Epoch at its cap and the job's batch size). A job's
//     replicas step together, so the job advances at G / max_i t_i epochs per
//     second; a GPU faster than the slowest waits, drawing idle power plus
//     its measured dynamic power scaled by t_i / t_max.
//  5. Batch range. The default is Zeus's b0 capped to the largest batch
//     measured on every GPU model of the cluster (Zeus caps b0 at the
//     largest batch measured on the GPU). The spec allows [b0 / 4, b0 x 4]
//     within the sizes measured on every model: the neighbourhood a user
//     would let a scheduler explore (a whole measured range such as
//     MovieLens's 4..16384 would have the bandit try batches 256x smaller
//     than the tuned one, each exploration a recurrence run hundreds of
//     times slower).
#ifndef JOULE_SIM_ENGINE_WORK_MODEL_H_
#define JOULE_SIM_ENGINE_WORK_MODEL_H_

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "sim/hardware/power_tables.h"
#include "sim/trace/cluster_config.h"
#include "sim/trace/workload_mapping.h"

namespace joule::sim {

// Samples per epoch of each workload's training set, so that progress is
// reported in samples as real tasks do (public dataset sizes: CIFAR-100
// 50,000 images; ImageNet-1k 1,281,167; LibriSpeech 960 h 281,241
// utterances; MovieLens-1M 1,000,209 ratings; Sentiment140 1,600,000 tweets;
// SQuAD v1.1 87,599 questions).
double SamplesPerEpoch(const std::string& workload);

struct SimJob {
  TraceJob trace;
  std::string workload;  // "dataset/network"
  Workload parts;
  int32_t replicas = 1;
  int32_t gpus_per_replica = 1;
  int32_t batch_min = 0;
  int32_t batch_default = 0;
  int32_t batch_max = 0;
  // Epochs to the target at batch_default (assumption 2).
  double epochs_ref = 0;

  int32_t TotalGpus() const { return replicas * gpus_per_replica; }
};

class WorkModel {
 public:
  // `tables` must outlive the model. FAILED_PRECONDITION when the tables
  // lack V100 (the reference GPU) or a GPU model of the cluster.
  static absl::StatusOr<WorkModel> Create(const PowerTables* tables,
                                          const ClusterConfig& cluster, uint64_t seed);

  // Assumptions 1, 2 and 5. NOT_FOUND for a workload without data.
  absl::StatusOr<SimJob> Build(const MappedJob& mapped) const;

  // Assumption 3: epochs to the target at `batch`.
  absl::StatusOr<double> Epochs(const SimJob& job, int32_t batch) const;

  // One GPU's epoch time and power (memoized PowerTables::Epoch).
  absl::StatusOr<EpochCost> Cost(const SimJob& job, const std::string& gpu,
                                 double cap_w, int32_t batch) const;

  // GPU model names of the cluster ("V100", "A40", "RTX6000").
  const std::vector<std::string>& cluster_gpus() const { return cluster_gpus_; }
  const PowerTables& tables() const { return *tables_; }

 private:
  WorkModel(const PowerTables* tables, std::vector<std::string> gpus,
            int32_t largest_node, int32_t total_gpus, uint64_t seed)
      : tables_(tables),
        cluster_gpus_(std::move(gpus)),
        largest_node_gpus_(largest_node),
        total_gpus_(total_gpus),
        seed_(seed) {}

  const PowerTables* tables_;
  std::vector<std::string> cluster_gpus_;
  int32_t largest_node_gpus_;
  int32_t total_gpus_;
  uint64_t seed_;
  // (workload, gpu, cap in 0.1 W, batch) -> cost.
  mutable absl::flat_hash_map<std::tuple<std::string, std::string, int64_t, int32_t>,
                              EpochCost>
      costs_;
};

}  // namespace joule::sim

#endif  // JOULE_SIM_ENGINE_WORK_MODEL_H_
