#include "agent/nvml/nvml_gpu.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/device_catalog.h"

namespace joule {
namespace {

// NVML reports power in mW, energy in mJ, clocks in MHz, temperature in C and
// utilization in percent (NVML API reference, nvml.h); the proto wants W, J,
// MHz, C and fractions.
constexpr double kMilli = 1e-3;

// Lower-case alphanumeric words of `text`: "Tesla V100-PCIE-16GB" ->
// {"tesla", "v100", "pcie", "16gb"}.
std::vector<std::string> Words(absl::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      word.push_back(absl::ascii_tolower(c));
    } else if (!word.empty()) {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

// `buffer` as a string, up to its first NUL or its end (a library that
// fills the whole buffer must not make us read past it).
std::string FromBuffer(const char* buffer, size_t size) {
  return std::string(buffer, strnlen(buffer, size));
}

std::string DevicePrefix(unsigned int index, absl::string_view uuid) {
  return uuid.empty() ? absl::StrCat("GPU ", index)
                      : absl::StrCat("GPU ", index, " (", uuid, ")");
}

absl::Status Prefixed(const std::string& prefix, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(prefix, ": ", status.message()));
}

}  // namespace

absl::optional<std::string> MatchGpuModel(absl::string_view nvml_name) {
  const std::vector<std::string> words = Words(nvml_name);
  for (const GpuModelSpec& spec : GpuCatalog()) {
    std::string wanted;
    for (const std::string& w : Words(spec.model)) absl::StrAppend(&wanted, w);
    if (wanted.empty()) continue;
    // Whole consecutive words only: "rtx" + "6000" matches "rtx6000".
    for (size_t start = 0; start < words.size(); ++start) {
      std::string joined;
      for (size_t end = start;
           end < words.size() && joined.size() < wanted.size(); ++end) {
        joined += words[end];
      }
      if (joined == wanted) return spec.model;
    }
  }
  return absl::nullopt;
}

NvmlGpu::NvmlGpu(std::shared_ptr<NvmlLibrary> nvml, nvmlDevice_t handle,
                 v1::Device description, std::string nvml_name)
    : nvml_(std::move(nvml)),
      api_(nvml_->api()),
      handle_(handle),
      description_(std::move(description)),
      nvml_name_(std::move(nvml_name)) {}

absl::StatusOr<std::unique_ptr<NvmlGpu>> NvmlGpu::Create(
    std::shared_ptr<NvmlLibrary> nvml, unsigned int index, absl::Time now) {
  const NvmlApi& api = nvml->api();
  std::string prefix = DevicePrefix(index, "");
  auto check = [&](nvmlReturn_t ret, absl::string_view function) {
    return Prefixed(prefix, nvml->ToStatus(ret, function));
  };

  nvmlDevice_t handle = nullptr;
  absl::Status status = check(api.DeviceGetHandleByIndex(index, &handle),
                              "nvmlDeviceGetHandleByIndex_v2");
  if (!status.ok()) return status;

  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = {};
  status =
      check(api.DeviceGetName(handle, name, sizeof(name)), "nvmlDeviceGetName");
  if (!status.ok()) return status;
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
  status =
      check(api.DeviceGetUUID(handle, uuid, sizeof(uuid)), "nvmlDeviceGetUUID");
  if (!status.ok()) return status;
  const std::string nvml_name = FromBuffer(name, sizeof(name));
  const std::string uuid_text = FromBuffer(uuid, sizeof(uuid));
  prefix = DevicePrefix(index, uuid_text);

  nvmlMemory_t memory = {};
  status = check(api.DeviceGetMemoryInfo(handle, &memory),
                 "nvmlDeviceGetMemoryInfo");
  if (!status.ok()) return status;
  unsigned int min_mw = 0, max_mw = 0, default_mw = 0;
  status = check(
      api.DeviceGetPowerManagementLimitConstraints(handle, &min_mw, &max_mw),
      "nvmlDeviceGetPowerManagementLimitConstraints");
  if (!status.ok()) return status;
  status = check(api.DeviceGetPowerManagementDefaultLimit(handle, &default_mw),
                 "nvmlDeviceGetPowerManagementDefaultLimit");
  if (!status.ok()) return status;
  unsigned int max_sm_mhz = 0;
  status = check(api.DeviceGetMaxClockInfo(handle, NVML_CLOCK_SM, &max_sm_mhz),
                 "nvmlDeviceGetMaxClockInfo");
  if (!status.ok()) return status;

  v1::Device description;
  description.set_index(static_cast<int32_t>(index));
  description.set_kind(v1::DEVICE_KIND_GPU);
  const absl::optional<std::string> model = MatchGpuModel(nvml_name);
  description.set_model(model.has_value() ? *model : nvml_name);
  description.set_uuid(uuid_text);
  description.set_memory_bytes(static_cast<int64_t>(
      std::min<unsigned long long>(memory.total, INT64_MAX)));
  description.set_power_limit_min_w(min_mw * kMilli);
  description.set_power_limit_default_w(default_mw * kMilli);
  description.set_power_limit_max_w(max_mw * kMilli);
  // NVML has no idle-power or minimum-clock query; the catalog's figures
  // are priors for known models, 0 (unknown) otherwise.
  if (model.has_value()) {
    if (absl::optional<GpuModelSpec> spec = FindGpuModel(*model)) {
      description.set_idle_power_w(spec->idle_power_w);
      description.set_clock_min_mhz(spec->sm_clock_min_mhz);
    }
  }
  description.set_clock_max_mhz(
      static_cast<int32_t>(std::min<unsigned int>(max_sm_mhz, INT32_MAX)));
  description.set_source("nvml");

  std::unique_ptr<NvmlGpu> gpu(
      new NvmlGpu(nvml, handle, std::move(description), nvml_name));
  absl::StatusOr<unsigned int> cap_mw = gpu->ReadCapMw();
  if (!cap_mw.ok()) return cap_mw.status();
  gpu->cap_w_ = *cap_mw * kMilli;

  // Energy baseline: the counter where there is one, else a power reading
  // to integrate from.
  gpu->integrate_energy_ = true;
  if (api.DeviceGetTotalEnergyConsumption != nullptr) {
    unsigned long long counter_mj = 0;
    const nvmlReturn_t ret =
        api.DeviceGetTotalEnergyConsumption(handle, &counter_mj);
    if (ret == NVML_SUCCESS) {
      gpu->integrate_energy_ = false;
      gpu->last_counter_mj_ = counter_mj;
    } else if (ret != NVML_ERROR_NOT_SUPPORTED) {
      return check(ret, "nvmlDeviceGetTotalEnergyConsumption");
    }
  }
  if (gpu->integrate_energy_) {
    unsigned int power_mw = 0;
    status = check(api.DeviceGetPowerUsage(handle, &power_mw),
                   "nvmlDeviceGetPowerUsage");
    if (!status.ok()) return status;
    gpu->last_power_w_ = power_mw * kMilli;
  }
  gpu->last_time_ = now;
  return gpu;
}

absl::Status NvmlGpu::Check(nvmlReturn_t ret,
                            absl::string_view function) const {
  if (ret == NVML_SUCCESS) return absl::OkStatus();
  return Prefixed(DevicePrefix(description_.index(), description_.uuid()),
                  nvml_->ToStatus(ret, function));
}

absl::StatusOr<unsigned int> NvmlGpu::ReadCapMw() const {
  unsigned int cap_mw = 0;
  if (api_.DeviceGetEnforcedPowerLimit != nullptr) {
    absl::Status status =
        Check(api_.DeviceGetEnforcedPowerLimit(handle_, &cap_mw),
              "nvmlDeviceGetEnforcedPowerLimit");
    if (!status.ok()) return status;
  } else {
    absl::Status status =
        Check(api_.DeviceGetPowerManagementLimit(handle_, &cap_mw),
              "nvmlDeviceGetPowerManagementLimit");
    if (!status.ok()) return status;
  }
  return cap_mw;
}

absl::StatusOr<v1::DeviceSample> NvmlGpu::Sample(absl::Time now) {
  unsigned int power_mw = 0;
  absl::Status status = Check(api_.DeviceGetPowerUsage(handle_, &power_mw),
                              "nvmlDeviceGetPowerUsage");
  if (!status.ok()) return status;
  const double power_w = power_mw * kMilli;

  // Energy, computed into locals and committed only if every read succeeds.
  double energy_j = energy_j_;
  unsigned long long counter_mj = last_counter_mj_;
  if (integrate_energy_) {
    const double dt_s =
        now > last_time_ ? absl::ToDoubleSeconds(now - last_time_) : 0.0;
    energy_j += 0.5 * (last_power_w_ + power_w) * dt_s;
  } else {
    status = Check(api_.DeviceGetTotalEnergyConsumption(handle_, &counter_mj),
                   "nvmlDeviceGetTotalEnergyConsumption");
    if (!status.ok()) return status;
    // A counter below the last reading was reset (driver reload) and has
    // counted from zero since.
    energy_j += (counter_mj >= last_counter_mj_ ? counter_mj - last_counter_mj_
                                                : counter_mj) *
                kMilli;
  }

  unsigned int temp_c = 0;
  status =
      Check(api_.DeviceGetTemperature(handle_, NVML_TEMPERATURE_GPU, &temp_c),
            "nvmlDeviceGetTemperature");
  if (!status.ok()) return status;
  nvmlUtilization_t utilization = {};
  status = Check(api_.DeviceGetUtilizationRates(handle_, &utilization),
                 "nvmlDeviceGetUtilizationRates");
  if (!status.ok()) return status;
  unsigned int sm_mhz = 0, mem_mhz = 0;
  status = Check(api_.DeviceGetClockInfo(handle_, NVML_CLOCK_SM, &sm_mhz),
                 "nvmlDeviceGetClockInfo");
  if (!status.ok()) return status;
  status = Check(api_.DeviceGetClockInfo(handle_, NVML_CLOCK_MEM, &mem_mhz),
                 "nvmlDeviceGetClockInfo");
  if (!status.ok()) return status;
  absl::StatusOr<unsigned int> cap_mw = ReadCapMw();
  if (!cap_mw.ok()) return cap_mw.status();
  // Throttle reasons are optional telemetry: a driver without them, or a
  // device that does not report them, reads as 0 ("unknown").
  unsigned long long throttle = 0;
  if (api_.DeviceGetCurrentClocksThrottleReasons != nullptr) {
    const nvmlReturn_t ret =
        api_.DeviceGetCurrentClocksThrottleReasons(handle_, &throttle);
    if (ret == NVML_ERROR_NOT_SUPPORTED) {
      throttle = 0;
    } else {
      status = Check(ret, "nvmlDeviceGetCurrentClocksThrottleReasons");
      if (!status.ok()) return status;
    }
  }

  energy_j_ = energy_j;
  last_counter_mj_ = counter_mj;
  last_power_w_ = power_w;
  last_time_ = std::max(last_time_, now);
  cap_w_ = *cap_mw * kMilli;

  v1::DeviceSample sample;
  sample.set_index(description_.index());
  sample.set_kind(v1::DEVICE_KIND_GPU);
  sample.set_power_w(power_w);
  sample.set_energy_j(energy_j_);
  sample.set_temp_c(temp_c);
  // NVML reports percent; the proto wants a fraction in [0, 1].
  sample.set_utilization(std::min(utilization.gpu, 100u) / 100.0);
  sample.set_memory_utilization(std::min(utilization.memory, 100u) / 100.0);
  sample.set_sm_clock_mhz(
      static_cast<int32_t>(std::min<unsigned int>(sm_mhz, INT32_MAX)));
  sample.set_mem_clock_mhz(
      static_cast<int32_t>(std::min<unsigned int>(mem_mhz, INT32_MAX)));
  sample.set_power_cap_w(cap_w_);
  sample.set_source("nvml");
  sample.set_throttle_reasons(throttle);
  sample.set_energy_integrated(integrate_energy_);
  return sample;
}

absl::Status NvmlGpu::SetPowerLimit(double watts, absl::Time now) {
  const double min_w = description_.power_limit_min_w();
  const double max_w = description_.power_limit_max_w();
  // Written so that NaN fails too.
  if (!(watts >= min_w && watts <= max_w)) {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: power limit %.1f W outside the allowed range [%g, %g] W",
        DevicePrefix(description_.index(), description_.uuid()), watts, min_w,
        max_w));
  }
  const auto limit_mw = static_cast<unsigned int>(std::lround(watts * 1000));
  absl::Status status =
      Check(api_.DeviceSetPowerManagementLimit(handle_, limit_mw),
            "nvmlDeviceSetPowerManagementLimit");
  if (!status.ok()) return status;
  cap_w_ = limit_mw * kMilli;
  return absl::OkStatus();
}

absl::Status NvmlGpu::LockClocks(int32_t min_mhz, int32_t max_mhz) {
  if (min_mhz <= 0 || max_mhz < min_mhz) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: invalid SM clock range [%d, %d] MHz",
                        DevicePrefix(description_.index(), description_.uuid()),
                        min_mhz, max_mhz));
  }
  if (api_.DeviceSetGpuLockedClocks == nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        DevicePrefix(description_.index(), description_.uuid()),
        ": this NVML has no nvmlDeviceSetGpuLockedClocks (driver too old)"));
  }
  return Check(
      api_.DeviceSetGpuLockedClocks(handle_, static_cast<unsigned int>(min_mhz),
                                    static_cast<unsigned int>(max_mhz)),
      "nvmlDeviceSetGpuLockedClocks");
}

absl::Status NvmlGpu::ResetClocks() {
  if (api_.DeviceResetGpuLockedClocks == nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        DevicePrefix(description_.index(), description_.uuid()),
        ": this NVML has no nvmlDeviceResetGpuLockedClocks (driver too old)"));
  }
  return Check(api_.DeviceResetGpuLockedClocks(handle_),
               "nvmlDeviceResetGpuLockedClocks");
}

absl::StatusOr<std::vector<std::unique_ptr<GpuDevice>>> DiscoverNvmlGpus(
    std::shared_ptr<NvmlLibrary> nvml, absl::Time now, std::vector<absl::Status>* skipped) {
  unsigned int count = 0;
  absl::Status status = nvml->ToStatus(nvml->api().DeviceGetCount(&count),
                                       "nvmlDeviceGetCount_v2");
  if (!status.ok()) return status;
  // No reserve(count): a broken library's count must not size an allocation.
  std::vector<std::unique_ptr<GpuDevice>> gpus;
  for (unsigned int index = 0; index < count; ++index) {
    absl::StatusOr<std::unique_ptr<NvmlGpu>> gpu =
        NvmlGpu::Create(nvml, index, now);
    if (!gpu.ok()) {
      if (skipped == nullptr) return gpu.status();
      // One broken GPU must not hide the others.
      skipped->push_back(gpu.status());
      continue;
    }
    gpus.push_back(*std::move(gpu));
  }
  return gpus;
}

}  // namespace joule
