#include "scheduler/node_registry.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/node_name.h"
#include "common/proto_time.h"

namespace joule {
namespace {

// Whether two samples differ in which GPUs pods hold. Runs on every
// telemetry report: allocation-free unless some GPU is held.
bool PodHoldsChanged(const v1::NodeSample& before, const v1::NodeSample& after) {
  auto any_held = [](const v1::NodeSample& sample) {
    for (const v1::DeviceSample& device : sample.devices()) {
      if (device.kind() == v1::DEVICE_KIND_GPU && device.has_held_by()) return true;
    }
    return false;
  };
  if (!any_held(before) && !any_held(after)) return false;
  return PodHeldGpus(before) != PodHeldGpus(after);
}

}  // namespace

absl::Status ValidateRegister(const v1::Register& message) {
  const v1::NodeInfo& node = message.node();
  if (absl::Status name = ValidateNodeName(node.name()); !name.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("register.node.name: ", name.message()));
  }
  const std::pair<const char*, bool> amounts[] = {{"cpus", node.cpus() >= 0},
                                                  {"memory_bytes", node.memory_bytes() >= 0},
                                                  {"static_power_w", node.static_power_w() >= 0}};
  for (const auto& [field, ok] : amounts) {
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "register.node.", field, ": must be a number >= 0 (node ", node.name(), ")"));
    }
  }
  std::set<std::pair<int, int>> seen;
  for (const v1::Device& device : node.devices()) {
    if (device.index() < 0 || !seen.insert({device.kind(), device.index()}).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("register.node.devices: duplicate or negative index %d (node %s)",
                          device.index(), node.name()));
    }
    if (!(device.power_limit_min_w() >= 0) ||
        !(device.power_limit_max_w() >= device.power_limit_min_w()) ||
        !(device.idle_power_w() >= 0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "register.node.devices[%d]: power limits must satisfy 0 <= min <= max and idle power "
          "must be >= 0 (node %s)",
          device.index(), node.name()));
    }
  }
  return absl::OkStatus();
}

std::map<int32_t, std::string> PodHeldGpus(const v1::NodeSample& sample) {
  std::map<int32_t, std::string> held;
  for (const v1::DeviceSample& device : sample.devices()) {
    if (device.kind() != v1::DEVICE_KIND_GPU || !device.has_held_by()) continue;
    held[device.index()] =
        absl::StrCat(device.held_by().namespace_(), "/", device.held_by().pod());
  }
  return held;
}

NodeRecord& NodeRegistry::Register(AgentLink* link, const v1::NodeInfo& info, absl::Time now,
                                   AgentLink** replaced) {
  NodeRecord& node = nodes_[info.name()];
  *replaced = nullptr;
  if (node.link != nullptr && node.link != link) {
    *replaced = node.link;
    by_link_.erase(node.link);
  }
  node.info = info;
  node.throttle_temp_c.clear();
  for (const v1::Device& device : node.info.devices()) {
    if (device.kind() != v1::DEVICE_KIND_GPU) continue;
    if (auto spec = FindGpuModel(*catalog_, device.model())) {
      node.throttle_temp_c[device.index()] = spec->throttle_temp_c;
    }
  }
  node.link = link;
  by_link_[link] = &node;
  node.ready = true;
  node.message = "";
  node.last_seen = now;
  // Telemetry is expected from now on; its age counts from here (a
  // re-registering agent is as fresh as a new one).
  node.last_telemetry = now;
  return node;
}

NodeRecord* NodeRegistry::FindByLink(AgentLink* link) {
  auto it = by_link_.find(link);
  if (it == by_link_.end()) return nullptr;
  return it->second->link != link ? nullptr : it->second;
}

NodeRecord* NodeRegistry::Disconnect(AgentLink* link) {
  NodeRecord* node = FindByLink(link);
  by_link_.erase(link);
  if (node != nullptr) node->link = nullptr;
  return node;
}

NodeRecord* NodeRegistry::Find(absl::string_view name) {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : &it->second;
}

const NodeRecord* NodeRegistry::Find(absl::string_view name) const {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : &it->second;
}

NodeRecord& NodeRegistry::Remember(const std::string& name) {
  NodeRecord& node = nodes_[name];
  node.info.set_name(name);
  return node;
}

bool NodeRegistry::Heard(NodeRecord& node, absl::Time now) {
  node.last_seen = now;
  if (node.ready) return false;
  node.ready = true;
  node.message = "";
  return true;
}

bool NodeRegistry::TakeTelemetry(NodeRecord& node, const v1::NodeSample& sample,
                                 absl::Duration freshness) {
  // A pod that let go of a GPU frees it for the next cycle.
  bool changed = PodHoldsChanged(node.last_sample, sample);
  node.last_sample = sample;
  // A node whose readings had gone stale is placeable again.
  changed |= node.last_seen - node.last_telemetry > freshness;
  node.last_telemetry = node.last_seen;
  if (sample.sources_size() > 0) *node.info.mutable_sources() = sample.sources();
  return changed;
}

std::vector<NodeRecord*> NodeRegistry::Silent(absl::Time now, absl::Duration timeout) {
  std::vector<NodeRecord*> silent;
  for (auto& [name, node] : nodes_) {
    // A node with tasks whose stream is closed has its silence counted too:
    // its tasks are lost once it exceeds the timeout. A connected node that
    // is already down waits for its next message.
    if (!node.ready && (node.task_ids.empty() || node.link != nullptr)) continue;
    if (now - node.last_seen > timeout) silent.push_back(&node);
  }
  return silent;
}

void NodeRegistry::Allocate(const std::string& name, const std::string& task_id,
                            const std::vector<int32_t>& gpus, double cpus,
                            int64_t memory_bytes) {
  NodeRecord& node = nodes_[name];
  node.task_ids.insert(task_id);
  for (int32_t gpu : gpus) node.used_gpus.insert(gpu);
  node.used_cpus += cpus;
  node.used_memory_bytes += memory_bytes;
}

NodeRecord* NodeRegistry::Release(const std::string& name, const std::string& task_id,
                                  const std::vector<int32_t>& gpus, double cpus,
                                  int64_t memory_bytes) {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || !it->second.task_ids.erase(task_id)) return nullptr;
  NodeRecord& node = it->second;
  for (int32_t gpu : gpus) node.used_gpus.erase(gpu);
  node.used_cpus = std::max(0.0, node.used_cpus - cpus);
  node.used_memory_bytes = std::max<int64_t>(0, node.used_memory_bytes - memory_bytes);
  return &node;
}

absl::StatusOr<int32_t> NodeRegistry::PickPort(const std::string& name) {
  NodeRecord* node = Find(name);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("node ", name, " not found"));
  const int32_t low = node->info.task_port_min();
  const int32_t high = node->info.task_port_max();
  if (low <= 0 || high < low) return 0;
  const int64_t span = static_cast<int64_t>(high) - low + 1;
  int32_t& next = next_port_[name];
  const int32_t start = next >= low && next <= high ? next : low;
  for (int64_t i = 0; i < span; ++i) {
    const int32_t port = static_cast<int32_t>(low + (start - low + i) % span);
    if (node->used_ports.count(port) > 0) continue;
    next = port == high ? low : port + 1;
    return port;
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "node %s: every rendezvous port in %d-%d is held by a running gang", name, low, high));
}

void NodeRegistry::HoldPort(const std::string& name, int32_t port) {
  nodes_[name].used_ports.insert(port);
}

void NodeRegistry::PortUsedBefore(const std::string& name, int32_t port) {
  int32_t& next = next_port_[name];
  next = std::max(next, port + 1);
}

void NodeRegistry::ReleasePort(const std::string& name, int32_t port) {
  if (NodeRecord* node = Find(name); node != nullptr) node->used_ports.erase(port);
}

bool NodeRegistry::Reachable(absl::string_view name) const {
  const NodeRecord* node = Find(name);
  return node != nullptr && node->link != nullptr;
}

bool NodeRegistry::Send(absl::string_view name, const v1::SchedulerCommand& command) const {
  const NodeRecord* node = Find(name);
  if (node == nullptr || node->link == nullptr) return false;
  node->link->Send(command);
  return true;
}

const v1::Device* NodeRegistry::GpuAt(absl::string_view name, int32_t index) const {
  const NodeRecord* node = Find(name);
  if (node == nullptr) return nullptr;
  for (const v1::Device& device : node->info.devices()) {
    if (device.kind() == v1::DEVICE_KIND_GPU && device.index() == index) return &device;
  }
  return nullptr;
}

double NodeRegistry::StaticShareW(absl::string_view name, int gpus) const {
  const NodeRecord* node = Find(name);
  if (node == nullptr) return 0;
  int node_gpus = 0;
  for (const v1::Device& device : node->info.devices()) {
    if (device.kind() == v1::DEVICE_KIND_GPU) ++node_gpus;
  }
  return node_gpus > 0 ? node->info.static_power_w() * gpus / node_gpus : 0;
}

v1::Node NodeRegistry::ToProto(const NodeRecord& node, bool suspended) {
  v1::Node out;
  *out.mutable_info() = node.info;
  // A node whose stream is closed cannot take work: DOWN, with the message
  // saying it is waiting for the agent, until it reconnects or times out.
  if (suspended) {
    out.set_state(v1::NODE_STATE_SUSPENDED);
  } else {
    out.set_state(node.connected() ? v1::NODE_STATE_READY : v1::NODE_STATE_DOWN);
  }
  out.set_message(node.message);
  if (node.last_seen != absl::Time()) *out.mutable_last_seen() = ToProtoTime(node.last_seen);
  *out.mutable_last_sample() = node.last_sample;
  for (const std::string& id : node.task_ids) out.add_task_ids(id);
  int gpus = 0;
  const std::map<int32_t, std::string> held = PodHeldGpus(node.last_sample);
  for (const v1::Device& device : node.info.devices()) {
    gpus += device.kind() == v1::DEVICE_KIND_GPU && !node.used_gpus.count(device.index()) &&
            !held.count(device.index());
  }
  out.set_free_gpus(gpus);
  out.set_free_cpus(node.info.cpus() - node.used_cpus);
  out.set_free_memory_bytes(node.info.memory_bytes() - node.used_memory_bytes);
  return out;
}

NodeView NodeRegistry::View(const NodeRecord& node, double thermal_margin_c) const {
  // Runs once per placement cycle over every node: no map built per node,
  // one pass over the last sample.
  NodeView view;
  view.name = node.info.name();
  view.ready = node.connected();
  view.last_telemetry = node.last_telemetry;
  view.total_cpus = node.info.cpus();
  view.free_cpus = node.info.cpus() - node.used_cpus;
  view.total_memory_bytes = node.info.memory_bytes();
  view.free_memory_bytes = node.info.memory_bytes() - node.used_memory_bytes;
  view.static_power_w = node.info.static_power_w();
  view.running_tasks = static_cast<int>(node.task_ids.size());
  samples_.clear();
  for (const v1::DeviceSample& sample : node.last_sample.devices()) {
    if (sample.kind() != v1::DEVICE_KIND_GPU || sample.index() < 0 || sample.index() > 1024) {
      continue;
    }
    if (samples_.size() <= static_cast<size_t>(sample.index())) {
      samples_.resize(sample.index() + 1, nullptr);
    }
    samples_[sample.index()] = &sample;
  }
  view.gpus.reserve(node.info.devices_size());
  for (const v1::Device& device : node.info.devices()) {
    if (device.kind() != v1::DEVICE_KIND_GPU) continue;
    GpuView& gpu = view.gpus.emplace_back();
    gpu.index = device.index();
    gpu.model = device.model();
    gpu.free = !node.used_gpus.count(device.index());
    gpu.idle_power_w = device.idle_power_w();
    gpu.power_limit_default_w = device.power_limit_default_w();
    if (!node.throttle_temp_c.empty()) {
      auto throttle = node.throttle_temp_c.find(device.index());
      if (throttle != node.throttle_temp_c.end()) gpu.throttle_temp_c = throttle->second;
    }
    const v1::DeviceSample* sample =
        device.index() >= 0 && static_cast<size_t>(device.index()) < samples_.size()
            ? samples_[device.index()]
            : nullptr;
    if (sample != nullptr) {
      gpu.temp_c = sample->temp_c();
      // Not Joule's to place on while a pod holds it.
      if (sample->has_held_by()) {
        gpu.held_by = absl::StrCat(sample->held_by().namespace_(), "/", sample->held_by().pod());
        gpu.free = false;
      }
    }
    gpu.hot = gpu.temp_c >= gpu.throttle_temp_c - thermal_margin_c;
  }
  return view;
}

}  // namespace joule
