#include "agent/cpu/rapl.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/cpu/sysfs.h"

namespace joule {
namespace {

constexpr absl::string_view kZonePrefix = "intel-rapl:";
constexpr double kMicro = 1e-6;

// Splits "intel-rapl:N" / "intel-rapl:N:M" into its indices; false for
// anything else (including "intel-rapl" itself and "intel-rapl-mmio:0").
bool ParseZoneName(absl::string_view entry, std::vector<int>* indices) {
  if (!absl::ConsumePrefix(&entry, kZonePrefix)) return false;
  indices->clear();
  for (absl::string_view part : absl::StrSplit(entry, ':')) {
    int index = 0;
    if (!ParseIndex(part, &index)) return false;
    indices->push_back(index);
  }
  return indices->size() == 1 || indices->size() == 2;
}

// The constraint indices that have a constraint_K_power_limit_uw file.
std::vector<RaplConstraint> ListConstraints(
    const std::string& zone_dir, const std::vector<std::string>& names) {
  std::vector<RaplConstraint> constraints;
  for (const std::string& name : names) {
    absl::string_view rest = name;
    int index = 0;
    if (!absl::ConsumePrefix(&rest, "constraint_") ||
        !absl::ConsumeSuffix(&rest, "_power_limit_uw") ||
        !ParseIndex(rest, &index)) {
      continue;
    }
    RaplConstraint constraint;
    constraint.index = index;
    // The name is optional (powercap.rst); an unreadable one is as good as
    // none for identifying the constraint.
    absl::StatusOr<std::string> constraint_name =
        ReadStringFile(absl::StrCat(zone_dir, "/constraint_", index, "_name"));
    if (constraint_name.ok()) constraint.name = *constraint_name;
    constraints.push_back(std::move(constraint));
  }
  std::sort(constraints.begin(), constraints.end(),
            [](const RaplConstraint& a, const RaplConstraint& b) {
              return a.index < b.index;
            });
  return constraints;
}

// Reads name, max_energy_range_uj and the constraints of one zone.
absl::StatusOr<RaplDomain> DescribeZone(const std::string& class_dir,
                                        const std::string& entry) {
  RaplDomain domain;
  domain.zone = entry;
  domain.path = class_dir + "/" + entry;
  absl::StatusOr<std::string> name = ReadStringFile(domain.path + "/name");
  if (!name.ok()) return name.status();
  if (name->empty()) {
    return absl::DataLossError(absl::StrCat(domain.path, "/name: empty"));
  }
  domain.name = *name;
  return domain;
}

absl::Status CompleteZone(RaplDomain* domain) {
  const std::string range_path = domain->path + "/max_energy_range_uj";
  absl::StatusOr<uint64_t> range = ReadUint64File(range_path);
  if (!range.ok()) return range.status();
  if (*range == 0) {
    return absl::DataLossError(absl::StrCat(
        range_path, ": a counter range of 0 cannot measure energy"));
  }
  domain->max_energy_range_uj = *range;
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(domain->path);
  if (!names.ok()) return names.status();
  domain->constraints = ListConstraints(domain->path, *names);
  return absl::OkStatus();
}

// The index of the long-term constraint: the one named "long_term", else
// constraint 0 when no constraint is named (RAPL lists the long-term limit
// first, powercap.rst); -1 when there is none.
int LongTermConstraint(const RaplDomain& domain) {
  bool any_named = false;
  for (const RaplConstraint& c : domain.constraints) {
    if (c.name == "long_term") return c.index;
    any_named = any_named || !c.name.empty();
  }
  if (!any_named) {
    for (const RaplConstraint& c : domain.constraints) {
      if (c.index == 0) return 0;
    }
  }
  return -1;
}

const RaplPowerLimit* FindLimit(const std::vector<RaplPowerLimit>& limits,
                                int constraint) {
  for (const RaplPowerLimit& limit : limits) {
    if (limit.constraint == constraint) return &limit;
  }
  return nullptr;
}

// Reads an optional attribute: absent -> nullopt; present but unreadable or
// malformed -> the error.
absl::Status ReadOptional(const std::string& path,
                          absl::optional<uint64_t>* value) {
  absl::StatusOr<uint64_t> read = ReadUint64File(path);
  if (absl::IsNotFound(read.status())) return absl::OkStatus();
  if (!read.ok()) return read.status();
  *value = *read;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<RaplDomain>> DiscoverRapl(
    const std::string& sysfs_root, std::vector<absl::Status>* skipped) {
  std::vector<absl::Status> local_skipped;
  if (skipped == nullptr) skipped = &local_skipped;
  const std::string class_dir = sysfs_root + "/class/powercap";
  absl::StatusOr<std::vector<std::string>> entries = ListDirectory(class_dir);
  if (absl::IsNotFound(entries.status())) return std::vector<RaplDomain>{};
  if (!entries.ok()) return entries.status();

  // Top-level zones first: a dram subzone takes its package from its parent.
  std::map<int, RaplDomain> packages;  // by top-level zone index N
  std::vector<std::pair<std::vector<int>, std::string>> subzones;
  for (const std::string& entry : *entries) {
    std::vector<int> indices;
    if (!ParseZoneName(entry, &indices)) continue;
    if (indices.size() == 2) {
      subzones.emplace_back(indices, entry);
      continue;
    }
    absl::StatusOr<RaplDomain> domain = DescribeZone(class_dir, entry);
    if (!domain.ok()) {
      skipped->push_back(domain.status());
      continue;
    }
    absl::string_view rest = domain->name;
    int package = 0;
    if (!absl::ConsumePrefix(&rest, "package-") ||
        !ParseIndex(rest, &package)) {
      continue;  // psys and other platform zones.
    }
    domain->package = package;
    if (absl::Status status = CompleteZone(&*domain); !status.ok()) {
      skipped->push_back(status);
      continue;
    }
    packages.emplace(indices[0], *std::move(domain));
  }

  std::vector<RaplDomain> drams;
  for (const auto& [indices, entry] : subzones) {
    auto parent = packages.find(indices[0]);
    if (parent == packages.end()) continue;  // Under psys, or parent skipped.
    absl::StatusOr<RaplDomain> domain = DescribeZone(class_dir, entry);
    if (!domain.ok()) {
      skipped->push_back(domain.status());
      continue;
    }
    if (domain->name != "dram") continue;  // core, uncore.
    domain->package = parent->second.package;
    domain->dram = true;
    if (absl::Status status = CompleteZone(&*domain); !status.ok()) {
      skipped->push_back(status);
      continue;
    }
    drams.push_back(*std::move(domain));
  }

  std::vector<RaplDomain> domains;
  for (auto& [unused_index, domain] : packages) {
    domains.push_back(std::move(domain));
  }
  for (RaplDomain& domain : drams) domains.push_back(std::move(domain));
  std::stable_sort(domains.begin(), domains.end(),
                   [](const RaplDomain& a, const RaplDomain& b) {
                     if (a.package != b.package) return a.package < b.package;
                     return !a.dram && b.dram;
                   });
  return domains;
}

absl::StatusOr<uint64_t> RaplDeltaUj(uint64_t prev_uj, uint64_t cur_uj,
                                     uint64_t max_energy_range_uj,
                                     const std::string& source) {
  if (prev_uj > max_energy_range_uj || cur_uj > max_energy_range_uj) {
    return absl::DataLossError(
        absl::StrCat(source, ": counter value ", std::max(prev_uj, cur_uj),
                     " uJ exceeds max_energy_range_uj ", max_energy_range_uj));
  }
  if (cur_uj >= prev_uj) return cur_uj - prev_uj;
  // One wrap: up to the top of the range, past it to 0, then up to cur. Fits
  // in 64 bits: the sum is at most max_energy_range_uj since cur < prev.
  return (max_energy_range_uj - prev_uj) + cur_uj + 1;
}

RaplReader::RaplReader(std::vector<RaplDomain> domains)
    : domains_(std::move(domains)), last_uj_(domains_.size()) {}

absl::Status RaplReader::CheckDomain(size_t domain) const {
  if (domain >= domains_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no RAPL domain ", domain, "; there are ", domains_.size()));
  }
  return absl::OkStatus();
}

absl::Status RaplReader::CheckConstraint(size_t domain, int constraint) const {
  if (absl::Status status = CheckDomain(domain); !status.ok()) return status;
  for (const RaplConstraint& c : domains_[domain].constraints) {
    if (c.index == constraint) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(domains_[domain].path, ": no constraint ", constraint));
}

std::string RaplReader::ConstraintPath(size_t domain, int constraint,
                                       const char* attribute) const {
  return absl::StrCat(domains_[domain].path, "/constraint_", constraint, "_",
                      attribute);
}

absl::StatusOr<uint64_t> RaplReader::ReadEnergyUj(size_t domain) const {
  if (absl::Status status = CheckDomain(domain); !status.ok()) return status;
  const RaplDomain& d = domains_[domain];
  const std::string path = d.path + "/energy_uj";
  absl::StatusOr<uint64_t> energy_uj = ReadUint64File(path);
  if (!energy_uj.ok()) return energy_uj.status();
  if (*energy_uj > d.max_energy_range_uj) {
    return absl::DataLossError(absl::StrCat(path, ": ", *energy_uj,
                                            " uJ exceeds max_energy_range_uj ",
                                            d.max_energy_range_uj));
  }
  return *energy_uj;
}

absl::StatusOr<double> RaplReader::ReadJoules(size_t domain) {
  absl::StatusOr<uint64_t> cur_uj = ReadEnergyUj(domain);
  if (!cur_uj.ok()) return cur_uj.status();
  absl::optional<uint64_t>& last = last_uj_[domain];
  uint64_t delta_uj = 0;
  if (last.has_value()) {
    absl::StatusOr<uint64_t> delta =
        RaplDeltaUj(*last, *cur_uj, domains_[domain].max_energy_range_uj,
                    domains_[domain].path + "/energy_uj");
    if (!delta.ok()) return delta.status();
    delta_uj = *delta;
  }
  last = *cur_uj;
  return static_cast<double>(delta_uj) * kMicro;
}

bool RaplReader::has_baseline(size_t domain) const {
  return domain < last_uj_.size() && last_uj_[domain].has_value();
}

absl::StatusOr<uint64_t> RaplReader::PowerLimitUw(size_t domain,
                                                  int constraint) const {
  if (absl::Status status = CheckConstraint(domain, constraint); !status.ok()) {
    return status;
  }
  return ReadUint64File(ConstraintPath(domain, constraint, "power_limit_uw"));
}

absl::StatusOr<std::vector<RaplPowerLimit>> RaplReader::PowerLimits(
    size_t domain) const {
  if (absl::Status status = CheckDomain(domain); !status.ok()) return status;
  std::vector<RaplPowerLimit> limits;
  for (const RaplConstraint& c : domains_[domain].constraints) {
    RaplPowerLimit limit;
    limit.constraint = c.index;
    limit.name = c.name;
    absl::StatusOr<uint64_t> uw =
        ReadUint64File(ConstraintPath(domain, c.index, "power_limit_uw"));
    if (!uw.ok()) return uw.status();
    limit.power_limit_uw = *uw;
    for (auto [attribute, field] :
         {std::make_pair("time_window_us", &limit.time_window_us),
          std::make_pair("max_power_uw", &limit.max_power_uw),
          std::make_pair("min_power_uw", &limit.min_power_uw)}) {
      if (absl::Status status =
              ReadOptional(ConstraintPath(domain, c.index, attribute), field);
          !status.ok()) {
        return status;
      }
    }
    limits.push_back(std::move(limit));
  }
  return limits;
}

absl::Status RaplReader::SetPowerLimit(size_t domain, int constraint,
                                       uint64_t uw) {
  if (absl::Status status = CheckConstraint(domain, constraint); !status.ok()) {
    return status;
  }
  const std::string path = ConstraintPath(domain, constraint, "power_limit_uw");
  if (uw == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a power limit of 0 uW is not a limit"));
  }
  absl::optional<uint64_t> max_uw;
  absl::optional<uint64_t> min_uw;
  if (absl::Status status = ReadOptional(
          ConstraintPath(domain, constraint, "max_power_uw"), &max_uw);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = ReadOptional(
          ConstraintPath(domain, constraint, "min_power_uw"), &min_uw);
      !status.ok()) {
    return status;
  }
  // A stated maximum of 0 means "unknown" on some parts; do not enforce it.
  if ((max_uw.has_value() && *max_uw > 0 && uw > *max_uw) ||
      (min_uw.has_value() && uw < *min_uw)) {
    return absl::OutOfRangeError(absl::StrCat(
        path, ": ", uw, " uW is outside the allowed range [",
        min_uw.value_or(0), ", ",
        (max_uw.has_value() && *max_uw > 0) ? absl::StrCat(*max_uw)
                                            : std::string("unbounded"),
        "] uW"));
  }
  return originals_.Write(path, uw);
}

absl::Status RaplReader::Restore() {
  return originals_.Restore("RAPL power limit(s)");
}

absl::StatusOr<std::unique_ptr<RaplCpu>> RaplCpu::Create(
    const std::string& sysfs_root, absl::Time now) {
  std::vector<absl::Status> skipped;
  absl::StatusOr<std::vector<RaplDomain>> domains =
      DiscoverRapl(sysfs_root, &skipped);
  if (!domains.ok()) return domains.status();
  const bool has_package =
      std::any_of(domains->begin(), domains->end(),
                  [](const RaplDomain& d) { return !d.dram; });
  if (!has_package) {
    std::vector<std::string> reasons;
    for (const absl::Status& s : skipped) reasons.push_back(s.ToString());
    return absl::NotFoundError(absl::StrCat(
        "no usable RAPL package domain under ", sysfs_root, "/class/powercap",
        reasons.empty() ? "" : ": ", absl::StrJoin(reasons, "; ")));
  }
  // Temperatures are a bonus: without them RAPL still measures power. Sensors
  // the thermal scan skipped (often unrelated hwmon chips) are not RAPL's
  // concern; a failed scan as a whole is reported.
  absl::StatusOr<CpuThermal> thermal = CpuThermal::Discover(sysfs_root);
  if (!thermal.ok()) {
    skipped.push_back(thermal.status());
    thermal = CpuThermal({}, {});
  }
  auto cpu =
      std::make_unique<RaplCpu>(*std::move(domains), *std::move(thermal), now);
  cpu->error_count_ += static_cast<int64_t>(skipped.size());
  cpu->discovery_errors_ = std::move(skipped);

  // Every package unreadable (typically energy_uj as non-root) is no source;
  // the error keeps the code of the first failure (PERMISSION_DENIED there).
  bool any_package_read = false;
  for (size_t i = 0; i < cpu->reader_.domains().size(); ++i) {
    if (!cpu->reader_.domains()[i].dram && cpu->reader_.has_baseline(i)) {
      any_package_read = true;
    }
  }
  if (!any_package_read) {
    std::vector<std::string> reasons;
    absl::StatusCode code = absl::StatusCode::kUnavailable;
    for (const RaplDomainError& e : cpu->last_errors_) {
      if (reasons.empty()) code = e.status.code();
      reasons.push_back(e.status.ToString());
    }
    return absl::Status(
        code, absl::StrCat("RAPL found but no package energy counter could be "
                           "read: ",
                           absl::StrJoin(reasons, "; ")));
  }
  return cpu;
}

RaplCpu::RaplCpu(std::vector<RaplDomain> domains, CpuThermal thermal,
                 absl::Time now)
    : reader_(std::move(domains)), thermal_(std::move(thermal)) {
  const size_t n = reader_.domains().size();
  state_.resize(n);
  initial_limits_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    state_[i].last_time = now;
    // The baseline: the first Sample measures from here.
    absl::StatusOr<double> joules = reader_.ReadJoules(i);
    if (!joules.ok()) {
      last_errors_.push_back(
          RaplDomainError{reader_.domains()[i].zone, joules.status()});
      ++error_count_;
    }
    absl::StatusOr<std::vector<RaplPowerLimit>> limits = reader_.PowerLimits(i);
    if (limits.ok()) {
      initial_limits_[i] = *std::move(limits);
    } else {
      last_errors_.push_back(
          RaplDomainError{reader_.domains()[i].zone, limits.status()});
      ++error_count_;
    }
  }
}

std::vector<v1::Device> RaplCpu::Describe() const {
  std::vector<v1::Device> devices;
  for (size_t i = 0; i < reader_.domains().size(); ++i) {
    const RaplDomain& domain = reader_.domains()[i];
    v1::Device device;
    device.set_index(domain.package);
    device.set_kind(domain.dram ? v1::DEVICE_KIND_MEMORY : v1::DEVICE_KIND_CPU);
    device.set_model(absl::StrCat(domain.dram ? "DRAM" : "CPU", " package ",
                                  domain.package));
    device.set_uuid(domain.zone);
    device.set_source("rapl");
    if (const RaplPowerLimit* limit =
            FindLimit(initial_limits_[i], LongTermConstraint(domain))) {
      const double limit_w =
          static_cast<double>(limit->power_limit_uw) * kMicro;
      device.set_power_limit_default_w(limit_w);
      // The largest settable limit where the zone states it (usually TDP),
      // else the limit in force when the agent started.
      if (limit->max_power_uw.has_value() && *limit->max_power_uw > 0) {
        device.set_power_limit_max_w(static_cast<double>(*limit->max_power_uw) *
                                     kMicro);
      } else {
        device.set_power_limit_max_w(limit_w);
      }
      if (limit->min_power_uw.has_value()) {
        device.set_power_limit_min_w(static_cast<double>(*limit->min_power_uw) *
                                     kMicro);
      }
    }
    devices.push_back(std::move(device));
  }
  return devices;
}

absl::StatusOr<std::vector<v1::DeviceSample>> RaplCpu::Sample(absl::Time now) {
  last_errors_.clear();
  std::vector<v1::DeviceSample> samples;
  size_t failed_domains = 0;
  for (size_t i = 0; i < reader_.domains().size(); ++i) {
    const RaplDomain& domain = reader_.domains()[i];
    DomainState& state = state_[i];
    const bool had_baseline = reader_.has_baseline(i);
    absl::StatusOr<double> joules = reader_.ReadJoules(i);
    if (!joules.ok()) {
      last_errors_.push_back(RaplDomainError{domain.zone, joules.status()});
      ++failed_domains;
      continue;
    }
    if (!had_baseline) {
      // The domain was never read: this read is its baseline; it reports
      // from the next Sample on.
      state.last_time = now;
      state.pending_j = 0;
      continue;
    }
    state.energy_j += *joules;
    state.pending_j += *joules;
    // A repeated or backward timestamp keeps the previous power; its joules
    // count toward the next interval that has a length.
    const double dt_s = absl::ToDoubleSeconds(now - state.last_time);
    if (dt_s > 0) {
      state.power_w = state.pending_j / dt_s;
      state.pending_j = 0;
      state.last_time = now;
    }

    v1::DeviceSample sample;
    sample.set_index(domain.package);
    sample.set_kind(domain.dram ? v1::DEVICE_KIND_MEMORY : v1::DEVICE_KIND_CPU);
    sample.set_power_w(state.power_w);
    sample.set_energy_j(state.energy_j);
    sample.set_source("rapl");
    if (!domain.dram) {
      absl::StatusOr<double> temp_c = thermal_.ReadPackageTempC(domain.package);
      if (temp_c.ok()) {
        sample.set_temp_c(*temp_c);
      } else if (!absl::IsNotFound(temp_c.status())) {
        // NOT_FOUND: no sensor for this package, nothing to report.
        last_errors_.push_back(RaplDomainError{
            absl::StrCat(domain.zone, " temperature"), temp_c.status()});
      }
    }
    if (const int constraint = LongTermConstraint(domain); constraint >= 0) {
      absl::StatusOr<uint64_t> cap_uw = reader_.PowerLimitUw(i, constraint);
      if (cap_uw.ok()) {
        sample.set_power_cap_w(static_cast<double>(*cap_uw) * kMicro);
      } else {
        last_errors_.push_back(RaplDomainError{domain.zone, cap_uw.status()});
      }
    }
    samples.push_back(std::move(sample));
  }
  error_count_ += static_cast<int64_t>(last_errors_.size());
  if (failed_domains > 0 && failed_domains == reader_.domains().size()) {
    std::vector<std::string> reasons;
    for (const RaplDomainError& e : last_errors_) {
      reasons.push_back(e.status.ToString());
    }
    return absl::UnavailableError(absl::StrCat("every RAPL domain failed: ",
                                               absl::StrJoin(reasons, "; ")));
  }
  return samples;
}

v1::SourceStatus RaplCpu::Status() const {
  v1::SourceStatus status;
  status.set_name("rapl");
  status.set_errors(error_count_);
  if (last_errors_.empty() && discovery_errors_.empty()) {
    status.set_state(v1::SourceStatus::STATE_OK);
    status.set_message(absl::StrCat(reader_.domains().size(), " domain(s)"));
    return status;
  }
  status.set_state(v1::SourceStatus::STATE_DEGRADED);
  std::vector<std::string> parts;
  for (const absl::Status& e : discovery_errors_) {
    parts.push_back(absl::StrCat("skipped at discovery: ", e.ToString()));
  }
  for (const RaplDomainError& e : last_errors_) {
    parts.push_back(absl::StrCat(e.zone, ": ", e.status.ToString()));
  }
  status.set_message(absl::StrJoin(parts, "; "));
  return status;
}

}  // namespace joule
