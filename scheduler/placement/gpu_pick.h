#ifndef JOULE_SCHEDULER_PLACEMENT_GPU_PICK_H_
#define JOULE_SCHEDULER_PLACEMENT_GPU_PICK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "scheduler/placement/cluster.h"
#include "scheduler/placement/framework.h"

namespace joule {

// The usable GPUs a replica of `request` would get on `node`: those of the
// models energy routing chose first (on a node with several models), then
// the coolest, then by index; at most request.gpus, returned in index order.
// Fewer than request.gpus when the node lacks them.
PickedGpus PickGpus(const PlacementRequest& request, const NodeView& node);

// "GPUs", or "V100 GPUs" for a request that names a model.
std::string GpuNoun(const PlacementRequest& request);

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_GPU_PICK_H_
