#ifndef JOULE_SCHEDULER_PLACEMENT_PROFILE_H_
#define JOULE_SCHEDULER_PLACEMENT_PROFILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// One way to place jobs: which filters run (in order), which scorers with
// what weights, and how many feasible nodes a cycle looks for before it
// stops filtering. Like a kube-scheduler profile
// (KubeSchedulerConfiguration.profiles).
struct PlacementProfile {
  std::string name;
  std::vector<std::string> filters;
  struct Scorer {
    std::string name;
    double weight = 1;
  };
  std::vector<Scorer> scorers;
  // Share of the cluster's nodes (in percent) that, once found feasible, are
  // enough to choose from: the rest are not filtered or scored. 100 scores
  // every feasible node. 0 is adaptive, as kube-scheduler's
  // percentageOfNodesToScore: 50 % - (nodes / 125) %, at least 5 %.
  int percentage_of_nodes_to_score = 0;
  // Never fewer feasible nodes than this (kube-scheduler: 100), unless the
  // cluster has fewer.
  int min_feasible_nodes_to_score = 100;
  // Candidates an explanation keeps, best first.
  int explain_top_candidates = 5;
};

// The built-in profiles:
//   energy     the filters GpuModel, NodeReady, TelemetryFresh,
//              FreeResources, EnergyRouting; scorers EnergyEfficiency (2),
//              Consolidation (1), ThermalHeadroom (1), GpuFit (3), Awake (5:
//              a node that must be resumed loses to any awake one);
//   first-fit  the same filters less EnergyRouting and no scorers: the first
//              feasible node in name order (energy-oblivious; the
//              simulator's baselines).
PlacementProfile EnergyProfile();
PlacementProfile FirstFitProfile();

// The scheduler's placement configuration (--placement-config): profiles and
// the one jobs get unless their spec names another.
//
//   default_profile: energy
//   profiles:
//     - name: energy
//       percentage_of_nodes_to_score: 0
//       min_feasible_nodes_to_score: 100
//       explain_top_candidates: 5
//       filters: [GpuModel, NodeReady, TelemetryFresh, FreeResources, EnergyRouting]
//       scorers:
//         - {name: EnergyEfficiency, weight: 2}
//         - {name: Awake, weight: 5}
//
// Validated whole at load: unknown keys and plugin names, duplicate names,
// weights that are not finite and >= 0, a profile without the filters every
// placement needs (GpuModel, FreeResources, NodeReady: without them a
// replica could land on a node without room), and a default_profile that is
// not defined are all errors naming the file, the line and the field.
// Immutable; thread-compatible.
struct PlacementConfig {
  std::string default_profile;
  std::vector<PlacementProfile> profiles;

  // The built-in profiles, `default_profile` first.
  static PlacementConfig BuiltIn(const std::string& default_profile);
  static absl::StatusOr<PlacementConfig> Parse(absl::string_view text,
                                               const std::string& source);
  static absl::StatusOr<PlacementConfig> Load(const std::string& path);

  // nullptr when there is no such profile.
  const PlacementProfile* Find(absl::string_view name) const;
};

// The filters every profile must have.
std::vector<std::string> RequiredFilters();

// Checks one profile (plugin names, weights, required filters); the error
// names the profile.
absl::Status ValidateProfile(const PlacementProfile& profile);

}  // namespace joule

#endif  // JOULE_SCHEDULER_PLACEMENT_PROFILE_H_
