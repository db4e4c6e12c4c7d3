#include "contract/contract.h"

#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/range_list.h"

namespace joule::contract {
namespace {

// A positive integer variable of at most `max`.
absl::StatusOr<int> ParsePositive(const char* name, const std::string& value, int max) {
  int parsed;
  if (!absl::SimpleAtoi(value, &parsed)) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: \"%s\" is not an integer", name, value));
  }
  if (parsed <= 0 || parsed > max) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %d is out of range (must be 1..%d)", name, parsed, max));
  }
  return parsed;
}

// Counters: non-negative and finite; a fraction is cut.
constexpr double kMaxCounter = 9e18;

}  // namespace

std::optional<std::string> ProcessEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

absl::StatusOr<TaskEnv> ReadTaskEnv(const EnvLookup& lookup) {
  TaskEnv env;
  auto text = [&](const char* name) { return lookup(name).value_or(""); };
  env.job_id = text(kJobId);
  env.task_id = text(kTaskId);
  env.cuda_visible_devices = text(kCudaVisibleDevices);
  env.progress_file = text(kProgressFile);
  env.hints_file = text(kHintsFile);
  if (std::optional<std::string> v = lookup(kReplicaCount)) {
    absl::StatusOr<int> count = ParsePositive(kReplicaCount, *v, kMaxRangeListValue);
    if (!count.ok()) return count.status();
    env.replica_count = *count;
  }
  if (std::optional<std::string> v = lookup(kReplicaIndex)) {
    int index;
    if (!absl::SimpleAtoi(*v, &index) || index < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: \"%s\" is not a non-negative integer", kReplicaIndex, *v));
    }
    if (index >= env.replica_count) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: %d is not below %s=%d", kReplicaIndex, index, kReplicaCount, env.replica_count));
    }
    env.replica_index = index;
  }
  if (std::optional<std::string> v = lookup(kBatchSize)) {
    absl::StatusOr<int> batch = ParsePositive(kBatchSize, *v, kMaxBatchSize);
    if (!batch.ok()) return batch.status();
    env.batch_size = *batch;
  }
  if (std::optional<std::string> v = lookup(kShardCount)) {
    absl::StatusOr<int> count = ParsePositive(kShardCount, *v, kMaxRangeListValue);
    if (!count.ok()) return count.status();
    env.shard_count = *count;
  }
  if (std::optional<std::string> v = lookup(kShards)) {
    absl::StatusOr<std::set<int>> shards = ParseRangeList(*v);
    if (!shards.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(kShards, ": ", shards.status().message()));
    }
    if (env.shard_count.has_value() && !shards->empty() && *shards->rbegin() >= *env.shard_count) {
      std::set<int> beyond(shards->lower_bound(*env.shard_count), shards->end());
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: shards %s are not below %s=%d", kShards, FormatRangeList(beyond),
                          kShardCount, *env.shard_count));
    }
    env.shards = *std::move(shards);
  }
  return env;
}

bool ProgressEvent::operator==(const ProgressEvent& other) const {
  return type == other.type && samples == other.samples && steps == other.steps &&
         total == other.total && batch == other.batch && latency_ms == other.latency_ms &&
         quality == other.quality && shard == other.shard;
}

std::string FormatProgress(const ProgressEvent& event) {
  switch (event.type) {
    case ProgressEvent::Type::kProgress: {
      std::string line = absl::StrCat("progress samples=", event.samples.value_or(0),
                                      " steps=", event.steps.value_or(0));
      if (event.total.has_value()) absl::StrAppend(&line, " total=", *event.total);
      if (event.batch.has_value() && event.latency_ms.has_value()) {
        absl::StrAppendFormat(&line, " batch=%d latency_ms=%.3f", *event.batch, *event.latency_ms);
      }
      if (event.quality.has_value()) absl::StrAppendFormat(&line, " quality=%.6g", *event.quality);
      return line;
    }
    case ProgressEvent::Type::kShardDone:
      return absl::StrCat("shard_done shard=", event.shard.value_or(0));
    case ProgressEvent::Type::kTargetReached:
      return event.quality.has_value() ? absl::StrFormat("target_reached quality=%.6g",
                                                         *event.quality)
                                       : std::string("target_reached");
    case ProgressEvent::Type::kWaiting:
      return "waiting";
  }
  return "";
}

std::optional<ProgressEvent> ParseProgressLine(absl::string_view line) {
  std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
  if (words.empty()) return std::nullopt;
  ProgressEvent event;
  const absl::string_view verb = words[0];
  if (verb == "progress") {
    event.type = ProgressEvent::Type::kProgress;
  } else if (verb == "shard_done") {
    event.type = ProgressEvent::Type::kShardDone;
  } else if (verb == "target_reached") {
    event.type = ProgressEvent::Type::kTargetReached;
  } else if (verb == "waiting") {
    event.type = ProgressEvent::Type::kWaiting;
  } else {
    return std::nullopt;
  }
  const bool progress = event.type == ProgressEvent::Type::kProgress;
  for (size_t i = 1; i < words.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(words[i], '=');
    double value = 0;
    if (!absl::SimpleAtod(kv.second, &value) || !std::isfinite(value)) continue;
    const absl::string_view key = kv.first;
    const bool counter = value >= 0 && value <= kMaxCounter;
    if (progress && key == "samples" && counter) event.samples = static_cast<int64_t>(value);
    if (progress && key == "steps" && counter) event.steps = static_cast<int64_t>(value);
    if (progress && key == "total" && counter) event.total = static_cast<int64_t>(value);
    if (progress && key == "batch" && value >= 1 && value <= kMaxBatchSize) {
      event.batch = static_cast<int32_t>(value);
    }
    if (progress && key == "latency_ms" && value >= 0) event.latency_ms = value;
    if ((progress || event.type == ProgressEvent::Type::kTargetReached) && key == "quality") {
      event.quality = value;
    }
    if (event.type == ProgressEvent::Type::kShardDone && key == "shard" && value >= 0 &&
        value < kMaxRangeListValue && value == std::floor(value)) {
      event.shard = static_cast<int>(value);
    }
  }
  return event;
}

bool Hints::operator==(const Hints& other) const {
  return batch_size == other.batch_size && shards == other.shards && stop == other.stop &&
         device_speed == other.device_speed;
}

std::string FormatHints(const Hints& hints) {
  std::string text;
  if (hints.batch_size.has_value()) absl::StrAppend(&text, "batch_size=", *hints.batch_size, "\n");
  if (hints.shards.has_value()) absl::StrAppend(&text, "shards=", FormatRangeList(*hints.shards), "\n");
  if (hints.stop.has_value()) absl::StrAppend(&text, "stop=", *hints.stop ? 1 : 0, "\n");
  if (hints.device_speed.has_value()) {
    absl::StrAppendFormat(&text, "device_speed=%.4f\n", *hints.device_speed);
  }
  return text;
}

Hints ParseHints(absl::string_view text, std::vector<std::string>* warnings) {
  Hints hints;
  auto warn = [&](int line_no, absl::string_view line, absl::string_view why) {
    if (warnings != nullptr) {
      warnings->push_back(absl::StrFormat("line %d \"%s\": %s", line_no, line, why));
    }
  };
  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_no;
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line.front() == '#') continue;
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      warn(line_no, line, "expected key=value");
      continue;
    }
    const absl::string_view key = absl::StripAsciiWhitespace(line.substr(0, eq));
    const absl::string_view value = absl::StripAsciiWhitespace(line.substr(eq + 1));
    if (key.empty()) {
      warn(line_no, line, "empty key");
    } else if (key == "batch_size") {
      int batch;
      if (absl::SimpleAtoi(value, &batch) && batch > 0 && batch <= kMaxBatchSize) {
        hints.batch_size = batch;
      } else {
        warn(line_no, line, absl::StrCat("batch_size must be an integer in 1..", kMaxBatchSize));
      }
    } else if (key == "shards") {
      absl::StatusOr<std::set<int>> shards = ParseRangeList(value);
      if (shards.ok()) {
        hints.shards = *std::move(shards);
      } else {
        warn(line_no, line, shards.status().message());
      }
    } else if (key == "stop") {
      if (value == "0" || value == "1") {
        hints.stop = value == "1";
      } else {
        warn(line_no, line, "stop must be 0 or 1");
      }
    } else if (key == "device_speed") {
      double speed;
      if (absl::SimpleAtod(value, &speed) && std::isfinite(speed) && speed > 0.0 &&
          speed <= 1.0) {
        hints.device_speed = speed;
      } else {
        warn(line_no, line, "device_speed must be a number in (0, 1]");
      }
    }
    // Any other key: ignored on purpose (see the header).
  }
  return hints;
}

}  // namespace joule::contract
