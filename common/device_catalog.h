#ifndef JOULE_COMMON_DEVICE_CATALOG_H_
#define JOULE_COMMON_DEVICE_CATALOG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace joule {

// Published characteristics of a GPU model: power-limit range (what
// nvidia-smi -q reports as min/default/max power limit), idle draw, clocks,
// memory and the temperature at which the hardware starts to slow down.
// Sources: NVIDIA product briefs/datasheets for each board (the PCIe V100 is
// the 250 W part measured in the Zeus trace; A40 300 W; Quadro RTX 6000
// 260 W; A100 SXM4 400 W; H100 SXM5 700 W). Idle figures are typical
// nvidia-smi readings of an idle board at P0/P8 and are only priors.
struct GpuModelSpec {
  std::string model;
  int64_t memory_bytes;
  double power_limit_min_w;
  double power_limit_default_w;
  double power_limit_max_w;
  double idle_power_w;
  int32_t sm_clock_min_mhz;
  int32_t sm_clock_max_mhz;
  int32_t mem_clock_mhz;
  double throttle_temp_c;
};

// The built-in catalog.
const std::vector<GpuModelSpec>& GpuCatalog();

// Looks a model up by name, case-insensitively, ignoring spaces, dashes and
// a leading vendor word ("Tesla V100", "v100", "RTX-6000" all match).
absl::optional<GpuModelSpec> FindGpuModel(absl::string_view name);
// The same in `catalog`.
absl::optional<GpuModelSpec> FindGpuModel(const std::vector<GpuModelSpec>& catalog,
                                          absl::string_view name);

// Reads catalog overrides, one model per line (blank lines and # comments
// skipped):
//   model,memory_gib,limit_min_w,limit_default_w,limit_max_w,idle_w,
//   sm_clock_min_mhz,sm_clock_max_mhz,mem_clock_mhz,throttle_temp_c
// INVALID_ARGUMENT naming the line and field for anything malformed or
// inconsistent (min <= default <= max, idle <= max, positive clocks).
absl::StatusOr<std::vector<GpuModelSpec>> ParseGpuCatalog(absl::string_view text);

// The built-in catalog with `overrides` replacing or adding models by name.
std::vector<GpuModelSpec> MergeGpuCatalog(const std::vector<GpuModelSpec>& overrides);

// The built-in catalog merged with the overrides in the file at `path`
// (ParseGpuCatalog's format). INVALID_ARGUMENT naming the file when it cannot
// be read, and its line and field when a line is malformed.
absl::StatusOr<std::vector<GpuModelSpec>> LoadGpuCatalogFile(const std::string& path);

}  // namespace joule

#endif  // JOULE_COMMON_DEVICE_CATALOG_H_
