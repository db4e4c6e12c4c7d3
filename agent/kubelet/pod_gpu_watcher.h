#ifndef JOULE_AGENT_KUBELET_POD_GPU_WATCHER_H_
#define JOULE_AGENT_KUBELET_POD_GPU_WATCHER_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "agent/kubelet/pod_resources.h"
#include "common/clock.h"
#include "joule/v1/node.pb.h"

namespace joule {

// Keeps the agent's view of the GPUs Kubernetes pods hold (pods Joule did
// not start, which got GPUs from the NVIDIA device plugin) current, so that
// their energy is theirs and the scheduler places no task on those GPUs.
//
// Every `period`:
//  1. Lists the kubelet's PodResources (a gRPC call of up to the client's
//     timeout) with no agent lock held; the agent is touched only to hand
//     over the result.
//  2. Maps the GPU devices to this node's GPUs (MapGpuHolders) and gives
//     the agent the holders (Agent::SetGpuHolders).
//  3. Reports the "kubelet" source: OK; or degraded with a message naming
//     device ids that match no GPU and GPUs held by several containers (the
//     rest of the answer is used); or degraded by a failed List, which keeps
//     the last known holders (a GPU a pod held a moment ago is not taken as
//     free because the kubelet is restarting).
//
// Not thread-safe: owned by one polling thread.
class PodGpuWatcher {
 public:
  // The source name in Register, telemetry and metrics.
  static constexpr char kSource[] = "kubelet";

  // `client` and `agent` must outlive the watcher. `devices`: the node's
  // devices as the agent describes them (MakeRegister); GPUs are matched by
  // uuid and index.
  PodGpuWatcher(const PodResourcesClient* client, std::vector<v1::Device> devices,
                Agent* agent, const Clock* clock, absl::Duration period);

  // Lists when `period` has passed since the last list (the first call
  // always lists). Returns whether it listed.
  bool PollIfDue();

  // Lists now. Returns what it reported for the source: OK, the List
  // error, or GpuHolders::Problems().
  absl::Status Poll();

 private:
  const PodResourcesClient* const client_;
  const std::vector<v1::Device> devices_;
  Agent* const agent_;
  const Clock* const clock_;
  const absl::Duration period_;
  absl::Time next_poll_ = absl::InfinitePast();
};

}  // namespace joule

#endif  // JOULE_AGENT_KUBELET_POD_GPU_WATCHER_H_
