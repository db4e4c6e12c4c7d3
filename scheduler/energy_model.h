#ifndef JOULE_SCHEDULER_ENERGY_MODEL_H_
#define JOULE_SCHEDULER_ENERGY_MODEL_H_

// The energy model: what the cluster has measured of each job class's power
// curve on each GPU model (the profiles of just-in-time profiling), and the
// one prediction every part of the energy brain asks for: at the cap a job's
// objective picks on a GPU model, its joules and seconds per sample. Bind
// (the task's starting cap) and placement (energy efficiency, energy
// routing) ask the same question with the same inputs, so they cannot
// disagree about a cap.
//
// A profile is measured for one GPU count per task. For another count the
// nearest measured count's profile stands in, scaled: a step's samples and
// power grow with the GPUs that share it, so joules per sample and the
// chosen cap do not change.
//
// Whole runs add what profiles cannot: the joules a sample costs at each
// batch size (`runs()`, RunCosts: measured per class, GPU model and batch
// size, modelled across them, with the uncertainty of each prediction). The
// batch sizer asks it for the batch sizes of a job on the GPUs it was placed
// on; `Predict` adds it for a batch size when asked.
//
// Not modelled: the batch size of a profile (a profile is measured at
// whatever batch the profiling job ran, and its cap choice stands for every
// batch size), and the uncertainty of a single profile.
//
// Threading: not thread-safe; owned by the scheduler and used under its lock.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "joule/v1/job.pb.h"
#include "scheduler/profiling/cap_choice.h"
#include "scheduler/run_costs.h"

namespace joule {

// One prediction: the cap the objective picks and what a sample costs there.
struct EnergyPrediction {
  CapDecision decision;
  // GPU joules per sample at the cap, and the same plus the attributed node
  // static power.
  double gpu_joules_per_sample = 0;
  double joules_per_sample = 0;
  double samples_per_second = 0;
  // The GPU count the profile was measured with (scaled from when it differs
  // from the request's).
  int measured_gpus = 0;
  // What whole runs measured at the batch size asked for (with its
  // uncertainty), when one was asked for and the class has runs.
  std::optional<RunCostEstimate> at_batch;
};

class EnergyModel {
 public:
  // The key of a job class's profile on a GPU model with a number of GPUs per
  // task: "<class>@<model>x<n>", with the separators kept out of the names.
  static std::string Key(const std::string& profile_class, const std::string& model, int gpus);

  // Stores a measured profile under Key(). An empty profile is ignored.
  void Put(const std::string& key, std::vector<CapPoint> profile);

  // The profile measured with exactly `gpus` GPUs, or nullptr.
  const std::vector<CapPoint>* Measured(const std::string& profile_class,
                                        const std::string& model, int gpus) const;

  // The profile for `gpus` GPUs: measured with that count, else the nearest
  // measured count's (in log scale; ties: the smaller), scaled. nullopt when
  // the class has no profile on the model. `measured_gpus` (optional) gets
  // the count it was measured with.
  std::optional<std::vector<CapPoint>> ForGpus(const std::string& profile_class,
                                               const std::string& model, int gpus,
                                               int* measured_gpus = nullptr) const;

  // The cap `objective` picks for `gpus` GPUs of `model` and its cost.
  // `static_w`: the node static power attributed to those GPUs, counted in
  // joules_per_sample always, and in the cap choice when `caps_count_static`.
  // With `batch_size` > 0, `at_batch` holds the runs' prediction for the
  // class `job_class` at that batch size.
  // NOT_FOUND without a profile; ChooseCap's errors otherwise.
  absl::StatusOr<EnergyPrediction> Predict(const std::string& profile_class,
                                           const std::string& model, int gpus,
                                           const v1::Objective& objective, double static_w,
                                           bool caps_count_static, absl::Time now,
                                           const std::string& job_class = "",
                                           int32_t batch_size = 0) const;

  // Profiles stored.
  size_t size() const { return profiles_.size(); }

  RunCosts& runs() { return runs_; }
  const RunCosts& runs() const { return runs_; }

 private:
  std::map<std::string, std::vector<CapPoint>> profiles_;
  RunCosts runs_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_ENERGY_MODEL_H_
