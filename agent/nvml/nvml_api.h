// The subset of the NVIDIA Management Library's C API that Joule uses,
// declared here so that the agent builds without the CUDA toolkit and loads
// libnvidia-ml.so.1 at run time (dlopen) only where a driver is installed.
//
// Every type, constant and signature below follows the NVML API reference
// (nvml.h, NVML_API_VERSION 12): return codes from nvmlReturn_t, the
// nvmlMemory_t and nvmlUtilization_t layouts, NVML_TEMPERATURE_GPU = 0,
// NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2, the 96-byte v2 name/UUID buffers and
// the nvmlClocksThrottleReason* bits. Units are NVML's: power in milliwatts,
// energy in millijoules, clocks in MHz, temperature in degrees C, utilization
// in percent, memory in bytes.
//
// C-compatible on purpose: the fake library (tests/fakes/fake_nvml) includes
// it too and checks its exported functions against the pointer types here,
// so agent and fake cannot drift apart from each other.
#ifndef JOULE_AGENT_NVML_NVML_API_H_
#define JOULE_AGENT_NVML_NVML_API_H_

#ifdef __cplusplus
extern "C" {
#endif

// NVML API reference (nvml.h): nvmlReturn_t. An enum of int size; only the
// codes Joule distinguishes or the fake returns are named.
typedef enum nvmlReturn_enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_UNINITIALIZED = 1,
  NVML_ERROR_INVALID_ARGUMENT = 2,
  NVML_ERROR_NOT_SUPPORTED = 3,
  NVML_ERROR_NO_PERMISSION = 4,
  NVML_ERROR_ALREADY_INITIALIZED = 5,
  NVML_ERROR_NOT_FOUND = 6,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
  NVML_ERROR_INSUFFICIENT_POWER = 8,
  NVML_ERROR_DRIVER_NOT_LOADED = 9,
  NVML_ERROR_TIMEOUT = 10,
  NVML_ERROR_IRQ_ISSUE = 11,
  NVML_ERROR_LIBRARY_NOT_FOUND = 12,
  NVML_ERROR_FUNCTION_NOT_FOUND = 13,
  NVML_ERROR_CORRUPTED_INFOROM = 14,
  NVML_ERROR_GPU_IS_LOST = 15,
  NVML_ERROR_RESET_REQUIRED = 16,
  NVML_ERROR_OPERATING_SYSTEM = 17,
  NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
  NVML_ERROR_IN_USE = 19,
  NVML_ERROR_MEMORY = 20,
  NVML_ERROR_NO_DATA = 21,
  NVML_ERROR_UNKNOWN = 999
} nvmlReturn_t;

// NVML API reference (nvml.h): an opaque device handle.
typedef struct nvmlDevice_st* nvmlDevice_t;

// NVML API reference (nvml.h): nvmlMemory_t (v1), bytes.
typedef struct nvmlMemory_st {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
} nvmlMemory_t;

// NVML API reference (nvml.h): nvmlUtilization_t, percent of the last
// sample period (1/6 s to 1 s depending on the product).
typedef struct nvmlUtilization_st {
  unsigned int gpu;
  unsigned int memory;
} nvmlUtilization_t;

// NVML API reference (nvml.h): nvmlTemperatureSensors_t.
typedef enum nvmlTemperatureSensors_enum {
  NVML_TEMPERATURE_GPU = 0
} nvmlTemperatureSensors_t;

// NVML API reference (nvml.h): nvmlClockType_t, MHz.
typedef enum nvmlClockType_enum {
  NVML_CLOCK_GRAPHICS = 0,
  NVML_CLOCK_SM = 1,
  NVML_CLOCK_MEM = 2,
  NVML_CLOCK_VIDEO = 3
} nvmlClockType_t;

// NVML API reference (nvml.h): NVML_DEVICE_NAME_V2_BUFFER_SIZE and
// NVML_DEVICE_UUID_V2_BUFFER_SIZE, enough for any name or UUID.
#define NVML_DEVICE_NAME_V2_BUFFER_SIZE 96
#define NVML_DEVICE_UUID_V2_BUFFER_SIZE 96

// NVML API reference (nvml.h): nvmlClocksThrottleReason* bits, as reported
// by nvmlDeviceGetCurrentClocksThrottleReasons.
#define nvmlClocksThrottleReasonGpuIdle 0x0000000000000001ULL
#define nvmlClocksThrottleReasonApplicationsClocksSetting 0x0000000000000002ULL
#define nvmlClocksThrottleReasonSwPowerCap 0x0000000000000004ULL
#define nvmlClocksThrottleReasonHwSlowdown 0x0000000000000008ULL
#define nvmlClocksThrottleReasonSyncBoost 0x0000000000000010ULL
#define nvmlClocksThrottleReasonSwThermalSlowdown 0x0000000000000020ULL
#define nvmlClocksThrottleReasonHwThermalSlowdown 0x0000000000000040ULL

// Function-pointer types, one per NVML entry point used; the names are the
// exported symbols with `_fn` appended. Signatures per the NVML API
// reference (nvml.h).
typedef nvmlReturn_t (*nvmlInit_v2_fn)(void);
typedef nvmlReturn_t (*nvmlShutdown_fn)(void);
typedef const char* (*nvmlErrorString_fn)(nvmlReturn_t result);
typedef nvmlReturn_t (*nvmlDeviceGetCount_v2_fn)(unsigned int* deviceCount);
typedef nvmlReturn_t (*nvmlDeviceGetHandleByIndex_v2_fn)(unsigned int index,
                                                         nvmlDevice_t* device);
typedef nvmlReturn_t (*nvmlDeviceGetName_fn)(nvmlDevice_t device, char* name,
                                             unsigned int length);
typedef nvmlReturn_t (*nvmlDeviceGetUUID_fn)(nvmlDevice_t device, char* uuid,
                                             unsigned int length);
typedef nvmlReturn_t (*nvmlDeviceGetMemoryInfo_fn)(nvmlDevice_t device,
                                                   nvmlMemory_t* memory);
// Milliwatts.
typedef nvmlReturn_t (*nvmlDeviceGetPowerManagementLimitConstraints_fn)(
    nvmlDevice_t device, unsigned int* minLimit, unsigned int* maxLimit);
typedef nvmlReturn_t (*nvmlDeviceGetPowerManagementDefaultLimit_fn)(
    nvmlDevice_t device, unsigned int* defaultLimit);
typedef nvmlReturn_t (*nvmlDeviceGetPowerManagementLimit_fn)(
    nvmlDevice_t device, unsigned int* limit);
typedef nvmlReturn_t (*nvmlDeviceGetEnforcedPowerLimit_fn)(nvmlDevice_t device,
                                                           unsigned int* limit);
typedef nvmlReturn_t (*nvmlDeviceSetPowerManagementLimit_fn)(
    nvmlDevice_t device, unsigned int limit);
typedef nvmlReturn_t (*nvmlDeviceGetPowerUsage_fn)(nvmlDevice_t device,
                                                   unsigned int* power);
// Millijoules since the driver was last reloaded; Volta and newer.
typedef nvmlReturn_t (*nvmlDeviceGetTotalEnergyConsumption_fn)(
    nvmlDevice_t device, unsigned long long* energy);
typedef nvmlReturn_t (*nvmlDeviceGetTemperature_fn)(
    nvmlDevice_t device, nvmlTemperatureSensors_t sensorType,
    unsigned int* temp);
typedef nvmlReturn_t (*nvmlDeviceGetUtilizationRates_fn)(
    nvmlDevice_t device, nvmlUtilization_t* utilization);
typedef nvmlReturn_t (*nvmlDeviceGetClockInfo_fn)(nvmlDevice_t device,
                                                  nvmlClockType_t type,
                                                  unsigned int* clock);
typedef nvmlReturn_t (*nvmlDeviceGetMaxClockInfo_fn)(nvmlDevice_t device,
                                                     nvmlClockType_t type,
                                                     unsigned int* clock);
typedef nvmlReturn_t (*nvmlDeviceGetCurrentClocksThrottleReasons_fn)(
    nvmlDevice_t device, unsigned long long* clocksThrottleReasons);
// Volta and newer.
typedef nvmlReturn_t (*nvmlDeviceSetGpuLockedClocks_fn)(
    nvmlDevice_t device, unsigned int minGpuClockMHz,
    unsigned int maxGpuClockMHz);
typedef nvmlReturn_t (*nvmlDeviceResetGpuLockedClocks_fn)(nvmlDevice_t device);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // JOULE_AGENT_NVML_NVML_API_H_
