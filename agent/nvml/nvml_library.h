#ifndef JOULE_AGENT_NVML_NVML_LIBRARY_H_
#define JOULE_AGENT_NVML_NVML_LIBRARY_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/nvml/nvml_api.h"

namespace joule {

// The NVML entry points, resolved from the loaded library. Required entries
// are never null; the optional ones are null where the driver lacks them.
struct NvmlApi {
  // Required.
  nvmlInit_v2_fn Init = nullptr;
  nvmlShutdown_fn Shutdown = nullptr;
  nvmlErrorString_fn ErrorString = nullptr;
  nvmlDeviceGetCount_v2_fn DeviceGetCount = nullptr;
  nvmlDeviceGetHandleByIndex_v2_fn DeviceGetHandleByIndex = nullptr;
  nvmlDeviceGetName_fn DeviceGetName = nullptr;
  nvmlDeviceGetUUID_fn DeviceGetUUID = nullptr;
  nvmlDeviceGetMemoryInfo_fn DeviceGetMemoryInfo = nullptr;
  nvmlDeviceGetPowerManagementLimitConstraints_fn
      DeviceGetPowerManagementLimitConstraints = nullptr;
  nvmlDeviceGetPowerManagementDefaultLimit_fn
      DeviceGetPowerManagementDefaultLimit = nullptr;
  nvmlDeviceGetPowerManagementLimit_fn DeviceGetPowerManagementLimit = nullptr;
  nvmlDeviceSetPowerManagementLimit_fn DeviceSetPowerManagementLimit = nullptr;
  nvmlDeviceGetPowerUsage_fn DeviceGetPowerUsage = nullptr;
  nvmlDeviceGetTemperature_fn DeviceGetTemperature = nullptr;
  nvmlDeviceGetUtilizationRates_fn DeviceGetUtilizationRates = nullptr;
  nvmlDeviceGetClockInfo_fn DeviceGetClockInfo = nullptr;
  nvmlDeviceGetMaxClockInfo_fn DeviceGetMaxClockInfo = nullptr;
  // Optional.
  // Volta+; without it energy is integrated from power.
  nvmlDeviceGetTotalEnergyConsumption_fn DeviceGetTotalEnergyConsumption =
      nullptr;
  // Without it the power cap is read from nvmlDeviceGetPowerManagementLimit.
  nvmlDeviceGetEnforcedPowerLimit_fn DeviceGetEnforcedPowerLimit = nullptr;
  // Without it throttle reasons read as 0 ("unknown").
  nvmlDeviceGetCurrentClocksThrottleReasons_fn
      DeviceGetCurrentClocksThrottleReasons = nullptr;
  // Volta+; without them clock locking is UNIMPLEMENTED.
  nvmlDeviceSetGpuLockedClocks_fn DeviceSetGpuLockedClocks = nullptr;
  nvmlDeviceResetGpuLockedClocks_fn DeviceResetGpuLockedClocks = nullptr;
};

// Maps an NVML return code to the absl::Status code Joule uses for it:
// NOT_SUPPORTED -> UNIMPLEMENTED, NO_PERMISSION -> PERMISSION_DENIED,
// INVALID_ARGUMENT -> INVALID_ARGUMENT, GPU_IS_LOST and NOT_FOUND ->
// UNAVAILABLE, DRIVER_NOT_LOADED -> FAILED_PRECONDITION, anything else ->
// INTERNAL (SUCCESS -> OK).
absl::StatusCode NvmlReturnToStatusCode(nvmlReturn_t ret);

// The NVIDIA Management Library, opened with dlopen so that the agent runs
// (without GPUs) where no driver is installed. Owns the library handle and
// NVML's initialization:
//  1. Load dlopens the library (RTLD_NOW | RTLD_LOCAL); a missing library
//     is NOT_FOUND, the normal "no NVIDIA GPU here" case.
//  2. It resolves every entry point; a missing required one is
//     FAILED_PRECONDITION naming it, optional ones stay null.
//  3. It calls nvmlInit_v2; the destructor calls nvmlShutdown and dlclose.
// Devices (NvmlGpu) hold a shared_ptr so the library outlives them.
// Thread-safe: immutable after Load, and NVML itself is thread-safe.
class NvmlLibrary {
 public:
  static constexpr char kDefaultPath[] = "libnvidia-ml.so.1";

  static absl::StatusOr<std::shared_ptr<NvmlLibrary>> Load(
      const std::string& path = kDefaultPath);

  ~NvmlLibrary();
  NvmlLibrary(const NvmlLibrary&) = delete;
  NvmlLibrary& operator=(const NvmlLibrary&) = delete;

  const NvmlApi& api() const { return api_; }
  const std::string& path() const { return path_; }

  // OK for NVML_SUCCESS; otherwise an error with the code from
  // NvmlReturnToStatusCode and the message
  // "<function>: <nvmlErrorString text> (NVML return <n>)".
  absl::Status ToStatus(nvmlReturn_t ret, absl::string_view function) const;

 private:
  NvmlLibrary(std::string path, void* handle, const NvmlApi& api);

  const std::string path_;
  void* const handle_;
  const NvmlApi api_;
};

}  // namespace joule

#endif  // JOULE_AGENT_NVML_NVML_LIBRARY_H_
