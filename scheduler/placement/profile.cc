#include "scheduler/placement/profile.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/yaml_errors.h"
#include "scheduler/placement/plugin_registry.h"
#include "scheduler/placement/plugins/awake.h"
#include "scheduler/placement/plugins/consolidation.h"
#include "scheduler/placement/plugins/energy_efficiency.h"
#include "scheduler/placement/plugins/energy_routing.h"
#include "scheduler/placement/plugins/free_resources.h"
#include "scheduler/placement/plugins/gpu_fit.h"
#include "scheduler/placement/plugins/gpu_model.h"
#include "scheduler/placement/plugins/node_ready.h"
#include "scheduler/placement/plugins/telemetry_fresh.h"
#include "scheduler/placement/plugins/thermal_headroom.h"

namespace joule {
namespace {

constexpr int kMaxTopCandidates = 100;

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// One `profiles:` entry.
absl::StatusOr<PlacementProfile> ParseProfile(const YamlErrors& errors, const YAML::Node& node,
                                              const std::string& prefix) {
  if (!node.IsMap()) return errors.At(node, prefix, "expected a mapping");
  absl::Status keys = errors.CheckKeys(
      node, absl::StrCat(prefix, "."),
      {"name", "filters", "scorers", "percentage_of_nodes_to_score",
       "min_feasible_nodes_to_score", "explain_top_candidates"});
  if (!keys.ok()) return keys;
  PlacementProfile profile;
  const YAML::Node name = node["name"];
  if (!name.IsDefined()) return errors.At(node, absl::StrCat(prefix, ".name"), "required");
  absl::StatusOr<std::string> parsed_name = errors.NonEmptyString(name, absl::StrCat(prefix, ".name"));
  if (!parsed_name.ok()) return parsed_name.status();
  profile.name = *parsed_name;
  const std::string where = absl::StrCat("profiles.", profile.name);

  const YAML::Node filters = node["filters"];
  if (!filters.IsDefined() || !filters.IsSequence()) {
    return errors.At(filters.IsDefined() ? filters : node, absl::StrCat(where, ".filters"),
                     "required: a list of filter plugin names");
  }
  for (size_t i = 0; i < filters.size(); ++i) {
    const std::string field = absl::StrCat(where, ".filters[", i, "]");
    absl::StatusOr<std::string> filter = errors.NonEmptyString(filters[i], field);
    if (!filter.ok()) return filter.status();
    if (!Contains(FilterPluginNames(), *filter)) {
      return errors.At(filters[i], field,
                       absl::StrCat("unknown filter plugin ", QuoteField(*filter), " (known: ",
                                    absl::StrJoin(FilterPluginNames(), ", "), ")"));
    }
    if (Contains(profile.filters, *filter)) {
      return errors.At(filters[i], field, absl::StrCat(*filter, " is listed twice"));
    }
    profile.filters.push_back(*filter);
  }

  const YAML::Node scorers = node["scorers"];
  if (scorers.IsDefined() && !scorers.IsSequence()) {
    return errors.At(scorers, absl::StrCat(where, ".scorers"),
                     "expected a list of {name, weight}");
  }
  for (size_t i = 0; scorers.IsDefined() && i < scorers.size(); ++i) {
    const std::string field = absl::StrCat(where, ".scorers[", i, "]");
    const YAML::Node entry = scorers[i];
    if (!entry.IsMap()) return errors.At(entry, field, "expected {name: NAME, weight: W}");
    keys = errors.CheckKeys(entry, absl::StrCat(field, "."), {"name", "weight"});
    if (!keys.ok()) return keys;
    if (!entry["name"].IsDefined()) return errors.At(entry, absl::StrCat(field, ".name"), "required");
    absl::StatusOr<std::string> scorer =
        errors.NonEmptyString(entry["name"], absl::StrCat(field, ".name"));
    if (!scorer.ok()) return scorer.status();
    if (!Contains(ScorePluginNames(), *scorer)) {
      return errors.At(entry["name"], absl::StrCat(field, ".name"),
                       absl::StrCat("unknown score plugin ", QuoteField(*scorer), " (known: ",
                                    absl::StrJoin(ScorePluginNames(), ", "), ")"));
    }
    for (const PlacementProfile::Scorer& seen : profile.scorers) {
      if (seen.name == *scorer) {
        return errors.At(entry["name"], absl::StrCat(field, ".name"),
                         absl::StrCat(*scorer, " is listed twice"));
      }
    }
    double weight = 1;
    if (entry["weight"].IsDefined()) {
      absl::StatusOr<double> parsed = errors.NonNegative(entry["weight"], absl::StrCat(field, ".weight"));
      if (!parsed.ok()) return parsed.status();
      weight = *parsed;
    }
    profile.scorers.push_back({*scorer, weight});
  }

  struct IntField {
    const char* key;
    int low;
    int high;
    int* out;
  };
  for (const IntField& field :
       {IntField{"percentage_of_nodes_to_score", 0, 100, &profile.percentage_of_nodes_to_score},
        IntField{"min_feasible_nodes_to_score", 1, 1'000'000, &profile.min_feasible_nodes_to_score},
        IntField{"explain_top_candidates", 0, kMaxTopCandidates, &profile.explain_top_candidates}}) {
    const YAML::Node value = node[field.key];
    if (!value.IsDefined()) continue;
    absl::StatusOr<int> parsed =
        errors.IntInRange(value, absl::StrCat(where, ".", field.key), field.low, field.high);
    if (!parsed.ok()) return parsed.status();
    *field.out = *parsed;
  }
  absl::Status valid = ValidateProfile(profile);
  if (!valid.ok()) return errors.At(node, where, valid.message());
  return profile;
}

}  // namespace

std::vector<std::string> RequiredFilters() {
  return {GpuModelFilter::kName, NodeReadyFilter::kName, FreeResourcesFilter::kName};
}

absl::Status ValidateProfile(const PlacementProfile& profile) {
  for (const std::string& required : RequiredFilters()) {
    if (!Contains(profile.filters, required)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "filters: ", required,
          " is required (without it a replica could be placed on a node without room for it)"));
    }
  }
  for (const std::string& filter : profile.filters) {
    if (!Contains(FilterPluginNames(), filter)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown filter plugin \"", filter, "\""));
    }
  }
  for (const PlacementProfile::Scorer& scorer : profile.scorers) {
    if (!Contains(ScorePluginNames(), scorer.name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown score plugin \"", scorer.name, "\""));
    }
    if (!std::isfinite(scorer.weight) || scorer.weight < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("scorers: ", scorer.name, " weight must be finite and >= 0"));
    }
  }
  if (profile.percentage_of_nodes_to_score < 0 || profile.percentage_of_nodes_to_score > 100) {
    return absl::InvalidArgumentError("percentage_of_nodes_to_score must be in [0, 100]");
  }
  if (profile.min_feasible_nodes_to_score < 1) {
    return absl::InvalidArgumentError("min_feasible_nodes_to_score must be >= 1");
  }
  if (profile.explain_top_candidates < 0 || profile.explain_top_candidates > kMaxTopCandidates) {
    return absl::InvalidArgumentError(
        absl::StrCat("explain_top_candidates must be in [0, ", kMaxTopCandidates, "]"));
  }
  return absl::OkStatus();
}

PlacementProfile FirstFitProfile() {
  PlacementProfile profile;
  profile.name = "first-fit";
  profile.filters = {GpuModelFilter::kName, NodeReadyFilter::kName, TelemetryFreshFilter::kName,
                     FreeResourcesFilter::kName};
  return profile;
}

PlacementProfile EnergyProfile() {
  PlacementProfile profile = FirstFitProfile();
  profile.name = "energy";
  profile.filters.push_back(EnergyRoutingFilter::kName);
  profile.scorers = {{EnergyEfficiencyScorer::kName, 2},
                     {ConsolidationScorer::kName, 1},
                     {ThermalHeadroomScorer::kName, 1},
                     {GpuFitScorer::kName, 3},
                     {AwakeScorer::kName, 5}};
  return profile;
}

PlacementConfig PlacementConfig::BuiltIn(const std::string& default_profile) {
  PlacementConfig config;
  config.default_profile = default_profile;
  config.profiles = {EnergyProfile(), FirstFitProfile()};
  std::stable_partition(config.profiles.begin(), config.profiles.end(),
                        [&](const PlacementProfile& p) { return p.name == default_profile; });
  return config;
}

const PlacementProfile* PlacementConfig::Find(absl::string_view name) const {
  for (const PlacementProfile& profile : profiles) {
    if (profile.name == name) return &profile;
  }
  return nullptr;
}

absl::StatusOr<PlacementConfig> PlacementConfig::Parse(absl::string_view text,
                                                       const std::string& source) {
  const YamlErrors errors(source);
  absl::StatusOr<YAML::Node> loaded = LoadYaml(text, source);
  if (!loaded.ok()) return loaded.status();
  // Read through a const node: a missing key must not be inserted.
  const YAML::Node& root = *loaded;
  if (!root.IsMap()) {
    return errors.At(root, "document", "expected a mapping with default_profile: and profiles:");
  }
  absl::Status keys = errors.CheckKeys(root, "", {"default_profile", "profiles"});
  if (!keys.ok()) return keys;
  const YAML::Node profiles = root["profiles"];
  if (!profiles.IsDefined() || !profiles.IsSequence() || profiles.size() == 0) {
    return errors.At(profiles.IsDefined() ? profiles : root, "profiles",
                     "required: a list of at least one profile");
  }
  PlacementConfig config;
  for (size_t i = 0; i < profiles.size(); ++i) {
    absl::StatusOr<PlacementProfile> profile =
        ParseProfile(errors, profiles[i], absl::StrCat("profiles[", i, "]"));
    if (!profile.ok()) return profile.status();
    if (config.Find(profile->name) != nullptr) {
      return errors.At(profiles[i], absl::StrCat("profiles[", i, "].name"),
                       absl::StrCat("profile ", QuoteField(profile->name), " is defined twice"));
    }
    config.profiles.push_back(*std::move(profile));
  }
  const YAML::Node default_profile = root["default_profile"];
  if (!default_profile.IsDefined()) {
    config.default_profile = config.profiles.front().name;
  } else {
    absl::StatusOr<std::string> name = errors.NonEmptyString(default_profile, "default_profile");
    if (!name.ok()) return name.status();
    if (config.Find(*name) == nullptr) {
      std::vector<std::string> names;
      for (const PlacementProfile& profile : config.profiles) names.push_back(profile.name);
      return errors.At(default_profile, "default_profile",
                       absl::StrCat("no profile named ", QuoteField(*name), " (defined: ",
                                    absl::StrJoin(names, ", "), ")"));
    }
    config.default_profile = *name;
  }
  return config;
}

absl::StatusOr<PlacementConfig> PlacementConfig::Load(const std::string& path) {
  absl::StatusOr<std::string> text = ReadConfigFile(path);
  if (!text.ok()) return text.status();
  return Parse(*text, path);
}

}  // namespace joule
