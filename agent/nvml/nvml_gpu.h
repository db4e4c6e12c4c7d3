#ifndef JOULE_AGENT_NVML_NVML_GPU_H_
#define JOULE_AGENT_NVML_NVML_GPU_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "agent/devices.h"
#include "agent/nvml/nvml_api.h"
#include "agent/nvml/nvml_library.h"
#include "joule/v1/node.pb.h"

namespace joule {

// The catalog model an NVML device name denotes ("Tesla V100-PCIE-16GB" ->
// "V100", "Quadro RTX 6000" -> "RTX6000"), or nullopt. The name is split into
// alphanumeric words and a model must match whole consecutive words, so
// "NVIDIA A10" is not an "A100".
absl::optional<std::string> MatchGpuModel(absl::string_view nvml_name);

// A GPU read and driven through NVML.
//  1. At discovery it reads the static description (name, UUID, memory,
//     power-limit range and default, max SM clock) and the energy baseline.
//  2. Energy: where the device has a total-energy counter (Volta+) energy_j
//     is the counter's increase since discovery (a counter that goes
//     backwards, after a driver reload, restarts from its new value). Where
//     it has none (NOT_SUPPORTED, or the symbol is missing) power is
//     integrated over time with the trapezoid rule between consecutive
//     successful samples, starting from a power reading at discovery, and
//     every sample says energy_integrated.
//  3. Every read in Sample must succeed: a failing one is returned as the
//     sample's error ("GPU 1 (GPU-...): nvmlDeviceGetPowerUsage: GPU is
//     lost ..."), never replaced by a made-up value; a failed sample leaves
//     the energy state untouched.
//  4. SetPowerLimit refuses, without calling NVML, a limit outside the
//     device's constraints (OUT_OF_RANGE naming the range in W).
// Not thread-safe; owned by the Agent like every GpuDevice.
class NvmlGpu : public GpuDevice {
 public:
  // Reads device `index` at `now`. Errors name the device and the call.
  static absl::StatusOr<std::unique_ptr<NvmlGpu>> Create(
      std::shared_ptr<NvmlLibrary> nvml, unsigned int index, absl::Time now);

  v1::Device Describe() const override { return description_; }
  absl::StatusOr<v1::DeviceSample> Sample(absl::Time now) override;
  absl::Status SetPowerLimit(double watts, absl::Time now) override;
  double power_limit_w() const override { return cap_w_; }
  absl::Status LockClocks(int32_t min_mhz, int32_t max_mhz) override;
  absl::Status ResetClocks() override;
  // Real devices see their own load.
  void SetBusy(bool busy, absl::Time now) override {}
  absl::optional<double> SimulatedSpeed() const override {
    return absl::nullopt;
  }

  // Whether energy is integrated from power (no energy counter).
  bool energy_integrated() const { return integrate_energy_; }
  // The NVML device name as reported, e.g. "Tesla V100-PCIE-16GB".
  const std::string& nvml_name() const { return nvml_name_; }

 private:
  NvmlGpu(std::shared_ptr<NvmlLibrary> nvml, nvmlDevice_t handle,
          v1::Device description, std::string nvml_name);

  // `function`'s failure as a status naming this device; OK on success.
  absl::Status Check(nvmlReturn_t ret, absl::string_view function) const;
  // The power limit in force, in mW.
  absl::StatusOr<unsigned int> ReadCapMw() const;

  const std::shared_ptr<NvmlLibrary> nvml_;
  const NvmlApi& api_;
  const nvmlDevice_t handle_;
  const v1::Device description_;
  const std::string nvml_name_;
  double cap_w_ = 0;

  // Energy accounting (see the class comment).
  bool integrate_energy_ = false;
  double energy_j_ = 0;
  unsigned long long last_counter_mj_ = 0;
  double last_power_w_ = 0;
  absl::Time last_time_;
};

// Every GPU NVML reports, indexed as NVML indexes them. A device that
// cannot be read is left out and its error appended to `skipped`; without
// `skipped`, it makes the whole discovery fail, with an error naming it.
absl::StatusOr<std::vector<std::unique_ptr<GpuDevice>>> DiscoverNvmlGpus(
    std::shared_ptr<NvmlLibrary> nvml, absl::Time now,
    std::vector<absl::Status>* skipped = nullptr);

}  // namespace joule

#endif  // JOULE_AGENT_NVML_NVML_GPU_H_
