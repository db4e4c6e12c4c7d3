#include "agent/kubelet/pod_gpu_watcher.h"

#include <utility>

#include "absl/status/statusor.h"

namespace joule {

PodGpuWatcher::PodGpuWatcher(const PodResourcesClient* client,
                             std::vector<v1::Device> devices, Agent* agent,
                             const Clock* clock, absl::Duration period)
    : client_(client),
      devices_(std::move(devices)),
      agent_(agent),
      clock_(clock),
      period_(period) {}

bool PodGpuWatcher::PollIfDue() {
  const absl::Time now = clock_->Now();
  if (now < next_poll_) return false;
  next_poll_ = now + period_;
  Poll().IgnoreError();  // Reported through the source.
  return true;
}

absl::Status PodGpuWatcher::Poll() {
  absl::StatusOr<::v1::ListPodResourcesResponse> response = client_->List();
  if (!response.ok()) {
    agent_->SourceError(kSource, response.status());
    return response.status();
  }
  GpuHolders holders = MapGpuHolders(*response, devices_);
  absl::Status problems = holders.Problems();
  agent_->SetGpuHolders(std::move(holders.by_gpu));
  if (problems.ok()) {
    agent_->SourceOk(kSource);
  } else {
    agent_->SourceError(kSource, problems);
  }
  return problems;
}

}  // namespace joule
