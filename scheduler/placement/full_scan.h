#ifndef JOULE_SCHEDULER_PLACEMENT_FULL_SCAN_H_
#define JOULE_SCHEDULER_PLACEMENT_FULL_SCAN_H_

#include <vector>

#include "scheduler/placement/cluster.h"
#include "scheduler/placement/framework.h"
#include "scheduler/placement/pipeline.h"

namespace joule {

// The naive placement the pipeline must agree with when it does not sample:
// for each replica, every filter of `pipeline` on every node, every scorer
// on every feasible node, the highest weighted total (ties: name order);
// no PreFilter, no index, no early stop. Works on its own copy of
// `snapshot`. Empty when some replica fits nowhere. For the equivalence test
// and as the placement benchmark's baseline.
//
// Thread-compatible.
std::vector<ReplicaPlacement> NaiveFullScan(const PlacementPipeline& pipeline,
                                            const PlacementRequest& request,
                                            ClusterSnapshot snapshot);

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_FULL_SCAN_H_
