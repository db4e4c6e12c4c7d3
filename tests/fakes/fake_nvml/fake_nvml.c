/*
 * A fake NVIDIA Management Library, built as libnvidia-ml.so.1, so that the
 * agent's real dlopen path (agent/nvml) can be tested on machines without
 * GPUs. It exports the NVML entry points Joule uses, with the real names and
 * signatures (checked at compile time against agent/nvml/nvml_api.h).
 *
 * Devices and readings come from a state file named by the environment
 * variable FAKE_NVML_STATE, re-read on every call so that a test can change
 * readings between samples. nvmlInit_v2 fails with
 * NVML_ERROR_DRIVER_NOT_LOADED when the variable is unset or the file is
 * missing (as the real library does on a machine whose driver is not
 * loaded); later calls return the same code if the file disappears.
 *
 * State file format: one statement per line; blank lines and lines starting
 * with '#' are ignored; fields are separated by spaces or tabs.
 *
 *   device <index> key=value ...
 *       A GPU. Indices must be 0..n-1 (n <= 16), each once; the device count
 *       is n. Keys (all optional; numbers are decimal or 0x-hex, default 0):
 *         name="Tesla V100-PCIE-16GB"  quoted if it has spaces, < 96 chars
 *         uuid=GPU-...                 < 96 chars
 *         memory_mib                   total memory, MiB
 *         power_mw                     nvmlDeviceGetPowerUsage
 *         energy_mj                    nvmlDeviceGetTotalEnergyConsumption
 *         energy_supported             default 1; 0 makes the energy counter
 *                                      return NVML_ERROR_NOT_SUPPORTED
 *         temp_c                       nvmlDeviceGetTemperature (GPU sensor)
 *         util_gpu, util_mem           percent
 *         sm_mhz, mem_mhz              current SM / memory clocks
 *         max_sm_mhz, max_mem_mhz      nvmlDeviceGetMaxClockInfo
 *         limit_min_mw, limit_max_mw   power-limit constraints
 *         limit_default_mw             default power limit
 *         limit_mw                     power limit in force (management and
 *                                      enforced limit alike)
 *         throttle                     clocks-throttle-reason bitmask
 *         locked_sm=<min>-<max>        locked SM clocks (MHz)
 *   fail <function> <index|*> <code>
 *       Every call of NVML function <function> (its exported name, e.g.
 *       nvmlDeviceGetTemperature) on device <index>, or on any device and
 *       for device-less calls with '*', returns NVML return code <code>
 *       (e.g. 999 = NVML_ERROR_UNKNOWN). The first matching line wins.
 *   lost <index>
 *       The GPU fell off the bus: every call on it, including
 *       nvmlDeviceGetHandleByIndex_v2, returns NVML_ERROR_GPU_IS_LOST.
 *
 * Set calls persist into the file (rewritten atomically through a temporary
 * file and rename, comments and other lines kept), so tests and a restarted
 * agent see what was left behind: nvmlDeviceSetPowerManagementLimit rewrites
 * the device's limit_mw (refusing values outside [limit_min_mw,
 * limit_max_mw] with NVML_ERROR_INVALID_ARGUMENT, as the driver does),
 * nvmlDeviceSetGpuLockedClocks writes locked_sm=<min>-<max> and
 * nvmlDeviceResetGpuLockedClocks removes it.
 *
 * Robustness: the file is read whole up to 64 KiB into a fixed buffer; a
 * larger file, an unknown statement or key, a malformed number, an
 * over-long string or an unterminated quote make the call return
 * NVML_ERROR_UNKNOWN (with a line on stderr), never undefined behaviour.
 * Thread-safe: every entry point holds one mutex.
 */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/nvml/nvml_api.h"

enum {
  kMaxDevices = 16,
  kMaxFails = 64,
  kMaxFileBytes = 64 * 1024,
  kMaxText = 96,
  kMaxFunctionName = 64,
  kMaxTokens = 64,
  kMaxPath = 4096,
};

/* The handles the fake hands out are pointers into a static array; the
 * device index is the element's position. */
struct nvmlDevice_st {
  char unused;
};

typedef struct {
  unsigned int index;
  int present;
  int lost;
  char name[kMaxText];
  char uuid[kMaxText];
  unsigned long long memory_mib;
  unsigned long long power_mw;
  unsigned long long energy_mj;
  unsigned long long energy_supported;
  unsigned long long temp_c;
  unsigned long long util_gpu;
  unsigned long long util_mem;
  unsigned long long sm_mhz;
  unsigned long long mem_mhz;
  unsigned long long max_sm_mhz;
  unsigned long long max_mem_mhz;
  unsigned long long limit_min_mw;
  unsigned long long limit_max_mw;
  unsigned long long limit_default_mw;
  unsigned long long limit_mw;
  unsigned long long throttle;
  int locked;
  unsigned long long locked_min_mhz;
  unsigned long long locked_max_mhz;
} FakeDevice;

typedef struct {
  char function[kMaxFunctionName];
  int device; /* -1: any device, and device-less calls */
  int code;
} FakeFail;

typedef struct {
  unsigned int count;
  FakeDevice devices[kMaxDevices];
  unsigned int fail_count;
  FakeFail fails[kMaxFails];
} FakeState;

/* A [begin, end) slice of the state text. */
typedef struct {
  const char* begin;
  size_t size;
} Span;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_init_count;
static struct nvmlDevice_st g_handles[kMaxDevices];
static FakeState g_state;
static char g_text[kMaxFileBytes + 1];
static size_t g_text_size;
static char g_out[kMaxFileBytes + 1];

/* ---------------------------------------------------------------------- */
/* Parsing                                                                  */
/* ---------------------------------------------------------------------- */

static int SpanIs(Span s, const char* word) {
  size_t n = strlen(word);
  return s.size == n && memcmp(s.begin, word, n) == 0;
}

static int IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Splits `line` into fields separated by blanks; a double-quoted run is part
 * of its field. Returns the field count, or -1 on an unterminated quote or
 * too many fields. */
static int Tokenize(Span line, Span* tokens, int max_tokens) {
  const char* p = line.begin;
  const char* end = line.begin + line.size;
  int n = 0;
  while (p < end) {
    while (p < end && IsSpace(*p)) ++p;
    if (p >= end) break;
    if (n >= max_tokens) return -1;
    const char* start = p;
    int quoted = 0;
    while (p < end && (quoted || !IsSpace(*p))) {
      if (*p == '"') quoted = !quoted;
      ++p;
    }
    if (quoted) return -1;
    tokens[n].begin = start;
    tokens[n].size = (size_t)(p - start);
    ++n;
  }
  return n;
}

/* Decimal or 0x-hex, the whole span, no overflow. */
static int ParseU64(Span s, unsigned long long* out) {
  unsigned long long value = 0;
  unsigned base = 10;
  size_t i = 0;
  if (s.size > 2 && s.begin[0] == '0' &&
      (s.begin[1] == 'x' || s.begin[1] == 'X')) {
    base = 16;
    i = 2;
  }
  if (i >= s.size) return 0;
  for (; i < s.size; ++i) {
    char c = s.begin[i];
    unsigned digit;
    if (c >= '0' && c <= '9') {
      digit = (unsigned)(c - '0');
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      digit = (unsigned)(c - 'a' + 10);
    } else if (base == 16 && c >= 'A' && c <= 'F') {
      digit = (unsigned)(c - 'A' + 10);
    } else {
      return 0;
    }
    if (value > (ULLONG_MAX - digit) / base) return 0;
    value = value * base + digit;
  }
  *out = value;
  return 1;
}

/* A possibly quoted string into a NUL-terminated buffer of kMaxText. */
static int ParseText(Span s, char* out) {
  if (s.size >= 2 && s.begin[0] == '"' && s.begin[s.size - 1] == '"') {
    s.begin += 1;
    s.size -= 2;
  }
  if (s.size >= kMaxText || memchr(s.begin, '"', s.size) != NULL) return 0;
  memcpy(out, s.begin, s.size);
  out[s.size] = '\0';
  return 1;
}

static int ParseIndex(Span s, unsigned int* index) {
  unsigned long long value;
  if (!ParseU64(s, &value) || value >= kMaxDevices) return 0;
  *index = (unsigned int)value;
  return 1;
}

/* Splits "key=value"; returns 0 without '='. */
static int SplitKeyValue(Span token, Span* key, Span* value) {
  const char* eq = memchr(token.begin, '=', token.size);
  if (eq == NULL) return 0;
  key->begin = token.begin;
  key->size = (size_t)(eq - token.begin);
  value->begin = eq + 1;
  value->size = token.size - key->size - 1;
  return 1;
}

static unsigned long long* NumberField(FakeDevice* d, Span key) {
  if (SpanIs(key, "memory_mib")) return &d->memory_mib;
  if (SpanIs(key, "power_mw")) return &d->power_mw;
  if (SpanIs(key, "energy_mj")) return &d->energy_mj;
  if (SpanIs(key, "energy_supported")) return &d->energy_supported;
  if (SpanIs(key, "temp_c")) return &d->temp_c;
  if (SpanIs(key, "util_gpu")) return &d->util_gpu;
  if (SpanIs(key, "util_mem")) return &d->util_mem;
  if (SpanIs(key, "sm_mhz")) return &d->sm_mhz;
  if (SpanIs(key, "mem_mhz")) return &d->mem_mhz;
  if (SpanIs(key, "max_sm_mhz")) return &d->max_sm_mhz;
  if (SpanIs(key, "max_mem_mhz")) return &d->max_mem_mhz;
  if (SpanIs(key, "limit_min_mw")) return &d->limit_min_mw;
  if (SpanIs(key, "limit_max_mw")) return &d->limit_max_mw;
  if (SpanIs(key, "limit_default_mw")) return &d->limit_default_mw;
  if (SpanIs(key, "limit_mw")) return &d->limit_mw;
  if (SpanIs(key, "throttle")) return &d->throttle;
  return NULL;
}

static int ParseDeviceField(FakeDevice* d, Span token) {
  Span key, value;
  if (!SplitKeyValue(token, &key, &value)) return 0;
  if (SpanIs(key, "name")) return ParseText(value, d->name);
  if (SpanIs(key, "uuid")) return ParseText(value, d->uuid);
  if (SpanIs(key, "locked_sm")) {
    const char* dash = memchr(value.begin, '-', value.size);
    if (dash == NULL) return 0;
    Span lo = {value.begin, (size_t)(dash - value.begin)};
    Span hi = {dash + 1, value.size - lo.size - 1};
    if (!ParseU64(lo, &d->locked_min_mhz) ||
        !ParseU64(hi, &d->locked_max_mhz)) {
      return 0;
    }
    d->locked = 1;
    return 1;
  }
  unsigned long long* field = NumberField(d, key);
  return field != NULL && ParseU64(value, field);
}

/* Why a line is rejected, for the stderr message. */
static const char* ParseLine(Span line, FakeState* state, int* lost) {
  Span tokens[kMaxTokens];
  int n = Tokenize(line, tokens, kMaxTokens);
  if (n < 0) return "unterminated quote or too many fields";
  if (n == 0 || tokens[0].begin[0] == '#') return NULL;
  if (SpanIs(tokens[0], "device")) {
    unsigned int index;
    if (n < 2 || !ParseIndex(tokens[1], &index)) return "bad device index";
    FakeDevice* d = &state->devices[index];
    if (d->present) return "device index given twice";
    d->present = 1;
    d->energy_supported = 1;
    for (int i = 2; i < n; ++i) {
      if (!ParseDeviceField(d, tokens[i])) return "bad device field";
    }
    if (index + 1 > state->count) state->count = index + 1;
    return NULL;
  }
  if (SpanIs(tokens[0], "fail")) {
    if (n != 4) return "expected: fail <function> <index|*> <code>";
    if (state->fail_count >= kMaxFails) return "too many fail lines";
    FakeFail* f = &state->fails[state->fail_count];
    if (tokens[1].size >= kMaxFunctionName) return "function name too long";
    memcpy(f->function, tokens[1].begin, tokens[1].size);
    f->function[tokens[1].size] = '\0';
    if (SpanIs(tokens[2], "*")) {
      f->device = -1;
    } else {
      unsigned int index;
      if (!ParseIndex(tokens[2], &index)) return "bad fail device";
      f->device = (int)index;
    }
    unsigned long long code;
    if (!ParseU64(tokens[3], &code) || code > INT_MAX) return "bad fail code";
    f->code = (int)code;
    ++state->fail_count;
    return NULL;
  }
  if (SpanIs(tokens[0], "lost")) {
    unsigned int index;
    if (n != 2 || !ParseIndex(tokens[1], &index))
      return "expected: lost <index>";
    lost[index] = 1;
    return NULL;
  }
  return "unknown statement";
}

/* The next line of the text at *pos (without its '\n'); 0 at the end. */
static int NextLine(const char* text, size_t size, size_t* pos, Span* line) {
  if (*pos >= size) return 0;
  const char* start = text + *pos;
  const char* nl = memchr(start, '\n', size - *pos);
  size_t len = nl != NULL ? (size_t)(nl - start) : size - *pos;
  line->begin = start;
  line->size = len;
  *pos += len + (nl != NULL ? 1 : 0);
  return 1;
}

/* Reads and parses the state file into g_text / g_state. */
static nvmlReturn_t LoadState(void) {
  const char* path = getenv("FAKE_NVML_STATE");
  if (path == NULL || path[0] == '\0') return NVML_ERROR_DRIVER_NOT_LOADED;
  FILE* f = fopen(path, "rb");
  if (f == NULL) return NVML_ERROR_DRIVER_NOT_LOADED;
  g_text_size = fread(g_text, 1, sizeof(g_text), f);
  int bad = ferror(f);
  fclose(f);
  if (bad || g_text_size > kMaxFileBytes) {
    fprintf(stderr, "fake_nvml: %s: unreadable or over %d bytes\n", path,
            kMaxFileBytes);
    return NVML_ERROR_UNKNOWN;
  }
  g_text[g_text_size] = '\0';

  memset(&g_state, 0, sizeof(g_state));
  int lost[kMaxDevices] = {0};
  size_t pos = 0;
  int line_number = 0;
  Span line;
  while (NextLine(g_text, g_text_size, &pos, &line)) {
    ++line_number;
    const char* why = ParseLine(line, &g_state, lost);
    if (why != NULL) {
      fprintf(stderr, "fake_nvml: %s:%d: %s\n", path, line_number, why);
      return NVML_ERROR_UNKNOWN;
    }
  }
  for (unsigned int i = 0; i < g_state.count; ++i) {
    if (!g_state.devices[i].present) {
      fprintf(stderr,
              "fake_nvml: %s: device %u missing (indices must be "
              "0..n-1)\n",
              path, i);
      return NVML_ERROR_UNKNOWN;
    }
  }
  for (unsigned int i = 0; i < kMaxDevices; ++i) {
    g_state.devices[i].index = i;
    g_state.devices[i].lost = lost[i];
  }
  return NVML_SUCCESS;
}

/* ---------------------------------------------------------------------- */
/* Persisting                                                               */
/* ---------------------------------------------------------------------- */

static int Append(size_t* size, const char* data, size_t n) {
  if (*size + n > kMaxFileBytes) return 0;
  memcpy(g_out + *size, data, n);
  *size += n;
  return 1;
}

/* Rewrites the state file with device `index`'s `key` set to `value`, or
 * removed where `value` is NULL. Every other byte is kept. */
static nvmlReturn_t PersistField(unsigned int index, const char* key,
                                 const char* value) {
  const char* path = getenv("FAKE_NVML_STATE");
  if (path == NULL || path[0] == '\0') return NVML_ERROR_DRIVER_NOT_LOADED;
  size_t out = 0;
  size_t pos = 0;
  Span line;
  int done = 0;
  while (NextLine(g_text, g_text_size, &pos, &line)) {
    Span tokens[kMaxTokens];
    int n = Tokenize(line, tokens, kMaxTokens);
    unsigned int line_index;
    int ok = 1;
    if (!done && n >= 2 && SpanIs(tokens[0], "device") &&
        ParseIndex(tokens[1], &line_index) && line_index == index) {
      ok = Append(&out, tokens[0].begin,
                  (size_t)(tokens[1].begin + tokens[1].size - tokens[0].begin));
      for (int i = 2; ok && i < n; ++i) {
        Span k, v;
        if (SplitKeyValue(tokens[i], &k, &v) && SpanIs(k, key)) continue;
        ok = Append(&out, " ", 1) &&
             Append(&out, tokens[i].begin, tokens[i].size);
      }
      if (ok && value != NULL) {
        char field[128];
        int len = snprintf(field, sizeof(field), " %s=%s", key, value);
        ok = len > 0 && (size_t)len < sizeof(field) &&
             Append(&out, field, (size_t)len);
      }
      done = 1;
    } else {
      ok = Append(&out, line.begin, line.size);
    }
    /* Keep the line's own newline (the last line may have none). */
    if (ok && line.begin + line.size < g_text + g_text_size) {
      ok = Append(&out, "\n", 1);
    }
    if (!ok) return NVML_ERROR_UNKNOWN;
  }
  if (!done) return NVML_ERROR_INVALID_ARGUMENT;

  char tmp[kMaxPath];
  int len = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  if (len <= 0 || (size_t)len >= sizeof(tmp)) return NVML_ERROR_UNKNOWN;
  FILE* f = fopen(tmp, "wb");
  if (f == NULL) return NVML_ERROR_UNKNOWN;
  size_t written = fwrite(g_out, 1, out, f);
  int bad = ferror(f);
  if (fclose(f) != 0 || bad || written != out || rename(tmp, path) != 0) {
    remove(tmp);
    return NVML_ERROR_UNKNOWN;
  }
  return NVML_SUCCESS;
}

/* ---------------------------------------------------------------------- */
/* Call plumbing                                                            */
/* ---------------------------------------------------------------------- */

/* The injected failure for `function` on `device` (-1: none), or success. */
static nvmlReturn_t InjectedFailure(const char* function, int device) {
  for (unsigned int i = 0; i < g_state.fail_count; ++i) {
    const FakeFail* f = &g_state.fails[i];
    if (strcmp(f->function, function) == 0 &&
        (f->device == -1 || f->device == device)) {
      return (nvmlReturn_t)f->code;
    }
  }
  return NVML_SUCCESS;
}

/* Checks initialization and loads the state (lock held). */
static nvmlReturn_t Prepare(void) {
  if (g_init_count == 0) return NVML_ERROR_UNINITIALIZED;
  return LoadState();
}

/* Start of a device-less call (lock held). */
static nvmlReturn_t BeginCall(const char* function) {
  nvmlReturn_t ret = Prepare();
  if (ret != NVML_SUCCESS) return ret;
  return InjectedFailure(function, -1);
}

/* Start of a call on device `index` (lock held). */
static nvmlReturn_t BeginIndexCall(const char* function, unsigned int index,
                                   FakeDevice** device) {
  nvmlReturn_t ret = Prepare();
  if (ret != NVML_SUCCESS) return ret;
  if (index >= g_state.count) return NVML_ERROR_INVALID_ARGUMENT;
  if (g_state.devices[index].lost) return NVML_ERROR_GPU_IS_LOST;
  ret = InjectedFailure(function, (int)index);
  if (ret != NVML_SUCCESS) return ret;
  *device = &g_state.devices[index];
  return NVML_SUCCESS;
}

/* Start of a call on a handle (lock held). */
static nvmlReturn_t BeginDeviceCall(const char* function, nvmlDevice_t handle,
                                    FakeDevice** device) {
  uintptr_t p = (uintptr_t)handle;
  uintptr_t first = (uintptr_t)&g_handles[0];
  uintptr_t last = (uintptr_t)&g_handles[kMaxDevices - 1];
  if (p < first || p > last || (p - first) % sizeof(g_handles[0]) != 0) {
    return g_init_count == 0 ? NVML_ERROR_UNINITIALIZED
                             : NVML_ERROR_INVALID_ARGUMENT;
  }
  return BeginIndexCall(
      function, (unsigned int)((p - first) / sizeof(g_handles[0])), device);
}

static unsigned int ToUint(unsigned long long v) {
  return v > UINT_MAX ? UINT_MAX : (unsigned int)v;
}

/* The body of an exported call on a device handle: takes the lock, runs
 * the common checks, then the statements given (which see the device as `d`
 * and may set `ret`). */
#define LOCKED_DEVICE_CALL(handle, ...)                         \
  do {                                                          \
    FakeDevice* d = NULL;                                       \
    pthread_mutex_lock(&g_mu);                                  \
    nvmlReturn_t ret = BeginDeviceCall(__func__, (handle), &d); \
    if (ret == NVML_SUCCESS) {                                  \
      __VA_ARGS__                                               \
    }                                                           \
    pthread_mutex_unlock(&g_mu);                                \
    return ret;                                                 \
  } while (0)

/* ---------------------------------------------------------------------- */
/* Exported NVML API                                                       */
/* ---------------------------------------------------------------------- */

nvmlReturn_t nvmlInit_v2(void) {
  pthread_mutex_lock(&g_mu);
  nvmlReturn_t ret = LoadState();
  if (ret == NVML_SUCCESS) ret = InjectedFailure(__func__, -1);
  if (ret == NVML_SUCCESS) {
    ++g_init_count;
  }
  pthread_mutex_unlock(&g_mu);
  return ret;
}

nvmlReturn_t nvmlShutdown(void) {
  pthread_mutex_lock(&g_mu);
  nvmlReturn_t ret = NVML_SUCCESS;
  if (g_init_count == 0) {
    ret = NVML_ERROR_UNINITIALIZED;
  } else {
    --g_init_count;
  }
  pthread_mutex_unlock(&g_mu);
  return ret;
}

const char* nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_NO_PERMISSION:
      return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED:
      return "Already Initialized";
    case NVML_ERROR_NOT_FOUND:
      return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER:
      return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT:
      return "Timeout";
    case NVML_ERROR_IRQ_ISSUE:
      return "Interrupt request issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND:
      return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND:
      return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM:
      return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST:
      return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED:
      return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM:
      return "The operating system has blocked the request.";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH:
      return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_IN_USE:
      return "In use by another client";
    case NVML_ERROR_MEMORY:
      return "Insufficient Memory";
    case NVML_ERROR_NO_DATA:
      return "No data";
    default:
      return "Unknown Error";
  }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* deviceCount) {
  pthread_mutex_lock(&g_mu);
  nvmlReturn_t ret = BeginCall(__func__);
  if (ret == NVML_SUCCESS) {
    if (deviceCount == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *deviceCount = g_state.count;
    }
  }
  pthread_mutex_unlock(&g_mu);
  return ret;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index,
                                           nvmlDevice_t* device) {
  FakeDevice* d = NULL;
  pthread_mutex_lock(&g_mu);
  nvmlReturn_t ret = BeginIndexCall(__func__, index, &d);
  if (ret == NVML_SUCCESS) {
    if (device == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *device = &g_handles[index];
    }
  }
  pthread_mutex_unlock(&g_mu);
  return ret;
}

static nvmlReturn_t CopyText(const char* text, char* out, unsigned int length) {
  if (out == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  size_t n = strlen(text);
  if (length < n + 1) return NVML_ERROR_INSUFFICIENT_SIZE;
  memcpy(out, text, n + 1);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name,
                               unsigned int length) {
  LOCKED_DEVICE_CALL(device, { ret = CopyText(d->name, name, length); });
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid,
                               unsigned int length) {
  LOCKED_DEVICE_CALL(device, { ret = CopyText(d->uuid, uuid, length); });
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device,
                                     nvmlMemory_t* memory) {
  LOCKED_DEVICE_CALL(device, {
    if (memory == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      const unsigned long long kMiB = 1024ULL * 1024ULL;
      memory->total =
          d->memory_mib > ULLONG_MAX / kMiB ? ULLONG_MAX : d->memory_mib * kMiB;
      memory->free = memory->total;
      memory->used = 0;
    }
  });
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(
    nvmlDevice_t device, unsigned int* minLimit, unsigned int* maxLimit) {
  LOCKED_DEVICE_CALL(device, {
    if (minLimit == NULL || maxLimit == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *minLimit = ToUint(d->limit_min_mw);
      *maxLimit = ToUint(d->limit_max_mw);
    }
  });
}

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(
    nvmlDevice_t device, unsigned int* defaultLimit) {
  LOCKED_DEVICE_CALL(device, {
    if (defaultLimit == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *defaultLimit = ToUint(d->limit_default_mw);
    }
  });
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t device,
                                               unsigned int* limit) {
  LOCKED_DEVICE_CALL(device, {
    if (limit == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *limit = ToUint(d->limit_mw);
    }
  });
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device,
                                             unsigned int* limit) {
  LOCKED_DEVICE_CALL(device, {
    if (limit == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *limit = ToUint(d->limit_mw);
    }
  });
}

nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t device,
                                               unsigned int limit) {
  LOCKED_DEVICE_CALL(device, {
    if (limit < d->limit_min_mw || limit > d->limit_max_mw) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      char value[32];
      snprintf(value, sizeof(value), "%u", limit);
      ret = PersistField(d->index, "limit_mw", value);
    }
  });
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int* power) {
  LOCKED_DEVICE_CALL(device, {
    if (power == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *power = ToUint(d->power_mw);
    }
  });
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                                 unsigned long long* energy) {
  LOCKED_DEVICE_CALL(device, {
    if (!d->energy_supported) {
      ret = NVML_ERROR_NOT_SUPPORTED;
    } else if (energy == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *energy = d->energy_mj;
    }
  });
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device,
                                      nvmlTemperatureSensors_t sensorType,
                                      unsigned int* temp) {
  LOCKED_DEVICE_CALL(device, {
    if (sensorType != NVML_TEMPERATURE_GPU || temp == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *temp = ToUint(d->temp_c);
    }
  });
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device,
                                           nvmlUtilization_t* utilization) {
  LOCKED_DEVICE_CALL(device, {
    if (utilization == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      utilization->gpu = ToUint(d->util_gpu);
      utilization->memory = ToUint(d->util_mem);
    }
  });
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type,
                                    unsigned int* clock) {
  LOCKED_DEVICE_CALL(device, {
    if (clock == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else if (type == NVML_CLOCK_SM || type == NVML_CLOCK_GRAPHICS) {
      *clock = ToUint(d->sm_mhz);
    } else if (type == NVML_CLOCK_MEM) {
      *clock = ToUint(d->mem_mhz);
    } else {
      ret = NVML_ERROR_NOT_SUPPORTED;
    }
  });
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device,
                                       nvmlClockType_t type,
                                       unsigned int* clock) {
  LOCKED_DEVICE_CALL(device, {
    if (clock == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else if (type == NVML_CLOCK_SM || type == NVML_CLOCK_GRAPHICS) {
      *clock = ToUint(d->max_sm_mhz);
    } else if (type == NVML_CLOCK_MEM) {
      *clock = ToUint(d->max_mem_mhz);
    } else {
      ret = NVML_ERROR_NOT_SUPPORTED;
    }
  });
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(
    nvmlDevice_t device, unsigned long long* clocksThrottleReasons) {
  LOCKED_DEVICE_CALL(device, {
    if (clocksThrottleReasons == NULL) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      *clocksThrottleReasons = d->throttle;
    }
  });
}

nvmlReturn_t nvmlDeviceSetGpuLockedClocks(nvmlDevice_t device,
                                          unsigned int minGpuClockMHz,
                                          unsigned int maxGpuClockMHz) {
  LOCKED_DEVICE_CALL(device, {
    if (minGpuClockMHz > maxGpuClockMHz) {
      ret = NVML_ERROR_INVALID_ARGUMENT;
    } else {
      char value[32];
      snprintf(value, sizeof(value), "%u-%u", minGpuClockMHz, maxGpuClockMHz);
      ret = PersistField(d->index, "locked_sm", value);
    }
  });
}

nvmlReturn_t nvmlDeviceResetGpuLockedClocks(nvmlDevice_t device) {
  LOCKED_DEVICE_CALL(device, {
    (void)d;
    ret = PersistField(d->index, "locked_sm", NULL);
  });
}

/* Every export has exactly the signature agent/nvml/nvml_api.h declares. */
#define CHECK_SIGNATURE(name)                                                \
  _Static_assert(__builtin_types_compatible_p(__typeof__(&name), name##_fn), \
                 #name " does not match agent/nvml/nvml_api.h")
CHECK_SIGNATURE(nvmlInit_v2);
CHECK_SIGNATURE(nvmlShutdown);
CHECK_SIGNATURE(nvmlErrorString);
CHECK_SIGNATURE(nvmlDeviceGetCount_v2);
CHECK_SIGNATURE(nvmlDeviceGetHandleByIndex_v2);
CHECK_SIGNATURE(nvmlDeviceGetName);
CHECK_SIGNATURE(nvmlDeviceGetUUID);
CHECK_SIGNATURE(nvmlDeviceGetMemoryInfo);
CHECK_SIGNATURE(nvmlDeviceGetPowerManagementLimitConstraints);
CHECK_SIGNATURE(nvmlDeviceGetPowerManagementDefaultLimit);
CHECK_SIGNATURE(nvmlDeviceGetPowerManagementLimit);
CHECK_SIGNATURE(nvmlDeviceGetEnforcedPowerLimit);
CHECK_SIGNATURE(nvmlDeviceSetPowerManagementLimit);
CHECK_SIGNATURE(nvmlDeviceGetPowerUsage);
CHECK_SIGNATURE(nvmlDeviceGetTotalEnergyConsumption);
CHECK_SIGNATURE(nvmlDeviceGetTemperature);
CHECK_SIGNATURE(nvmlDeviceGetUtilizationRates);
CHECK_SIGNATURE(nvmlDeviceGetClockInfo);
CHECK_SIGNATURE(nvmlDeviceGetMaxClockInfo);
CHECK_SIGNATURE(nvmlDeviceGetCurrentClocksThrottleReasons);
CHECK_SIGNATURE(nvmlDeviceSetGpuLockedClocks);
CHECK_SIGNATURE(nvmlDeviceResetGpuLockedClocks);
