#ifndef JOULE_AGENT_KUBELET_TESTING_POD_RESOURCES_BUILDER_H_
#define JOULE_AGENT_KUBELET_TESTING_POD_RESOURCES_BUILDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "podresources/v1/api.pb.h"

namespace joule {

// Fluent builder for a kubelet List answer:
//   PodResourcesBuilder()
//       .Pod("team-a", "train-0").Container("main")
//       .Devices("nvidia.com/gpu", {"GPU-..."})
//       .Build();
// Container and Devices apply to the latest Pod and Container. Not
// thread-safe.
class PodResourcesBuilder {
 public:
  PodResourcesBuilder& Pod(const std::string& ns, const std::string& name) {
    pod_ = response_.add_pod_resources();
    pod_->set_namespace_(ns);
    pod_->set_name(name);
    container_ = nullptr;
    return *this;
  }
  PodResourcesBuilder& Container(const std::string& name) {
    container_ = pod_->add_containers();
    container_->set_name(name);
    return *this;
  }
  PodResourcesBuilder& Devices(const std::string& resource,
                               const std::vector<std::string>& ids) {
    ::v1::ContainerDevices* devices = container_->add_devices();
    devices->set_resource_name(resource);
    for (const std::string& id : ids) devices->add_device_ids(id);
    return *this;
  }
  PodResourcesBuilder& Cpus(const std::vector<int64_t>& ids) {
    for (int64_t id : ids) container_->add_cpu_ids(id);
    return *this;
  }
  ::v1::ListPodResourcesResponse Build() const { return response_; }

 private:
  ::v1::ListPodResourcesResponse response_;
  ::v1::PodResources* pod_ = nullptr;
  ::v1::ContainerResources* container_ = nullptr;
};

}  // namespace joule

#endif  // JOULE_AGENT_KUBELET_TESTING_POD_RESOURCES_BUILDER_H_
