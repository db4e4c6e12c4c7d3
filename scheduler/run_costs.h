#ifndef JOULE_SCHEDULER_RUN_COSTS_H_
#define JOULE_SCHEDULER_RUN_COSTS_H_

// What whole runs measured: the joules one sample costs (GPUs plus their
// share of the node's static power, at the caps the runs were given) per job
// class, GPU model and batch size, and a model of it for the combinations no
// run has measured yet. Part of the energy model (energy_model.h): the batch
// sizer multiplies the samples a batch size needs to reach the target (which
// it learns, and which does not depend on the GPU) by the joules a sample
// costs at that batch size on the GPUs a job was placed on (from here).
//
// Model. Per class, log(joules per sample) of a run on model g at batch b is
//   alpha_g + beta_b + noise,
// an additive model on the log scale: a GPU model is some factor more
// efficient than another at every batch size, and a batch size some factor
// more efficient than another on every GPU. It is fitted by weighted
// backfitting (Hastie and Tibshirani, "Generalized Additive Models", 1990,
// section 4.3) over the cells (g, b) that runs measured, weighted by their
// run counts. The noise's standard deviation s is pooled over cells and
// shrunk towards a prior (0.1 in log units, worth 2 degrees of freedom), as
// BatchSizeBandit does.
//
// A prediction for (g, b):
//  - measured cell: its mean; relative error s / sqrt(n);
//  - g and b each measured somewhere: exp(alpha_g + beta_b); relative error
//    s * sqrt(1 / n_g + 1 / n_b) (n_g: runs on g, n_b: runs at b);
//  - an unmeasured g or b: the run-weighted mean of the known alphas (betas)
//    stands in, so nothing favours or penalizes what was never measured; its
//    term of the error is s * sqrt(1 + 1 / n) (n: all runs of the class),
//    the mean's error plus a whole s for how far the factor may lie from it.
// Relative errors are those of the log, which for small values is the
// relative standard error of the joules.
//
// GPU counts are not a dimension: a sample's joules do not change with the
// GPUs sharing a step (the same assumption as EnergyModel::ForGpus).
//
// Threading: not thread-safe; owned by the scheduler's EnergyModel and used
// under its lock.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace joule {

struct RunCostEstimate {
  double joules_per_sample = 0;
  // Standard error of log(joules_per_sample).
  double relative_error = 0;
  // Runs measured in exactly this cell.
  int64_t observations = 0;
  // False when modelled from other cells.
  bool measured = false;
};

class RunCosts {
 public:
  // Records one run's joules per sample. INVALID_ARGUMENT (nothing stored)
  // for a value that is not finite and > 0, an empty class or model, or a
  // batch size below 1.
  absl::Status Observe(const std::string& job_class, const std::string& model,
                       int32_t batch_size, double joules_per_sample);

  // Predictions for `batch_sizes` on `model`, in their order; empty when the
  // class has no run at all.
  std::vector<RunCostEstimate> Predict(const std::string& job_class, const std::string& model,
                                       const std::vector<int32_t>& batch_sizes) const;

  // Text of one class's cells for the store; empty for an unknown class.
  std::string SerializeClass(const std::string& job_class) const;
  // Restores a class written by `SerializeClass`; DATA_LOSS (class
  // unchanged) for anything else.
  absl::Status ParseClass(const std::string& job_class, absl::string_view data);

  size_t classes() const { return classes_.size(); }

 private:
  // Welford statistics of log(joules per sample).
  struct Cell {
    int64_t n = 0;
    double mean = 0;
    double m2 = 0;
  };
  // (model, batch size) -> cell.
  using Cells = std::map<std::pair<std::string, int32_t>, Cell>;

  std::map<std::string, Cells> classes_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_RUN_COSTS_H_
