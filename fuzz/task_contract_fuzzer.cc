// Fuzz target: the task side of the task contract (examples/task_contract.h):
// the hints file a task re-reads between steps, the JOULE_* environment, and
// the range lists both carry (common/range_list.h).
//
// Input: text, used three ways: as a hints file (ParseHints, then the
// settings and shard worklist it drives), as "NAME=value" lines of an
// environment (ReadTaskEnv), and, line by line, as range lists.
//
// Checked, besides never crashing: hints are only ever usable values
// (batch size in 1..kMaxBatchSize, device speed in (0, 1], shards below
// kMaxRangeListValue); an environment that reads has a replica index below
// its count and shards below the shard count; range lists round-trip
// through FormatRangeList.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/range_list.h"
#include "examples/task_contract.h"
#include "fuzz/fuzz_support.h"

namespace joule::fuzz {
namespace {

namespace ex = ::joule::examples;

void CheckHints(absl::string_view text) {
  std::vector<std::string> warnings;
  const ex::Hints hints = ex::ParseHints(text, &warnings);
  if (hints.batch_size) {
    FUZZ_CHECK(*hints.batch_size >= 1 && *hints.batch_size <= ex::kMaxBatchSize);
  }
  if (hints.device_speed) {
    FUZZ_CHECK(std::isfinite(*hints.device_speed) && *hints.device_speed > 0 &&
               *hints.device_speed <= 1);
  }
  if (hints.shards && !hints.shards->empty()) {
    FUZZ_CHECK(*hints.shards->begin() >= 0 &&
               *hints.shards->rbegin() < kMaxRangeListValue);
  }
  FUZZ_CHECK_MSG(ex::ParseHints(text, nullptr) == hints,
                 "ParseHints depends on whether warnings are collected");

  // What a workload does with them.
  ex::TaskSettings settings(64, 16, {0, 1, 2, 3});
  settings.Apply(hints);
  FUZZ_CHECK(settings.batch_size() >= 1);
  FUZZ_CHECK(settings.device_speed() > 0 && settings.device_speed() <= 1);
  for (int shard : settings.shards()) FUZZ_CHECK(shard >= 0 && shard < 16);
  ex::ShardWorklist worklist({0, 1});
  worklist.Next();
  worklist.SetOwned(settings.shards());
  for (int steps = 0; steps < 32; ++steps) {
    const std::optional<int> next = worklist.Next();
    if (!next) break;
    worklist.FinishCurrent();
  }
}

void CheckEnv(absl::string_view text) {
  std::map<std::string, std::string> env;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  absl::StatusOr<ex::TaskEnv> task_env =
      ex::ReadTaskEnv([&env](const char* name) -> std::optional<std::string> {
        auto it = env.find(name);
        if (it == env.end()) return std::nullopt;
        return it->second;
      });
  if (!task_env.ok()) return;
  FUZZ_CHECK(task_env->replica_count >= 1);
  FUZZ_CHECK(task_env->replica_index >= 0 &&
             task_env->replica_index < task_env->replica_count);
  if (task_env->batch_size) FUZZ_CHECK(*task_env->batch_size >= 1);
  if (task_env->shards && task_env->shard_count) {
    for (int shard : *task_env->shards) {
      FUZZ_CHECK(shard >= 0 && shard < *task_env->shard_count);
    }
  }
}

void CheckRangeLists(absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    absl::StatusOr<std::set<int>> values = ParseRangeList(line);
    if (!values.ok()) continue;
    const std::string formatted = FormatRangeList(*values);
    absl::StatusOr<std::set<int>> again = ParseRangeList(formatted);
    FUZZ_CHECK_MSG(again.ok() && *again == *values,
                   "range list does not round-trip: " + formatted);
  }
}

}  // namespace
}  // namespace joule::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  joule::fuzz::CheckHints(text);
  joule::fuzz::CheckEnv(text);
  joule::fuzz::CheckRangeLists(text);
  return 0;
}
