#include "agent/nvml/nvml_library.h"

#include <dlfcn.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace joule {
namespace {

// The last dlerror() text, or `fallback` where there is none.
std::string DlError(absl::string_view fallback) {
  const char* error = dlerror();
  return error != nullptr ? std::string(error) : std::string(fallback);
}

// Resolves `name` into `*fn`; a required symbol that is missing is recorded
// in `missing`. POSIX guarantees that a dlsym result converts to a function
// pointer.
template <typename Fn>
void Resolve(void* handle, const char* name, bool required, Fn* fn,
             std::vector<std::string>* missing) {
  dlerror();  // Clear any stale error.
  void* symbol = dlsym(handle, name);
  *fn = reinterpret_cast<Fn>(symbol);
  if (symbol == nullptr && required) missing->push_back(name);
}

}  // namespace

absl::StatusCode NvmlReturnToStatusCode(nvmlReturn_t ret) {
  switch (ret) {
    case NVML_SUCCESS:
      return absl::StatusCode::kOk;
    case NVML_ERROR_NOT_SUPPORTED:
      return absl::StatusCode::kUnimplemented;
    case NVML_ERROR_NO_PERMISSION:
      return absl::StatusCode::kPermissionDenied;
    case NVML_ERROR_INVALID_ARGUMENT:
      return absl::StatusCode::kInvalidArgument;
    case NVML_ERROR_GPU_IS_LOST:
    case NVML_ERROR_NOT_FOUND:
      return absl::StatusCode::kUnavailable;
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

NvmlLibrary::NvmlLibrary(std::string path, void* handle, const NvmlApi& api)
    : path_(std::move(path)), handle_(handle), api_(api) {}

NvmlLibrary::~NvmlLibrary() {
  // A failing shutdown leaves nothing to do: the process is done with NVML.
  api_.Shutdown();
  dlclose(handle_);
}

absl::StatusOr<std::shared_ptr<NvmlLibrary>> NvmlLibrary::Load(
    const std::string& path) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot load NVML (", path,
                                            "): ", DlError("dlopen failed")));
  }

  NvmlApi api;
  std::vector<std::string> missing;
  Resolve(handle, "nvmlInit_v2", true, &api.Init, &missing);
  Resolve(handle, "nvmlShutdown", true, &api.Shutdown, &missing);
  Resolve(handle, "nvmlErrorString", true, &api.ErrorString, &missing);
  Resolve(handle, "nvmlDeviceGetCount_v2", true, &api.DeviceGetCount, &missing);
  Resolve(handle, "nvmlDeviceGetHandleByIndex_v2", true,
          &api.DeviceGetHandleByIndex, &missing);
  Resolve(handle, "nvmlDeviceGetName", true, &api.DeviceGetName, &missing);
  Resolve(handle, "nvmlDeviceGetUUID", true, &api.DeviceGetUUID, &missing);
  Resolve(handle, "nvmlDeviceGetMemoryInfo", true, &api.DeviceGetMemoryInfo,
          &missing);
  Resolve(handle, "nvmlDeviceGetPowerManagementLimitConstraints", true,
          &api.DeviceGetPowerManagementLimitConstraints, &missing);
  Resolve(handle, "nvmlDeviceGetPowerManagementDefaultLimit", true,
          &api.DeviceGetPowerManagementDefaultLimit, &missing);
  Resolve(handle, "nvmlDeviceGetPowerManagementLimit", true,
          &api.DeviceGetPowerManagementLimit, &missing);
  Resolve(handle, "nvmlDeviceSetPowerManagementLimit", true,
          &api.DeviceSetPowerManagementLimit, &missing);
  Resolve(handle, "nvmlDeviceGetPowerUsage", true, &api.DeviceGetPowerUsage,
          &missing);
  Resolve(handle, "nvmlDeviceGetTemperature", true, &api.DeviceGetTemperature,
          &missing);
  Resolve(handle, "nvmlDeviceGetUtilizationRates", true,
          &api.DeviceGetUtilizationRates, &missing);
  Resolve(handle, "nvmlDeviceGetClockInfo", true, &api.DeviceGetClockInfo,
          &missing);
  Resolve(handle, "nvmlDeviceGetMaxClockInfo", true, &api.DeviceGetMaxClockInfo,
          &missing);
  Resolve(handle, "nvmlDeviceGetTotalEnergyConsumption", false,
          &api.DeviceGetTotalEnergyConsumption, &missing);
  Resolve(handle, "nvmlDeviceGetEnforcedPowerLimit", false,
          &api.DeviceGetEnforcedPowerLimit, &missing);
  Resolve(handle, "nvmlDeviceGetCurrentClocksThrottleReasons", false,
          &api.DeviceGetCurrentClocksThrottleReasons, &missing);
  Resolve(handle, "nvmlDeviceSetGpuLockedClocks", false,
          &api.DeviceSetGpuLockedClocks, &missing);
  Resolve(handle, "nvmlDeviceResetGpuLockedClocks", false,
          &api.DeviceResetGpuLockedClocks, &missing);
  if (!missing.empty()) {
    dlclose(handle);
    return absl::FailedPreconditionError(absl::StrCat(
        path, " is not a usable NVML: missing required symbol",
        missing.size() > 1 ? "s " : " ", absl::StrJoin(missing, ", ")));
  }

  const nvmlReturn_t ret = api.Init();
  if (ret != NVML_SUCCESS) {
    const char* text = api.ErrorString(ret);
    absl::Status status(
        NvmlReturnToStatusCode(ret),
        absl::StrCat(
            path, ": nvmlInit_v2: ", text != nullptr ? text : "unknown error",
            " (NVML return ", static_cast<int>(ret), ")"));
    dlclose(handle);
    return status;
  }
  // Not make_shared: the constructor is private.
  return std::shared_ptr<NvmlLibrary>(new NvmlLibrary(path, handle, api));
}

absl::Status NvmlLibrary::ToStatus(nvmlReturn_t ret,
                                   absl::string_view function) const {
  if (ret == NVML_SUCCESS) return absl::OkStatus();
  const char* text = api_.ErrorString(ret);
  return absl::Status(
      NvmlReturnToStatusCode(ret),
      absl::StrCat(function, ": ", text != nullptr ? text : "unknown error",
                   " (NVML return ", static_cast<int>(ret), ")"));
}

}  // namespace joule
