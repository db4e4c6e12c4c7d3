#include "sim/engine/work_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace joule::sim {

namespace {

constexpr char kReferenceGpu[] = "V100";

// The seeded generator of one (job, batch size) draw.
std::mt19937_64 DrawGenerator(uint64_t seed, int64_t job_id, int32_t batch) {
  return std::mt19937_64(
      SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(job_id) * 1000003u +
                                   static_cast<uint64_t>(batch))));
}

}  // namespace

double SamplesPerEpoch(const std::string& workload) {
  if (workload == "cifar100/shufflenetv2") return 50000;
  if (workload == "imagenet/resnet50") return 1281167;
  if (workload == "librispeech/deepspeech2") return 281241;
  if (workload == "movielens-1m/ncf") return 1000209;
  if (workload == "sentiment140/bert_base_uncased") return 1600000;
  if (workload == "squad/bert_base_uncased") return 87599;
  return 1;
}

absl::StatusOr<WorkModel> WorkModel::Create(const PowerTables* tables,
                                            const ClusterConfig& cluster, uint64_t seed) {
  const std::vector<std::string> known = tables->Gpus();
  auto has = [&known](const std::string& gpu) {
    return std::find(known.begin(), known.end(), gpu) != known.end();
  };
  if (!has(kReferenceGpu)) {
    return absl::FailedPreconditionError(
        "the power tables have no V100 data, the reference GPU of the work model");
  }
  std::vector<std::string> gpus;
  int32_t largest = 0;
  for (const NodeType& type : cluster.node_types) {
    const std::string gpu(type.gpu_model);
    if (!has(gpu)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cluster ", cluster.name, " has ", gpu, " nodes but the power tables have no ",
          gpu, " data"));
    }
    if (std::find(gpus.begin(), gpus.end(), gpu) == gpus.end()) gpus.push_back(gpu);
    largest = std::max(largest, type.gpus_per_node);
  }
  if (gpus.empty()) return absl::FailedPreconditionError("the cluster has no nodes");
  return WorkModel(tables, std::move(gpus), largest, cluster.TotalGpus(), seed);
}

absl::StatusOr<SimJob> WorkModel::Build(const MappedJob& mapped) const {
  SimJob job;
  job.trace = mapped.job;
  job.workload = mapped.workload;
  std::vector<std::string> parts = absl::StrSplit(mapped.workload, '/');
  if (parts.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("workload ", mapped.workload, ": expected dataset/network"));
  }
  job.parts = {parts[0], parts[1]};

  // 1. Shape.
  double gpu_seconds = mapped.job.duration_s * mapped.job.gpus;
  int32_t gpus = mapped.job.gpus;
  if (gpus > total_gpus_) {
    gpus = 1;
    while (gpus * 2 <= total_gpus_) gpus *= 2;
  }
  if (gpus <= largest_node_gpus_) {
    job.replicas = 1;
    job.gpus_per_replica = gpus;
  } else {
    job.replicas = (gpus + largest_node_gpus_ - 1) / largest_node_gpus_;
    job.gpus_per_replica = (gpus + job.replicas - 1) / job.replicas;
  }

  // 5. Batch range: measured on every GPU model of the cluster.
  job.batch_min = 0;
  job.batch_max = std::numeric_limits<int32_t>::max();
  for (const std::string& gpu : cluster_gpus_) {
    const std::vector<int> sizes = tables_->BatchSizes(job.parts, gpu);
    if (sizes.empty()) {
      return absl::NotFoundError(
          absl::StrCat("no measured batch sizes for ", mapped.workload, " on ", gpu));
    }
    job.batch_min = std::max(job.batch_min, sizes.front());
    job.batch_max = std::min(job.batch_max, sizes.back());
  }
  if (job.batch_min > job.batch_max) job.batch_max = job.batch_min;
  job.batch_default =
      std::clamp(mapped.default_batch_size, job.batch_min, job.batch_max);
  job.batch_min = std::max(job.batch_min, job.batch_default / 4);
  job.batch_max = std::min(job.batch_max, job.batch_default * 4);

  // 2. Size at the reference configuration.
  const std::vector<double> limits = tables_->PowerLimits(job.parts, kReferenceGpu);
  if (limits.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no V100 power limits measured for ", mapped.workload));
  }
  absl::StatusOr<EpochCost> reference =
      tables_->Epoch(job.parts, kReferenceGpu, limits.back(), job.batch_default);
  if (!reference.ok()) return reference.status();
  job.epochs_ref = gpu_seconds / reference->seconds;
  return job;
}

absl::StatusOr<double> WorkModel::Epochs(const SimJob& job, int32_t batch) const {
  if (batch == job.batch_default) return job.epochs_ref;
  std::mt19937_64 at_default = DrawGenerator(seed_, job.trace.id, job.batch_default);
  std::mt19937_64 at_batch = DrawGenerator(seed_, job.trace.id, batch);
  absl::StatusOr<double> base =
      tables_->EpochsToTarget(job.parts, job.batch_default, absl::BitGenRef(at_default));
  if (!base.ok()) return base.status();
  absl::StatusOr<double> other =
      tables_->EpochsToTarget(job.parts, batch, absl::BitGenRef(at_batch));
  if (!other.ok()) return other.status();
  return job.epochs_ref * *other / *base;
}

absl::StatusOr<EpochCost> WorkModel::Cost(const SimJob& job, const std::string& gpu,
                                          double cap_w, int32_t batch) const {
  auto key = std::make_tuple(job.workload, gpu, std::llround(cap_w * 10), batch);
  auto it = costs_.find(key);
  if (it != costs_.end()) return it->second;
  absl::StatusOr<EpochCost> cost = tables_->Epoch(job.parts, gpu, cap_w, batch);
  if (!cost.ok()) return cost.status();
  costs_.emplace(key, *cost);
  return *cost;
}

}  // namespace joule::sim
