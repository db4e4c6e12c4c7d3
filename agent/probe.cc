#include "agent/probe.h"

#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace joule {
namespace {

const char* KindName(v1::DeviceKind kind) {
  switch (kind) {
    case v1::DEVICE_KIND_GPU:
      return "GPU";
    case v1::DEVICE_KIND_CPU:
      return "CPU";
    case v1::DEVICE_KIND_MEMORY:
      return "DRAM";
    default:
      return "?";
  }
}

const char* StateName(v1::SourceStatus::State state) {
  switch (state) {
    case v1::SourceStatus::STATE_OK:
      return "ok";
    case v1::SourceStatus::STATE_DEGRADED:
      return "degraded";
    case v1::SourceStatus::STATE_ABSENT:
      return "absent";
    default:
      return "?";
  }
}

void PrintSample(const v1::DeviceSample& s, std::ostream& out) {
  // A source without a temperature reports none rather than 0 C.
  const std::string temp =
      s.temp_c() != 0 ? absl::StrFormat("%5.1f C", s.temp_c()) : std::string("    -  ");
  out << absl::StrFormat("  %-4s %d  power %7.1f W  energy %9.1f J%s  temp %s  util %3.0f%%",
                         KindName(s.kind()), s.index(), s.power_w(), s.energy_j(),
                         s.energy_integrated() ? " (integrated)" : "", temp,
                         100 * s.utilization());
  if (s.kind() == v1::DEVICE_KIND_GPU) {
    out << absl::StrFormat("  mem %3.0f%%  sm %4d MHz  mem %5d MHz  cap %5.1f W  throttle 0x%x",
                           100 * s.memory_utilization(), s.sm_clock_mhz(),
                           s.mem_clock_mhz(), s.power_cap_w(), s.throttle_reasons());
  } else if (s.power_cap_w() > 0) {
    out << absl::StrFormat("  limit %5.1f W", s.power_cap_w());
  }
  out << "  [" << s.source() << "]\n";
}

}  // namespace

int RunProbe(Hardware& hardware, const Clock& clock, int samples,
             absl::Duration interval, std::ostream& out) {
  out << "sources:\n";
  for (const v1::SourceStatus& source : hardware.sources) {
    out << absl::StrFormat("  %-10s %-9s %s\n", source.name(), StateName(source.state()),
                           source.message());
  }
  out << "devices:\n";
  std::vector<v1::Device> devices;
  for (const auto& gpu : hardware.gpus) devices.push_back(gpu->Describe());
  if (hardware.cpu != nullptr) {
    for (const v1::Device& device : hardware.cpu->Describe()) devices.push_back(device);
  }
  for (const v1::Device& d : devices) {
    out << absl::StrFormat("  %-4s %d  %-20s source=%-9s", KindName(d.kind()), d.index(),
                           d.model(), d.source());
    if (d.kind() == v1::DEVICE_KIND_GPU) {
      out << absl::StrFormat("  %s  memory %.1f GiB  limit %.0f-%.0f W (default %.0f W)",
                             d.uuid(), d.memory_bytes() / double(1 << 30),
                             d.power_limit_min_w(), d.power_limit_max_w(),
                             d.power_limit_default_w());
    }
    out << "\n";
  }
  if (!hardware.cpu_settings.empty()) {
    out << "settings (read-only here):\n";
    for (const auto& [key, setting] : hardware.cpu_settings) {
      absl::StatusOr<double> value = setting.read();
      out << "  " << key << " = "
          << (value.ok() ? absl::StrFormat("%.0f", *value) : std::string(value.status().message()))
          << "\n";
    }
  }
  bool any_power = false;
  for (int i = 0; i < samples; ++i) {
    if (i > 0) absl::SleepFor(interval);
    const absl::Time now = clock.Now();
    out << absl::StrFormat("sample %d:\n", i + 1);
    for (auto& gpu : hardware.gpus) {
      absl::StatusOr<v1::DeviceSample> sample = gpu->Sample(now);
      if (sample.ok()) {
        PrintSample(*sample, out);
        any_power = true;
      } else {
        out << "  GPU  " << gpu->Describe().index() << "  error: " << sample.status().message()
            << "\n";
      }
    }
    if (hardware.cpu != nullptr) {
      absl::StatusOr<CpuReading> reading = hardware.cpu->Sample(now);
      if (!reading.ok()) {
        out << "  CPU  error: " << reading.status().message() << "\n";
        continue;
      }
      for (const v1::DeviceSample& sample : reading->samples) PrintSample(sample, out);
      for (const absl::Status& error : reading->errors) {
        out << "  CPU  error: " << error.message() << "\n";
      }
      any_power |= !reading->samples.empty();
    }
  }
  out.flush();
  return any_power ? 0 : 1;
}

}  // namespace joule
