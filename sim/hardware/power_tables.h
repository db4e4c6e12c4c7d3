// Measured GPU epoch time and power per power limit and batch size, and the
// number of epochs a training run needs to reach its target metric.
//
// Data: the Zeus paper's trace (Zeus, NSDI 2023, ml-energy/zeus trace,
// Apache-2.0). Only the simulated hardware may use these tables; the scheduler
// under test must learn power/speed curves from telemetry, which is why the
// Bazel target is not visible to //scheduler.

#ifndef JOULE_SIM_HARDWARE_POWER_TABLES_H_
#define JOULE_SIM_HARDWARE_POWER_TABLES_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/status/statusor.h"
#include "common/device_catalog.h"

namespace joule::sim {

// A training workload of the trace, e.g. {"cifar100", "shufflenetv2"}.
struct Workload {
  std::string dataset;
  std::string network;

  // "dataset/network", the key used by PowerTables::Workloads().
  std::string Key() const { return dataset + "/" + network; }
};

// Cost of one training epoch on one GPU.
struct EpochCost {
  double seconds = 0;
  double average_power_w = 0;
  // True when the query lay outside the measured grid and was clamped to the
  // nearest measured point in at least one dimension.
  bool extrapolated = false;
};

// Immutable lookup tables built from the trace's CSV files.
//
// Assumptions and choices:
//  1. GPU type comes from the file name: summary_power_v100.csv -> "V100",
//     summary_power_a40.csv -> "A40", summary_power_rtx6000.csv -> "RTX6000".
//     Files that are absent are skipped; at least one must exist, and
//     summary_train.csv is required.
//  2. Optimizer: per workload, the optimizer with the most rows over all
//     summary_power files is kept (ties: lexicographically smallest name);
//     other optimizers' rows are ignored. EpochsToTarget() uses the same
//     optimizer; if summary_train.csv has no rows for it, the optimizer with
//     the most training rows for that workload (same tie rule) is used.
//     Repeated rows for one (workload, gpu, batch, limit) are averaged.
//  3. Epoch(): for each of the two measured batch sizes bracketing the query,
//     interpolate linearly in power limit between the two nearest limits
//     measured for that batch size; then interpolate linearly in
//     log2(batch size) between the two results. A coordinate outside the
//     measured range is clamped to the nearest measured value and the result
//     is flagged `extrapolated`.
//  4. EpochsToTarget(): rows with target_epoch "nan" (the run never reached
//     the target) are dropped. Among the remaining (learning rate, run) rows
//     for the workload, optimizer, batch size and target metric, one is drawn
//     uniformly. A batch size without such rows uses the nearest recorded
//     batch size in log2 distance (ties: the smaller one). The default
//     target metric of a workload is the lower median of its recorded
//     distinct target metrics.
//
// Thread-safety: immutable after Load(); const methods are safe to call
// concurrently (the BitGenRef passed in must not be shared without locking).
class PowerTables {
 public:
  // Reads every <dir>/summary_power_<gpu>.csv and <dir>/summary_train.csv.
  // <gpu> names a model of `catalog` (matched as common/device_catalog.h
  // does: case, spaces and dashes do not matter) and the tables use the
  // catalog's name for it; a file for a model the catalog does not describe
  // is refused (INVALID_ARGUMENT), never skipped. NOT_FOUND when no power
  // file or the train file is missing; INVALID_ARGUMENT or DATA_LOSS, naming
  // file, line and column, for malformed content.
  static absl::StatusOr<PowerTables> Load(const std::string& dir,
                                          const std::vector<GpuModelSpec>& catalog);
  // With the built-in catalog.
  static absl::StatusOr<PowerTables> Load(const std::string& dir);

  // Epoch time and average power at `power_limit_w` and `batch_size`.
  // NOT_FOUND for an unknown workload or GPU; INVALID_ARGUMENT for a
  // non-positive batch size or a non-finite/non-positive power limit.
  absl::StatusOr<EpochCost> Epoch(const Workload& workload,
                                  const std::string& gpu, double power_limit_w,
                                  int batch_size) const;

  // Sorted union of measured power limits (W) / batch sizes; empty if the
  // (workload, gpu) pair is unknown.
  std::vector<double> PowerLimits(const Workload& workload,
                                  const std::string& gpu) const;
  std::vector<int> BatchSizes(const Workload& workload,
                              const std::string& gpu) const;

  // Sorted workload keys ("dataset/network") with power data, and GPU names.
  std::vector<std::string> Workloads() const;
  std::vector<std::string> Gpus() const;

  // The optimizer kept for `workload` (see class comment), or NOT_FOUND.
  absl::StatusOr<std::string> Optimizer(const Workload& workload) const;

  // The default target metric of `workload`, or NOT_FOUND.
  absl::StatusOr<double> DefaultTargetMetric(const Workload& workload) const;

  // Draws the epochs one recorded run needed to reach the default target
  // metric (or `target_metric`). NOT_FOUND when nothing matches.
  absl::StatusOr<double> EpochsToTarget(const Workload& workload,
                                        int batch_size,
                                        absl::BitGenRef gen) const;
  absl::StatusOr<double> EpochsToTarget(const Workload& workload,
                                        int batch_size, double target_metric,
                                        absl::BitGenRef gen) const;

 private:
  // batch size -> power limit -> cost.
  using Grid = std::map<int, std::map<double, EpochCost>>;
  // target metric -> batch size -> epochs of each successful run.
  using TrainRuns = std::map<double, std::map<int, std::vector<double>>>;

  PowerTables() = default;

  std::map<std::pair<std::string, std::string>, Grid> grids_;  // (key, gpu)
  std::map<std::string, std::string> optimizer_;               // key -> opt
  std::map<std::string, TrainRuns> train_;                     // key -> runs
  std::vector<std::string> gpus_;
};

}  // namespace joule::sim

#endif  // JOULE_SIM_HARDWARE_POWER_TABLES_H_
