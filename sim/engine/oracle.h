// The oracle: a lower bound on energy. Each job runs alone, at once, at its
// minimum-energy configuration over every GPU model of the cluster, every
// measured power limit and every batch size it may use (the measured ones in
// its range plus the scheduler's candidates), with perfect knowledge of its
// epochs to target (the same seeded draws the simulated jobs use). Queueing
// and contention are ignored. A job's energy counts its GPUs and its GPUs'
// share of node static power, as in the simulated runs. Its cluster energy
// is on the always-on basis: every node's static power and every idle GPU's
// idle power up to its makespan, plus its jobs' GPU energy.
#ifndef JOULE_SIM_ENGINE_ORACLE_H_
#define JOULE_SIM_ENGINE_ORACLE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "common/device_catalog.h"
#include "sim/engine/work_model.h"
#include "sim/report/report.h"
#include "sim/trace/cluster_config.h"

namespace joule::sim {

// `catalog` gives the idle power of the cluster's GPU models.
absl::StatusOr<PolicyRun> ComputeOracle(const WorkModel& model, const ClusterConfig& cluster,
                                        const std::vector<SimJob>& jobs,
                                        const std::vector<GpuModelSpec>& catalog = GpuCatalog());

}  // namespace joule::sim

#endif  // JOULE_SIM_ENGINE_ORACLE_H_
