#include "scheduler/placement/cluster.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace joule {
namespace {

// The distinct GPU models of a node, in first-seen order (nodes have one or
// two).
absl::InlinedVector<const std::string*, 2> ModelsOf(const NodeView& node) {
  absl::InlinedVector<const std::string*, 2> models;
  for (const GpuView& gpu : node.gpus) {
    if (std::none_of(models.begin(), models.end(),
                     [&gpu](const std::string* m) { return *m == gpu.model; })) {
      models.push_back(&gpu.model);
    }
  }
  return models;
}

// Counts the node's usable GPUs afresh, for its cache.
int CountUsable(const NodeView& node) {
  int n = 0;
  for (const GpuView& gpu : node.gpus) n += Usable(gpu);
  return n;
}

}  // namespace

int NodeView::FreeGpus(const std::string& model) const {
  if (usable_gpus >= 0 && (model.empty() || (one_model && !gpus.empty()))) {
    return model.empty() || gpus.front().model == model ? usable_gpus : 0;
  }
  int n = 0;
  for (const GpuView& gpu : gpus) n += Usable(gpu) && ModelMatches(model, gpu);
  return n;
}

int NodeView::TotalGpus(const std::string& model) const {
  if (model.empty()) return static_cast<int>(gpus.size());
  int n = 0;
  for (const GpuView& gpu : gpus) n += ModelMatches(model, gpu);
  return n;
}

ClusterSnapshot::ClusterSnapshot(const ClusterSnapshot& other)
    : now(other.now), nodes(other.nodes) {
  if (other.indexed_) Index();
}

ClusterSnapshot& ClusterSnapshot::operator=(const ClusterSnapshot& other) {
  if (this == &other) return *this;
  now = other.now;
  nodes = other.nodes;
  models_.clear();
  node_models_.clear();
  by_name_.clear();
  indexed_ = false;
  if (other.indexed_) Index();
  return *this;
}

void ClusterSnapshot::Index() {
  indexed_ = true;
  static const std::string* const kAny = new std::string();
  models_.clear();
  node_models_.assign(nodes.size(), {});
  by_name_.clear();
  by_name_.reserve(nodes.size());
  most_cpus_ = 0;
  most_memory_bytes_ = 0;
  ModelIndex& any = models_[""];
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    NodeView& node = nodes[i];
    node.usable_gpus = CountUsable(node);
    const absl::InlinedVector<const std::string*, 2> models = ModelsOf(node);
    node.one_model = models.size() <= 1;
    by_name_[node.name] = i;
    most_cpus_ = std::max(most_cpus_, node.total_cpus);
    most_memory_bytes_ = std::max(most_memory_bytes_, node.total_memory_bytes);
    any.most_per_node = std::max(any.most_per_node, static_cast<int>(node.gpus.size()));
    if (!node.gpus.empty()) node_models_[i].push_back({kAny, &any});
    for (const std::string* model : models) {
      ModelIndex& index = models_[*model];
      index.most_per_node = std::max(index.most_per_node, node.TotalGpus(*model));
      node_models_[i].push_back({model, &index});
    }
  }
  for (auto& [name, index] : models_) {
    index.by_free.resize(index.most_per_node + 1);
    index.by_total.assign(index.most_per_node + 1, 0);
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    const NodeView& node = nodes[i];
    if (node.gpus.empty()) continue;
    ++any.by_total[node.gpus.size()];
    for (const GpuView& gpu : node.gpus) {
      for (ModelIndex* index : {&any, &models_[gpu.model]}) {
        index->hot += gpu.free && gpu.hot;
        index->held += !gpu.held_by.empty();
        if (!gpu.held_by.empty() && index->held_example.empty()) {
          index->held_example = absl::StrCat(node.name, " GPU ", gpu.index, " by ", gpu.held_by);
        }
      }
    }
    for (size_t m = 1; m < node_models_[i].size(); ++m) {
      const NodeModel& model = node_models_[i][m];
      ++model.index->by_total[node.TotalGpus(*model.model)];
    }
  }
  // In node order, so each insertion lands at the end of its bucket.
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    for (const NodeModel& model : node_models_[i]) {
      absl::btree_set<int>& bucket = model.index->by_free[nodes[i].FreeGpus(*model.model)];
      bucket.insert(bucket.end(), i);
    }
  }
}

void ClusterSnapshot::Count(int node_index, int sign) {
  const NodeView& node = nodes[node_index];
  for (const NodeModel& model : node_models_[node_index]) {
    absl::btree_set<int>& bucket = model.index->by_free[node.FreeGpus(*model.model)];
    if (sign > 0) {
      bucket.insert(node_index);
    } else {
      bucket.erase(node_index);
    }
  }
}

int64_t ClusterSnapshot::ModelIndex::NodesWithFree(int gpus) const {
  int64_t n = 0;
  for (int k = std::max(gpus, 0); k < static_cast<int>(by_free.size()); ++k) n += by_free[k].size();
  return n;
}

int64_t ClusterSnapshot::ModelIndex::NodesWithTotal(int gpus) const {
  int64_t n = 0;
  for (int k = std::max(gpus, 0); k < static_cast<int>(by_total.size()); ++k) n += by_total[k];
  return n;
}

int ClusterSnapshot::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

const ClusterSnapshot::ModelIndex* ClusterSnapshot::model(const std::string& name) const {
  auto it = models_.find(name);
  return it == models_.end() ? nullptr : &it->second;
}

int ClusterSnapshot::MostFreeOnOneNode(const std::string& model) const {
  const ModelIndex* index = this->model(model);
  if (index == nullptr) return 0;
  for (int k = static_cast<int>(index->by_free.size()) - 1; k > 0; --k) {
    if (!index->by_free[k].empty()) return k;
  }
  return 0;
}

void ClusterSnapshot::Reserve(int node_index, const std::vector<int32_t>& gpu_indices,
                              double cpus, int64_t memory_bytes) {
  NodeView& node = nodes[node_index];
  Count(node_index, -1);
  for (GpuView& gpu : node.gpus) {
    if (std::find(gpu_indices.begin(), gpu_indices.end(), gpu.index) != gpu_indices.end()) {
      gpu.free = false;
    }
  }
  node.usable_gpus = CountUsable(node);
  Count(node_index, +1);
  node.free_cpus -= cpus;
  node.free_memory_bytes -= memory_bytes;
  ++node.running_tasks;
}

void ClusterSnapshot::Unreserve(int node_index, const std::vector<int32_t>& gpu_indices,
                                double cpus, int64_t memory_bytes) {
  NodeView& node = nodes[node_index];
  Count(node_index, -1);
  for (GpuView& gpu : node.gpus) {
    if (std::find(gpu_indices.begin(), gpu_indices.end(), gpu.index) != gpu_indices.end()) {
      gpu.free = true;
    }
  }
  node.usable_gpus = CountUsable(node);
  Count(node_index, +1);
  node.free_cpus += cpus;
  node.free_memory_bytes += memory_bytes;
  --node.running_tasks;
}

}  // namespace joule
