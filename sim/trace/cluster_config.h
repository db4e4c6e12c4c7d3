// Simulated cluster shapes, read from YAML files such as sim/clusters/*.yaml.
//
// Format:
//   name: mixed                 # required, non-empty
//   node_types:                 # required, non-empty sequence
//     - name: v100-8x           # required, unique within the file
//       gpu_model: V100         # a model of the GPU catalog (built in, or
//                               # joule-sim --gpu-catalog) with measured
//                               # power tables: 1-64 of [A-Za-z0-9._-]
//       gpus_per_node: 8        # integer >= 1
//       static_power_w: 300     # GPU-independent node power (CPUs, memory,
//                               # fans, PSU losses), number >= 0
//       count: 50               # number of such nodes, integer >= 1
// Unknown keys are refused so that typos do not silently fall back to
// defaults. Every error is INVALID_ARGUMENT naming the file, the 1-based line
// and column from yaml-cpp's Mark, and the field; yaml-cpp exceptions never
// escape.
#ifndef JOULE_SIM_TRACE_CLUSTER_CONFIG_H_
#define JOULE_SIM_TRACE_CLUSTER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule::sim {

struct NodeType {
  std::string name;
  // As the catalog names it, e.g. "V100".
  std::string gpu_model;
  int32_t gpus_per_node = 0;
  double static_power_w = 0;
  int32_t count = 0;
};

struct ClusterConfig {
  std::string name;
  std::vector<NodeType> node_types;

  // Sum over node types of gpus_per_node x count.
  int TotalGpus() const;
};

// Loads and validates a cluster config. NOT_FOUND if the file cannot be read;
// INVALID_ARGUMENT for bad YAML or bad fields.
absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path);

// Same, from YAML text; `source` names the input in error messages.
absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& yaml,
                                                 const std::string& source);

}  // namespace joule::sim

#endif  // JOULE_SIM_TRACE_CLUSTER_CONFIG_H_
