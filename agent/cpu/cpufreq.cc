#include "agent/cpu/cpufreq.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/cpu/sysfs.h"

namespace joule {
namespace {

absl::StatusOr<CpufreqPolicy> DescribePolicy(int id, const std::string& dir) {
  CpufreqPolicy policy;
  policy.id = id;
  policy.path = dir;
  absl::StatusOr<uint64_t> min_khz = ReadUint64File(dir + "/cpuinfo_min_freq");
  if (!min_khz.ok()) return min_khz.status();
  absl::StatusOr<uint64_t> max_khz = ReadUint64File(dir + "/cpuinfo_max_freq");
  if (!max_khz.ok()) return max_khz.status();
  if (*min_khz > *max_khz) {
    return absl::DataLossError(
        absl::StrCat(dir, ": cpuinfo_min_freq ", *min_khz,
                     " kHz exceeds cpuinfo_max_freq ", *max_khz, " kHz"));
  }
  policy.cpuinfo_min_khz = *min_khz;
  policy.cpuinfo_max_khz = *max_khz;
  const std::string cpus_path = dir + "/affected_cpus";
  absl::StatusOr<std::string> cpus = ReadStringFile(cpus_path);
  if (!cpus.ok()) return cpus.status();
  absl::StatusOr<std::vector<int>> parsed = ParseCpuList(*cpus, cpus_path);
  if (!parsed.ok()) return parsed.status();
  policy.cpus = *std::move(parsed);
  return policy;
}

}  // namespace

absl::StatusOr<std::vector<int>> ParseCpuList(const std::string& text,
                                              const std::string& source) {
  std::vector<int> cpus;
  for (absl::string_view token :
       absl::StrSplit(text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty())) {
    int cpu = 0;
    if (!ParseIndex(token, &cpu)) {
      return absl::DataLossError(absl::StrCat(
          source, ": not a list of CPU numbers: ", QuoteForError(text)));
    }
    cpus.push_back(cpu);
  }
  return cpus;
}

absl::StatusOr<CpufreqControl> CpufreqControl::Discover(
    const std::string& sysfs_root, std::vector<absl::Status>* skipped) {
  const std::string dir = sysfs_root + "/devices/system/cpu/cpufreq";
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
  if (absl::IsNotFound(names.status())) return CpufreqControl({});
  if (!names.ok()) return names.status();
  std::vector<CpufreqPolicy> policies;
  for (const std::string& name : *names) {
    absl::string_view rest = name;
    int id = 0;
    if (!absl::ConsumePrefix(&rest, "policy") || !ParseIndex(rest, &id)) {
      continue;  // "boost", "ondemand", ... are not policies.
    }
    absl::StatusOr<CpufreqPolicy> policy = DescribePolicy(id, dir + "/" + name);
    if (!policy.ok()) {
      if (skipped != nullptr) skipped->push_back(policy.status());
      continue;
    }
    policies.push_back(*std::move(policy));
  }
  std::sort(policies.begin(), policies.end(),
            [](const CpufreqPolicy& a, const CpufreqPolicy& b) {
              return a.id < b.id;
            });
  return CpufreqControl(std::move(policies));
}

CpufreqControl::CpufreqControl(std::vector<CpufreqPolicy> policies)
    : policies_(std::move(policies)) {}

absl::StatusOr<const CpufreqPolicy*> CpufreqControl::Find(int policy) const {
  for (const CpufreqPolicy& p : policies_) {
    if (p.id == policy) return &p;
  }
  return absl::NotFoundError(absl::StrCat("no cpufreq policy ", policy));
}

absl::StatusOr<CpufreqState> CpufreqControl::Read(int policy) const {
  absl::StatusOr<const CpufreqPolicy*> p = Find(policy);
  if (!p.ok()) return p.status();
  const std::string& dir = (*p)->path;
  CpufreqState state;
  for (auto [file, field] :
       {std::make_pair("scaling_min_freq", &state.scaling_min_khz),
        std::make_pair("scaling_max_freq", &state.scaling_max_khz),
        std::make_pair("scaling_cur_freq", &state.scaling_cur_khz),
        std::make_pair("cpuinfo_min_freq", &state.cpuinfo_min_khz),
        std::make_pair("cpuinfo_max_freq", &state.cpuinfo_max_khz)}) {
    absl::StatusOr<uint64_t> khz = ReadUint64File(absl::StrCat(dir, "/", file));
    if (!khz.ok()) return khz.status();
    *field = *khz;
  }
  return state;
}

absl::Status CpufreqControl::SetMaxFrequency(int policy, uint64_t khz) {
  absl::StatusOr<const CpufreqPolicy*> p = Find(policy);
  if (!p.ok()) return p.status();
  const CpufreqPolicy& pol = **p;
  const std::string path = pol.path + "/scaling_max_freq";
  if (khz < pol.cpuinfo_min_khz || khz > pol.cpuinfo_max_khz) {
    return absl::OutOfRangeError(
        absl::StrCat(path, ": ", khz, " kHz is outside the policy's range [",
                     pol.cpuinfo_min_khz, ", ", pol.cpuinfo_max_khz, "] kHz"));
  }
  return originals_.Write(path, khz);
}

absl::Status CpufreqControl::Restore() {
  return originals_.Restore("cpufreq limit(s)");
}

}  // namespace joule
