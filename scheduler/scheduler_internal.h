#ifndef JOULE_SCHEDULER_SCHEDULER_INTERNAL_H_
#define JOULE_SCHEDULER_SCHEDULER_INTERNAL_H_

// Helpers shared by the scheduler core's two files: scheduler.cc (jobs,
// nodes, the task life cycle) and energy_brain.cc (caps, batch sizes,
// shards, thermals, budgets, early stop). Not for use outside the core.

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "joule/v1/job.pb.h"
#include "scheduler/energy_model.h"
#include "spec/job_validation.h"

namespace joule {
namespace internal {

inline constexpr char kProfileKeyPrefix[] = "profiles/";
inline constexpr char kBanditKeyPrefix[] = "bandits/";
// What whole runs of a job class measured (RunCosts), per job class.
inline constexpr char kRunCostKeyPrefix[] = "runcosts/";
// The model name run costs of attempts without GPUs are kept under.
inline constexpr char kNoGpuModel[] = "(no GPU)";
// Nodes suspended by idle power management, with their NodeInfo, so that a
// restarted scheduler still knows them (and can wake them).
inline constexpr char kSuspendedKeyPrefix[] = "suspended/";

inline bool IsActive(v1::TaskState state) {
  return state == v1::TASK_STATE_STARTING || state == v1::TASK_STATE_RUNNING;
}

// The profile of a job class on a GPU model with a number of GPUs per task:
// "<class>@<model>x<n>", with the separators kept out of the names.
inline std::string ProfileKey(const std::string& job_class, const std::string& model, int gpus) {
  return EnergyModel::Key(job_class, model, gpus);
}

// The label that names the class whose power profiles a job shares, when
// that is wider than its job class (e.g. recurrences of one model whose
// sizes differ: one power curve, separate batch-size bandits).
inline constexpr char kProfileClassLabel[] = "joule.dev/profile-class";

// The class a job's power profiles are kept under: the label, else the job
// class.
inline const std::string& ProfileClass(const v1::JobSpec& spec) {
  auto it = spec.labels().find(kProfileClassLabel);
  return it != spec.labels().end() && !it->second.empty() ? it->second : spec.job_class();
}

// The objective the cap is chosen for. A deadline needs the job's total
// work, which a task does not declare: until the energy brain estimates it,
// such jobs get the default slowdown limit, and the decision says so.
inline v1::Objective CapObjective(const v1::JobSpec& spec, std::string* note) {
  v1::Objective objective = spec.objective();
  if (objective.has_deadline()) {
    objective.set_max_slowdown(kDefaultMaxSlowdown);
    *note = absl::StrFormat(
        "; deadline objective: total work unknown, so at most %.2fx the fastest time",
        kDefaultMaxSlowdown);
  }
  return objective;
}

}  // namespace internal
}  // namespace joule

#endif  // JOULE_SCHEDULER_SCHEDULER_INTERNAL_H_
