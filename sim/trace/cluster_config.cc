#include "sim/trace/cluster_config.h"

#include <algorithm>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace joule::sim {
namespace {

// yaml-cpp marks are 0-based; messages use 1-based lines and columns.
absl::Status ErrorAt(const std::string& source, const YAML::Mark& mark,
                     absl::string_view field, absl::string_view message) {
  if (mark.is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", field, ": ", message));
  }
  return absl::InvalidArgumentError(absl::StrCat(source, ":", mark.line + 1,
                                                 ":", mark.column + 1, ": ",
                                                 field, ": ", message));
}

absl::Status CheckKeys(const std::string& source, const YAML::Node& map,
                       absl::string_view where,
                       const std::set<std::string>& allowed) {
  for (const auto& kv : map) {
    const std::string key = kv.first.Scalar();
    if (allowed.count(key) == 0) {
      return ErrorAt(source, kv.first.Mark(), absl::StrCat(where, key),
                     "unknown key");
    }
  }
  return absl::OkStatus();
}

// Returns the child `key` of `map`, or an error at the map's mark.
absl::StatusOr<YAML::Node> Required(const std::string& source,
                                    const YAML::Node& map, const char* key,
                                    absl::string_view field) {
  YAML::Node child = map[key];
  if (!child.IsDefined() || child.IsNull()) {
    return ErrorAt(source, map.Mark(), field, "required field is missing");
  }
  return child;
}

absl::StatusOr<std::string> ScalarString(const std::string& source,
                                         const YAML::Node& node,
                                         absl::string_view field) {
  if (!node.IsScalar() || node.Scalar().empty()) {
    return ErrorAt(source, node.Mark(), field, "expected a non-empty string");
  }
  return node.Scalar();
}

template <typename T>
absl::StatusOr<T> ScalarAs(const std::string& source, const YAML::Node& node,
                           absl::string_view field, absl::string_view what) {
  if (!node.IsScalar()) {
    return ErrorAt(source, node.Mark(), field, absl::StrCat("expected ", what));
  }
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    return ErrorAt(
        source, node.Mark(), field,
        absl::StrCat("expected ", what, ", got '", node.Scalar(), "'"));
  }
}

absl::StatusOr<NodeType> ParseNodeType(const std::string& source,
                                       const YAML::Node& node, size_t index) {
  const std::string prefix = absl::StrCat("node_types[", index, "].");
  if (!node.IsMap()) {
    return ErrorAt(source, node.Mark(), absl::StrCat("node_types[", index, "]"),
                   "expected a mapping");
  }
  absl::Status keys = CheckKeys(
      source, node, prefix,
      {"name", "gpu_model", "gpus_per_node", "static_power_w", "count"});
  if (!keys.ok()) return keys;

  NodeType type;
  absl::StatusOr<YAML::Node> field;

  field = Required(source, node, "name", prefix + "name");
  if (!field.ok()) return field.status();
  absl::StatusOr<std::string> name =
      ScalarString(source, *field, prefix + "name");
  if (!name.ok()) return name.status();
  type.name = *name;

  field = Required(source, node, "gpu_model", prefix + "gpu_model");
  if (!field.ok()) return field.status();
  absl::StatusOr<std::string> model =
      ScalarString(source, *field, prefix + "gpu_model");
  if (!model.ok()) return model.status();
  const bool valid_name =
      !model->empty() && model->size() <= 64 &&
      std::all_of(model->begin(), model->end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
               c == '-';
      });
  if (!valid_name) {
    return ErrorAt(source, field->Mark(), prefix + "gpu_model",
                   absl::StrCat("'", *model,
                                "' is not a GPU model name (1-64 of A-Z a-z 0-9 . _ -)"));
  }
  type.gpu_model = *model;

  field = Required(source, node, "gpus_per_node", prefix + "gpus_per_node");
  if (!field.ok()) return field.status();
  absl::StatusOr<int32_t> gpus =
      ScalarAs<int32_t>(source, *field, prefix + "gpus_per_node", "an integer");
  if (!gpus.ok()) return gpus.status();
  if (*gpus < 1) {
    return ErrorAt(source, field->Mark(), prefix + "gpus_per_node",
                   "must be >= 1");
  }
  type.gpus_per_node = *gpus;

  field = Required(source, node, "static_power_w", prefix + "static_power_w");
  if (!field.ok()) return field.status();
  absl::StatusOr<double> power =
      ScalarAs<double>(source, *field, prefix + "static_power_w", "a number");
  if (!power.ok()) return power.status();
  if (!std::isfinite(*power) || *power < 0) {
    return ErrorAt(source, field->Mark(), prefix + "static_power_w",
                   "must be a finite number >= 0");
  }
  type.static_power_w = *power;

  field = Required(source, node, "count", prefix + "count");
  if (!field.ok()) return field.status();
  absl::StatusOr<int32_t> count =
      ScalarAs<int32_t>(source, *field, prefix + "count", "an integer");
  if (!count.ok()) return count.status();
  if (*count < 1) {
    return ErrorAt(source, field->Mark(), prefix + "count", "must be >= 1");
  }
  type.count = *count;
  return type;
}

absl::StatusOr<ClusterConfig> ParseRoot(const std::string& source,
                                        const YAML::Node& root) {
  if (!root.IsMap()) {
    return ErrorAt(source, root.Mark(), "<root>",
                   "expected a mapping with 'name' and 'node_types'");
  }
  absl::Status keys = CheckKeys(source, root, "", {"name", "node_types"});
  if (!keys.ok()) return keys;

  ClusterConfig config;
  absl::StatusOr<YAML::Node> name = Required(source, root, "name", "name");
  if (!name.ok()) return name.status();
  absl::StatusOr<std::string> name_str = ScalarString(source, *name, "name");
  if (!name_str.ok()) return name_str.status();
  config.name = *name_str;

  absl::StatusOr<YAML::Node> types =
      Required(source, root, "node_types", "node_types");
  if (!types.ok()) return types.status();
  if (!types->IsSequence() || types->size() == 0) {
    return ErrorAt(source, types->Mark(), "node_types",
                   "expected a non-empty sequence");
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < types->size(); ++i) {
    const YAML::Node entry = (*types)[i];
    absl::StatusOr<NodeType> type = ParseNodeType(source, entry, i);
    if (!type.ok()) return type.status();
    if (!seen.insert(type->name).second) {
      return ErrorAt(source, entry.Mark(),
                     absl::StrCat("node_types[", i, "].name"),
                     absl::StrCat("duplicate node type '", type->name, "'"));
    }
    config.node_types.push_back(std::move(*type));
  }
  return config;
}

}  // namespace


int ClusterConfig::TotalGpus() const {
  int total = 0;
  for (const NodeType& type : node_types) {
    total += type.gpus_per_node * type.count;
  }
  return total;
}

absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& yaml,
                                                 const std::string& source) {
  try {
    const YAML::Node root = YAML::Load(yaml);
    return ParseRoot(source, root);
  } catch (const YAML::Exception& e) {
    return ErrorAt(source, e.mark, "<yaml>", e.msg);
  }
}

absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open cluster config"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseClusterConfig(buffer.str(), path);
}

}  // namespace joule::sim
