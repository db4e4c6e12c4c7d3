#include "spec/job_validation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "joule/v1/job.pb.h"

namespace joule {
namespace {

using ::joule::v1::JobSpec;

// google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59.999999999Z.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

absl::Status Invalid(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Quotes a (length-checked) user string for an error message, escaping
// control and non-ASCII bytes so the message stays one printable line.
std::string Quote(absl::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

template <typename T>
absl::Status CheckRange(absl::string_view path, T value, T min, T max) {
  if (value < min) {
    return Invalid(path, absl::StrCat("must be >= ", min, ", got ", value));
  }
  if (value > max) {
    return Invalid(path, absl::StrCat("must be <= ", max, ", got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(absl::string_view path, double value) {
  if (!std::isfinite(value)) {
    return Invalid(path, absl::StrCat("must be a finite number, got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckMaxBytes(absl::string_view path, absl::string_view value,
                           int64_t max) {
  if (static_cast<int64_t>(value.size()) > max) {
    return Invalid(
        path, absl::StrCat(value.size(), " bytes, at most ", max, " allowed"));
  }
  return absl::OkStatus();
}

absl::Status CheckMaxChars(absl::string_view path, absl::string_view value,
                           int64_t max) {
  if (static_cast<int64_t>(value.size()) > max) {
    return Invalid(path, absl::StrCat(value.size(), " characters, at most ",
                                      max, " allowed"));
  }
  return absl::OkStatus();
}

absl::Status CheckNoNul(absl::string_view path, absl::string_view value) {
  size_t pos = value.find('\0');
  if (pos != absl::string_view::npos) {
    return Invalid(path, absl::StrCat("contains a NUL byte at offset ", pos,
                                      "; not allowed"));
  }
  return absl::OkStatus();
}

bool IsLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsNameChar(char c) {
  return IsLowerAlnum(c) || c == '-' || c == '.' || c == '_';
}

bool IsEnvNameChar(char c) { return IsAlpha(c) || IsDigit(c) || c == '_'; }

bool IsGpuModelChar(char c) {
  return IsAlpha(c) || IsDigit(c) || c == ' ' || c == '.' || c == '_' ||
         c == '-';
}

bool IsLabelKeyChar(char c) {
  return IsAlpha(c) || IsDigit(c) || c == '.' || c == '_' || c == '/' ||
         c == '-';
}

absl::Status ValidateName(const JobSpec& spec) {
  const std::string& name = spec.name();
  if (name.empty()) return Invalid("name", "required");
  if (absl::Status s = CheckMaxChars("name", name, kMaxNameLength); !s.ok()) {
    return s;
  }
  bool chars_ok = std::all_of(name.begin(), name.end(), IsNameChar);
  if (!chars_ok || !IsLowerAlnum(name.front()) || !IsLowerAlnum(name.back())) {
    return Invalid("name",
                   absl::StrCat("must consist of lowercase letters, digits, "
                                "'-', '.' and '_', starting and ending with a "
                                "letter or digit; got ",
                                Quote(name)));
  }
  return absl::OkStatus();
}

absl::Status ValidateType(const JobSpec& spec) {
  if (spec.type() == joule::v1::JOB_TYPE_TRAINING ||
      spec.type() == joule::v1::JOB_TYPE_INFERENCE) {
    return absl::OkStatus();
  }
  std::string got = spec.type() == joule::v1::JOB_TYPE_UNSPECIFIED
                        ? std::string("unspecified")
                        : absl::StrCat(static_cast<int>(spec.type()));
  return Invalid("type",
                 absl::StrCat("must be training or inference, got ", got));
}

absl::Status ValidateCommandLine(const JobSpec& spec) {
  const std::string& command = spec.command();
  if (command.empty()) return Invalid("command", "required");
  if (absl::Status s = CheckMaxBytes("command", command, kMaxCommandBytes);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckNoNul("command", command); !s.ok()) return s;

  if (spec.args_size() > kMaxArgs) {
    return Invalid("args", absl::StrCat(spec.args_size(), " entries, at most ",
                                        kMaxArgs, " allowed"));
  }
  int64_t total = static_cast<int64_t>(command.size());
  for (int i = 0; i < spec.args_size(); ++i) {
    const std::string path = absl::StrCat("args[", i, "]");
    const std::string& arg = spec.args(i);
    if (absl::Status s = CheckMaxBytes(path, arg, kMaxArgBytes); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckNoNul(path, arg); !s.ok()) return s;
    total += static_cast<int64_t>(arg.size());
  }
  if (total > kMaxCommandLineBytes) {
    return Invalid("args", absl::StrCat("command and args total ", total,
                                        " bytes, at most ",
                                        kMaxCommandLineBytes, " allowed"));
  }
  return absl::OkStatus();
}

// Map entries sorted by key, so that the first error is deterministic
// whatever the map's iteration order.
std::vector<const google::protobuf::MapPair<std::string, std::string>*>
SortedEntries(const google::protobuf::Map<std::string, std::string>& map) {
  std::vector<const google::protobuf::MapPair<std::string, std::string>*>
      entries;
  entries.reserve(map.size());
  for (const auto& entry : map) entries.push_back(&entry);
  std::sort(entries.begin(), entries.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  return entries;
}

absl::Status ValidateEnv(const JobSpec& spec) {
  if (spec.env_size() > kMaxEnvEntries) {
    return Invalid("env", absl::StrCat(spec.env_size(), " entries, at most ",
                                       kMaxEnvEntries, " allowed"));
  }
  int64_t total = 0;
  for (const auto* entry : SortedEntries(spec.env())) {
    const std::string& name = entry->first;
    const std::string& value = entry->second;
    if (name.empty()) return Invalid("env", "empty variable name");
    // The name is part of the path, so check its length before echoing it.
    if (static_cast<int64_t>(name.size()) > kMaxEnvNameBytes) {
      return Invalid("env", absl::StrCat("variable name of ", name.size(),
                                         " bytes, at most ", kMaxEnvNameBytes,
                                         " allowed"));
    }
    bool chars_ok = std::all_of(name.begin(), name.end(), IsEnvNameChar);
    if (!chars_ok || IsDigit(name.front())) {
      return Invalid("env", absl::StrCat("variable name ", Quote(name),
                                         " must match [A-Za-z_][A-Za-z0-9_]*"));
    }
    const std::string path = absl::StrCat("env.", name);
    if (absl::StartsWith(name, kReservedEnvPrefix) ||
        name == kReservedEnvName) {
      return Invalid(
          path,
          absl::StrCat("reserved (names starting with ", kReservedEnvPrefix,
                       " and ", kReservedEnvName, " are set by the agent)"));
    }
    if (absl::Status s = CheckMaxBytes(path, value, kMaxEnvValueBytes);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckNoNul(path, value); !s.ok()) return s;
    total += static_cast<int64_t>(name.size() + value.size());
  }
  if (total > kMaxEnvTotalBytes) {
    return Invalid(
        "env", absl::StrCat("names and values total ", total,
                            " bytes, at most ", kMaxEnvTotalBytes, " allowed"));
  }
  return absl::OkStatus();
}

absl::Status ValidateResources(const JobSpec& spec) {
  if (!spec.has_resources()) return Invalid("resources", "required");
  const joule::v1::Resources& r = spec.resources();

  if (!r.has_gpus()) return Invalid("resources.gpus", "required");
  if (absl::Status s = CheckRange<int32_t>("resources.gpus", r.gpus(), 0,
                                           kMaxGpusPerReplica);
      !s.ok()) {
    return s;
  }

  if (!r.has_cpus()) return Invalid("resources.cpus", "required");
  if (absl::Status s = CheckFinite("resources.cpus", r.cpus()); !s.ok()) {
    return s;
  }
  if (!(r.cpus() > 0)) {
    return Invalid("resources.cpus",
                   absl::StrCat("must be > 0, got ", r.cpus()));
  }
  if (r.cpus() > kMaxCpusPerReplica) {
    return Invalid(
        "resources.cpus",
        absl::StrCat("must be <= ", kMaxCpusPerReplica, ", got ", r.cpus()));
  }

  if (!r.has_memory_bytes()) {
    return Invalid("resources.memory_bytes", "required");
  }
  if (r.memory_bytes() <= 0) {
    return Invalid("resources.memory_bytes",
                   absl::StrCat("must be > 0, got ", r.memory_bytes()));
  }
  if (r.memory_bytes() > kMaxMemoryBytesPerReplica) {
    return Invalid("resources.memory_bytes",
                   absl::StrCat("must be <= ", kMaxMemoryBytesPerReplica,
                                " (64 TiB), got ", r.memory_bytes()));
  }

  const std::string& model = r.gpu_model();
  if (absl::Status s =
          CheckMaxChars("resources.gpu_model", model, kMaxGpuModelLength);
      !s.ok()) {
    return s;
  }
  if (!std::all_of(model.begin(), model.end(), IsGpuModelChar)) {
    return Invalid("resources.gpu_model",
                   absl::StrCat("must consist of letters, digits, ' ', '.', "
                                "'_' and '-'; got ",
                                Quote(model)));
  }
  return absl::OkStatus();
}

absl::Status ValidateReplicas(const JobSpec& spec) {
  if (!spec.has_replicas()) return Invalid("replicas", "required");
  return CheckRange<int32_t>("replicas", spec.replicas(), 1, kMaxReplicas);
}

absl::Status ValidateBatchSize(const JobSpec& spec) {
  const joule::v1::BatchSizeRange& b = spec.batch_size();
  if (absl::Status s = CheckRange<int32_t>("batch_size.default_size",
                                           b.default_size(), 1, kMaxBatchSize);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckRange<int32_t>("batch_size.min", b.min(), 1, kMaxBatchSize);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckRange<int32_t>("batch_size.max", b.max(), 1, kMaxBatchSize);
      !s.ok()) {
    return s;
  }
  if (b.min() > b.max()) {
    return Invalid(
        "batch_size",
        absl::StrCat("min (", b.min(), ") must be <= max (", b.max(), ")"));
  }
  if (b.default_size() < b.min() || b.default_size() > b.max()) {
    return Invalid("batch_size",
                   absl::StrCat("default_size (", b.default_size(),
                                ") must be between min (", b.min(),
                                ") and max (", b.max(), ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateShardCount(const JobSpec& spec) {
  if (absl::Status s = CheckRange<int32_t>("shard_count", spec.shard_count(), 0,
                                           kMaxShardCount);
      !s.ok()) {
    return s;
  }
  if (spec.shard_count() > 0 && spec.shard_count() < spec.replicas()) {
    return Invalid("shard_count",
                   absl::StrCat(spec.shard_count(), " is less than replicas (",
                                spec.replicas(),
                                "); each replica needs at least one shard "
                                "(0 means the job does not shard)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateObjective(const JobSpec& spec, absl::Time now) {
  const joule::v1::Objective& o = spec.objective();
  switch (o.goal_case()) {
    case joule::v1::Objective::kMaxSlowdown: {
      constexpr absl::string_view kPath = "objective.max_slowdown";
      if (absl::Status s = CheckFinite(kPath, o.max_slowdown()); !s.ok()) {
        return s;
      }
      return CheckRange<double>(kPath, o.max_slowdown(), kMinMaxSlowdown,
                                kMaxMaxSlowdown);
    }
    case joule::v1::Objective::kEnergyTimeWeight: {
      constexpr absl::string_view kPath = "objective.energy_time_weight";
      if (absl::Status s = CheckFinite(kPath, o.energy_time_weight());
          !s.ok()) {
        return s;
      }
      return CheckRange<double>(kPath, o.energy_time_weight(),
                                kMinEnergyTimeWeight, kMaxEnergyTimeWeight);
    }
    case joule::v1::Objective::kDeadline: {
      constexpr absl::string_view kPath = "objective.deadline";
      const google::protobuf::Timestamp& ts = o.deadline();
      if (ts.seconds() < kMinTimestampSeconds ||
          ts.seconds() > kMaxTimestampSeconds || ts.nanos() < 0 ||
          ts.nanos() > 999999999) {
        return Invalid(kPath, absl::StrCat("not a valid timestamp (seconds ",
                                           ts.seconds(), ", nanos ", ts.nanos(),
                                           "); allowed: years 0001 to 9999"));
      }
      absl::Time deadline =
          absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
      if (deadline <= now) {
        return Invalid(
            kPath, absl::StrCat(absl::FormatTime(absl::RFC3339_full, deadline,
                                                 absl::UTCTimeZone()),
                                " is not after the submit time ",
                                absl::FormatTime(absl::RFC3339_full, now,
                                                 absl::UTCTimeZone())));
      }
      return absl::OkStatus();
    }
    case joule::v1::Objective::GOAL_NOT_SET:
      // The default: the least total energy.
      return absl::OkStatus();
  }
  return Invalid("objective", "unknown goal");
}

absl::Status ValidateLabels(const JobSpec& spec) {
  if (spec.labels_size() > kMaxLabels) {
    return Invalid("labels",
                   absl::StrCat(spec.labels_size(), " entries, at most ",
                                kMaxLabels, " allowed"));
  }
  for (const auto* entry : SortedEntries(spec.labels())) {
    const std::string& key = entry->first;
    if (key.empty()) return Invalid("labels", "empty key");
    if (static_cast<int64_t>(key.size()) > kMaxLabelKeyLength) {
      return Invalid(
          "labels", absl::StrCat("key of ", key.size(), " characters, at most ",
                                 kMaxLabelKeyLength, " allowed"));
    }
    if (!std::all_of(key.begin(), key.end(), IsLabelKeyChar)) {
      return Invalid("labels", absl::StrCat("key ", Quote(key),
                                            " must consist of letters, "
                                            "digits, '.', '_', '/' and '-'"));
    }
    if (absl::Status s = CheckMaxBytes(absl::StrCat("labels.", key),
                                       entry->second, kMaxLabelValueLength);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateWorkingDir(const JobSpec& spec) {
  const std::string& dir = spec.working_dir();
  if (dir.empty()) return absl::OkStatus();
  if (absl::Status s = CheckMaxBytes("working_dir", dir, kMaxWorkingDirBytes);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckNoNul("working_dir", dir); !s.ok()) return s;
  if (dir.front() != '/') {
    return Invalid("working_dir",
                   absl::StrCat("must be an absolute path, got ", Quote(dir)));
  }
  return absl::OkStatus();
}

absl::Status ValidateEnergyBudget(const JobSpec& spec) {
  const double budget = spec.energy_budget_j();
  if (!std::isfinite(budget) || budget < 0 || budget > kMaxEnergyBudgetJ) {
    return Invalid("energy_budget_j",
                   absl::StrFormat("must be a finite number in [0, %g] joules, got %g",
                                   kMaxEnergyBudgetJ, budget));
  }
  return absl::OkStatus();
}

// "lost", "failed", or the number of an unknown value.
std::string RetryOnName(joule::v1::RetryOn value) {
  switch (value) {
    case joule::v1::RETRY_ON_LOST:
      return "lost";
    case joule::v1::RETRY_ON_FAILED:
      return "failed";
    case joule::v1::RETRY_ON_UNSPECIFIED:
      return "unspecified";
    default:
      return absl::StrCat(static_cast<int>(value));
  }
}

absl::Status CheckBackoff(absl::string_view path, bool present, double seconds) {
  if (!present) return Invalid(path, "required");
  if (!std::isfinite(seconds) || seconds < 0 || seconds > kMaxBackoffS) {
    return Invalid(path, absl::StrFormat("must be between 0 and %g seconds, got %g",
                                         kMaxBackoffS, seconds));
  }
  return absl::OkStatus();
}

absl::Status ValidateRestartPolicy(const JobSpec& spec) {
  if (!spec.has_restart_policy()) return Invalid("restart_policy", "required");
  const joule::v1::RestartPolicy& policy = spec.restart_policy();
  if (!policy.has_max_retries()) {
    return Invalid("restart_policy.max_retries", "required");
  }
  if (policy.max_retries() < 0 || policy.max_retries() > kMaxRetries) {
    return Invalid("restart_policy.max_retries",
                   absl::StrCat("must be between 0 and ", kMaxRetries, ", got ",
                                policy.max_retries()));
  }
  if (absl::Status s = CheckBackoff("restart_policy.backoff_s",
                                    policy.has_backoff_s(), policy.backoff_s());
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckBackoff("restart_policy.max_backoff_s", policy.has_max_backoff_s(),
                       policy.max_backoff_s());
      !s.ok()) {
    return s;
  }
  if (policy.backoff_s() > policy.max_backoff_s()) {
    return Invalid("restart_policy",
                   absl::StrFormat("backoff_s (%g) must be <= max_backoff_s (%g)",
                                   policy.backoff_s(), policy.max_backoff_s()));
  }
  if (policy.retry_on().empty()) {
    return Invalid("restart_policy.retry_on",
                   "required: list lost and/or failed (max_retries: 0 never retries)");
  }
  std::vector<int> seen;
  for (int i = 0; i < policy.retry_on_size(); ++i) {
    const auto value = static_cast<joule::v1::RetryOn>(policy.retry_on(i));
    const std::string path = absl::StrCat("restart_policy.retry_on[", i, "]");
    if (value != joule::v1::RETRY_ON_LOST && value != joule::v1::RETRY_ON_FAILED) {
      return Invalid(path, absl::StrCat("must be lost or failed, got ", RetryOnName(value)));
    }
    if (std::find(seen.begin(), seen.end(), value) != seen.end()) {
      return Invalid(path, absl::StrCat(RetryOnName(value), " is listed twice"));
    }
    seen.push_back(value);
  }
  return absl::OkStatus();
}

}  // namespace

void ApplyRestartPolicyDefaults(joule::v1::RestartPolicy* policy) {
  if (!policy->has_max_retries()) policy->set_max_retries(kDefaultMaxRetries);
  if (!policy->has_backoff_s()) policy->set_backoff_s(kDefaultBackoffS);
  if (!policy->has_max_backoff_s()) {
    // std::max would turn a NaN backoff_s into the default; keep it for
    // validation to refuse.
    policy->set_max_backoff_s(policy->backoff_s() > kDefaultMaxBackoffS
                                  ? policy->backoff_s()
                                  : kDefaultMaxBackoffS);
  }
  if (policy->retry_on().empty()) policy->add_retry_on(joule::v1::RETRY_ON_LOST);
}

void ApplyJobSpecDefaults(joule::v1::JobSpec* spec) {
  // Most jobs are training jobs; an explicit unknown type is still refused.
  if (spec->type() == joule::v1::JOB_TYPE_UNSPECIFIED) {
    spec->set_type(joule::v1::JOB_TYPE_TRAINING);
  }
  if (!spec->has_replicas()) spec->set_replicas(kDefaultReplicas);

  joule::v1::Resources* r = spec->mutable_resources();
  if (!r->has_gpus()) r->set_gpus(kDefaultGpus);
  if (!r->has_cpus()) r->set_cpus(kDefaultCpus);
  if (!r->has_memory_bytes()) r->set_memory_bytes(kDefaultMemoryBytes);

  // 0 means unset. Only a positive value is copied into another field, so a
  // bad value is reported against the field the user actually wrote.
  joule::v1::BatchSizeRange* b = spec->mutable_batch_size();
  if (b->default_size() == 0) {
    if (b->min() > 0) {
      b->set_default_size(b->min());
    } else if (b->max() > 0) {
      b->set_default_size(b->max());
    } else {
      b->set_default_size(kDefaultBatchSize);
    }
  }
  if (b->default_size() > 0) {
    if (b->min() == 0) b->set_min(b->default_size());
    if (b->max() == 0) b->set_max(b->default_size());
  }

  if (spec->job_class().empty()) spec->set_job_class(spec->name());

  ApplyRestartPolicyDefaults(spec->mutable_restart_policy());
}

absl::Status ValidateJobSpec(const joule::v1::JobSpec& spec, absl::Time now) {
  if (absl::Status s = ValidateName(spec); !s.ok()) return s;
  if (absl::Status s = ValidateType(spec); !s.ok()) return s;
  if (absl::Status s = ValidateCommandLine(spec); !s.ok()) return s;
  if (absl::Status s = ValidateEnv(spec); !s.ok()) return s;
  if (absl::Status s = ValidateResources(spec); !s.ok()) return s;
  if (absl::Status s = ValidateReplicas(spec); !s.ok()) return s;
  if (absl::Status s = ValidateBatchSize(spec); !s.ok()) return s;
  if (absl::Status s = ValidateShardCount(spec); !s.ok()) return s;
  if (absl::Status s = ValidateObjective(spec, now); !s.ok()) return s;
  if (absl::Status s = ValidateLabels(spec); !s.ok()) return s;
  if (absl::Status s = CheckMaxBytes("user", spec.user(), kMaxUserLength);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckMaxBytes("job_class", spec.job_class(), kMaxJobClassLength);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckMaxBytes("placement_profile", spec.placement_profile(),
                                     kMaxPlacementProfileLength);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateWorkingDir(spec); !s.ok()) return s;
  if (absl::Status s = ValidateEnergyBudget(spec); !s.ok()) return s;
  if (!std::isfinite(spec.latency_slo_ms()) || spec.latency_slo_ms() < 0 ||
      spec.latency_slo_ms() > 3.6e6) {
    return Invalid("latency_slo_ms",
                   absl::StrFormat("must be a finite number in [0, 3600000], got %g",
                                   spec.latency_slo_ms()));
  }
  if (!std::isfinite(spec.expected_samples()) || spec.expected_samples() < 0 ||
      spec.expected_samples() > kMaxExpectedSamples) {
    return Invalid("expected_samples",
                   absl::StrFormat("must be a finite number in [0, %g], got %g",
                                   kMaxExpectedSamples, spec.expected_samples()));
  }
  const joule::v1::EarlyStop& early = spec.early_stop();
  if (early.patience() < 0 || early.patience() > 1'000'000) {
    return Invalid("early_stop.patience",
                   absl::StrCat("must be in [0, 1000000], got ", early.patience()));
  }
  if (!std::isfinite(early.min_delta()) || early.min_delta() < 0) {
    return Invalid("early_stop.min_delta",
                   absl::StrFormat("must be a finite number >= 0, got %g", early.min_delta()));
  }
  return ValidateRestartPolicy(spec);
}

}  // namespace joule
