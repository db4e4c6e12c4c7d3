#include "fuzz/spec_checks.h"

#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_support.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "joule/v1/job.pb.h"
#include "spec/job_validation.h"

namespace joule::fuzz {
namespace {

// Byte-exact and map-order independent, so that NaNs compare equal to
// themselves (MessageDifferencer would not).
std::string Bytes(const google::protobuf::MessageLite& message) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

bool Within(double value, double low, double high) {
  return std::isfinite(value) && value >= low && value <= high;
}

void CheckLimits(const v1::JobSpec& spec) {
  FUZZ_CHECK(!spec.name().empty() &&
             static_cast<int>(spec.name().size()) <= kMaxNameLength);
  FUZZ_CHECK(!spec.command().empty() &&
             static_cast<int64_t>(spec.command().size()) <= kMaxCommandBytes);
  FUZZ_CHECK(spec.command().find('\0') == std::string::npos);
  FUZZ_CHECK(spec.args_size() <= kMaxArgs);
  int64_t command_line = spec.command().size();
  for (const std::string& arg : spec.args()) {
    FUZZ_CHECK(static_cast<int64_t>(arg.size()) <= kMaxArgBytes);
    FUZZ_CHECK(arg.find('\0') == std::string::npos);
    command_line += arg.size();
  }
  FUZZ_CHECK(command_line <= kMaxCommandLineBytes);
  FUZZ_CHECK(spec.env_size() <= kMaxEnvEntries);
  for (const auto& [name, value] : spec.env()) {
    FUZZ_CHECK(!name.empty() && static_cast<int64_t>(name.size()) <= kMaxEnvNameBytes);
    FUZZ_CHECK(static_cast<int64_t>(value.size()) <= kMaxEnvValueBytes);
    FUZZ_CHECK(value.find('\0') == std::string::npos);
    FUZZ_CHECK(name.rfind(std::string(kReservedEnvPrefix), 0) != 0);
    FUZZ_CHECK(name != kReservedEnvName);
  }
  FUZZ_CHECK(spec.has_replicas() && spec.replicas() >= 1 &&
             spec.replicas() <= kMaxReplicas);
  const v1::Resources& resources = spec.resources();
  FUZZ_CHECK(resources.has_gpus() && resources.gpus() >= 0 &&
             resources.gpus() <= kMaxGpusPerReplica);
  FUZZ_CHECK(resources.has_cpus() && Within(resources.cpus(), 0, kMaxCpusPerReplica) &&
             resources.cpus() > 0);
  FUZZ_CHECK(resources.has_memory_bytes() && resources.memory_bytes() > 0 &&
             resources.memory_bytes() <= kMaxMemoryBytesPerReplica);
  FUZZ_CHECK(static_cast<int>(resources.gpu_model().size()) <= kMaxGpuModelLength);
  const v1::BatchSizeRange& batch = spec.batch_size();
  FUZZ_CHECK(batch.min() >= 1 && batch.min() <= batch.default_size() &&
             batch.default_size() <= batch.max() && batch.max() <= kMaxBatchSize);
  FUZZ_CHECK(spec.shard_count() >= 0 && spec.shard_count() <= kMaxShardCount);
  FUZZ_CHECK(spec.shard_count() == 0 || spec.shard_count() >= spec.replicas());
  switch (spec.objective().goal_case()) {
    case v1::Objective::kMaxSlowdown:
      FUZZ_CHECK(Within(spec.objective().max_slowdown(), kMinMaxSlowdown, kMaxMaxSlowdown));
      break;
    case v1::Objective::kEnergyTimeWeight:
      FUZZ_CHECK(Within(spec.objective().energy_time_weight(), kMinEnergyTimeWeight,
                        kMaxEnergyTimeWeight));
      break;
    case v1::Objective::kDeadline:
      break;
    case v1::Objective::GOAL_NOT_SET:
      // The default objective: the least total energy.
      break;
  }
  FUZZ_CHECK(std::isfinite(spec.expected_samples()) && spec.expected_samples() >= 0 &&
             spec.expected_samples() <= kMaxExpectedSamples);
  FUZZ_CHECK(spec.labels_size() <= kMaxLabels);
  for (const auto& [key, value] : spec.labels()) {
    FUZZ_CHECK(!key.empty() && static_cast<int>(key.size()) <= kMaxLabelKeyLength);
    FUZZ_CHECK(static_cast<int>(value.size()) <= kMaxLabelValueLength);
  }
  FUZZ_CHECK(static_cast<int>(spec.user().size()) <= kMaxUserLength);
  FUZZ_CHECK(static_cast<int>(spec.job_class().size()) <= kMaxJobClassLength);
  FUZZ_CHECK(spec.working_dir().empty() ||
             (spec.working_dir()[0] == '/' &&
              static_cast<int64_t>(spec.working_dir().size()) <= kMaxWorkingDirBytes &&
              spec.working_dir().find('\0') == std::string::npos));
  const v1::RestartPolicy& policy = spec.restart_policy();
  FUZZ_CHECK(policy.has_max_retries() && policy.max_retries() >= 0 &&
             policy.max_retries() <= kMaxRetries);
  FUZZ_CHECK(policy.has_backoff_s() && Within(policy.backoff_s(), 0, kMaxBackoffS));
  FUZZ_CHECK(policy.has_max_backoff_s() &&
             Within(policy.max_backoff_s(), policy.backoff_s(), kMaxBackoffS));
  FUZZ_CHECK(policy.retry_on_size() >= 1 && policy.retry_on_size() <= 2);
}

}  // namespace

void CheckSubmitPath(v1::JobSpec spec) {
  ApplyJobSpecDefaults(&spec);
  const std::string once = Bytes(spec);
  v1::JobSpec twice = spec;
  ApplyJobSpecDefaults(&twice);
  FUZZ_CHECK_MSG(Bytes(twice) == once, "ApplyJobSpecDefaults is not idempotent");

  const absl::Time now = absl::FromUnixSeconds(1767225600);  // 2026-01-01
  const absl::Status first = ValidateJobSpec(spec, now);
  FUZZ_CHECK_MSG(ValidateJobSpec(spec, now) == first,
                 "ValidateJobSpec gave two answers for one spec");
  if (first.ok()) {
    CheckLimits(spec);
  } else {
    FUZZ_CHECK_MSG(first.code() == absl::StatusCode::kInvalidArgument,
                   absl::StrCat("ValidateJobSpec: not INVALID_ARGUMENT: ",
                                first.ToString()));
  }
}

}  // namespace joule::fuzz
