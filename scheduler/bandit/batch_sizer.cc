#include "scheduler/bandit/batch_sizer.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"

namespace joule {
namespace {

constexpr absl::string_view kHeader = "joule.BatchSizer v2\n";
constexpr absl::string_view kOldHeader = "joule.BatchSizer v1\n";

}  // namespace

const char* BatchSizer::UnitName(Unit unit) {
  switch (unit) {
    case Unit::kWorkRatio:
      return "work_ratio";
    case Unit::kJoulesToTarget:
      return "joules_to_target";
    case Unit::kJoulesPerSample:
      return "joules_per_sample";
    case Unit::kUnset:
      break;
  }
  return "unset";
}

std::vector<double> BatchSizer::Scales(const ClassState& state, const SampleCosts& costs) {
  if (state.unit != Unit::kWorkRatio || !costs) return {};
  std::vector<double> scales = costs(state.bandit.arms());
  if (scales.size() != state.bandit.arms().size()) return {};
  for (double scale : scales) {
    if (!std::isfinite(scale) || scale <= 0) return {};
  }
  return scales;
}

BatchChoice BatchSizer::Choose(const BatchRequest& request, absl::BitGenRef gen,
                               const std::function<bool(const std::string&)>& running) {
  ClassState& state = ClassOf(request);
  // A retry replaces the job's earlier attempt; attempts that ended without
  // teaching anything (cancelled, lost, failed) are forgotten.
  for (auto entry = state.in_flight.begin(); entry != state.in_flight.end();) {
    if (entry->first == request.job_id || !running(entry->first)) {
      entry = state.in_flight.erase(entry);
    } else {
      ++entry;
    }
  }
  if (request.expected_samples > 0 && request.first_attempt) {
    ++state.sizes;
    state.log_size_sum += std::log(request.expected_samples);
  }
  const bool explore = MayExplore(request.job_class, request.expected_samples);
  std::string who = "the job declares no size, so it may explore";
  if (request.expected_samples > 0 && state.sizes > 0) {
    who = absl::StrFormat("%.3g expected samples, %s the class's typical %.3g, so it %s",
                          request.expected_samples, explore ? "at most" : "above",
                          std::exp(state.log_size_sum / state.sizes),
                          explore ? "may explore" : "only exploits what was measured");
  }
  std::vector<int32_t> arms;
  arms.reserve(state.in_flight.size());
  for (const auto& [job_id, arm] : state.in_flight) arms.push_back(arm);
  const std::vector<double> scales = Scales(state, request.sample_costs);
  absl::StatusOr<int32_t> chosen = state.bandit.Choose(gen, arms, explore, scales);
  BatchChoice choice;
  // A class whose range changed may have arms outside the new range.
  if (!chosen.ok() || *chosen < request.min || *chosen > request.max) {
    choice.batch_size = request.default_size;
    choice.reason = absl::StrFormat(
        "%d: the job's default batch size (the class's bandit has no usable arm)",
        request.default_size);
  } else {
    choice.batch_size = *chosen;
    std::string cost;
    switch (state.unit) {
      case Unit::kWorkRatio:
        cost = "samples to target per declared sample";
        if (!scales.empty()) {
          cost += absl::StrCat(" x joules per sample on ",
                               request.gpu_model.empty() ? "these GPUs" : request.gpu_model, " (");
          for (size_t i = 0; i < scales.size(); ++i) {
            absl::StrAppendFormat(&cost, "%s%d: %.4g J", i == 0 ? "" : ", ",
                                  state.bandit.arms()[i], scales[i]);
          }
          cost += ")";
        }
        break;
      case Unit::kJoulesToTarget:
        cost = "joules to target";
        break;
      case Unit::kJoulesPerSample:
        cost = "joules per sample";
        break;
      case Unit::kUnset:
        cost = "nothing measured yet";
        break;
    }
    choice.reason = absl::StrFormat(
        "%d: the class's batch-size bandit (cost: %s; %d attempts in flight); %s\n%s", *chosen,
        cost, arms.size(), who, state.bandit.Explain());
  }
  state.in_flight[request.job_id] = choice.batch_size;
  return choice;
}

bool BatchSizer::MayExplore(const std::string& job_class, double expected_samples) const {
  auto it = classes_.find(job_class);
  if (expected_samples <= 0 || it == classes_.end() || it->second.sizes == 0) return true;
  const double typical = std::exp(it->second.log_size_sum / it->second.sizes);
  // A relative margin so that a class of one size explores.
  return expected_samples <= typical * (1 + 1e-9);
}

BatchSizer::ClassState& BatchSizer::ClassOf(const BatchRequest& request) {
  auto it = classes_.find(request.job_class);
  if (it == classes_.end()) {
    it = classes_
             .emplace(request.job_class,
                      ClassState{BatchSizeBandit(CandidateBatchSizes(request.min,
                                                                     request.default_size,
                                                                     request.max),
                                                 request.default_size, options_)})
             .first;
  }
  return it->second;
}

void BatchSizer::Started(const BatchRequest& request, int32_t batch_size) {
  ClassOf(request).in_flight[request.job_id] = batch_size;
}

absl::Status BatchSizer::Finished(const BatchOutcome& outcome) {
  auto it = classes_.find(outcome.job_class);
  if (it == classes_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no batch-size bandit for class ", outcome.job_class));
  }
  it->second.in_flight.erase(outcome.job_id);
  if (!(outcome.joules > 0) || (!outcome.target_reached && !(outcome.samples > 0))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attempt of ", outcome.job_id, " has nothing to learn from: ", outcome.joules,
        " J, ", outcome.samples, " samples"));
  }
  Unit unit = Unit::kJoulesPerSample;
  double cost = outcome.joules / outcome.samples;
  if (outcome.expected_samples > 0) {
    if (!outcome.target_reached || !(outcome.samples > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attempt of ", outcome.job_id,
          " declares its size but did not report reaching its target: no work ratio to learn"));
    }
    unit = Unit::kWorkRatio;
    cost = outcome.samples / outcome.expected_samples;
  } else if (outcome.target_reached) {
    unit = Unit::kJoulesToTarget;
    cost = outcome.joules;
  }
  ClassState& state = it->second;
  if (state.unit != Unit::kUnset && state.unit != unit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "class ", outcome.job_class, " learns ", UnitName(state.unit), ", and the attempt of ",
        outcome.job_id, " would teach ", UnitName(unit),
        unit == Unit::kWorkRatio || state.unit == Unit::kWorkRatio
            ? " (declare expected_samples on every job of the class, or on none)"
            : ""));
  }
  absl::Status observed = state.bandit.Observe(outcome.batch_size, cost);
  if (observed.ok()) state.unit = unit;
  return observed;
}

int32_t BatchSizer::CheckRunning(const std::string& job_class, const std::string& job_id,
                                 int32_t batch_size, double projected_ratio,
                                 double joules_per_sample, const SampleCosts& sample_costs,
                                 double factor, int32_t min, int32_t max) {
  auto it = classes_.find(job_class);
  if (it == classes_.end() || it->second.unit != Unit::kWorkRatio || !(projected_ratio > 0) ||
      !(joules_per_sample > 0)) {
    return 0;
  }
  ClassState& state = it->second;
  const std::vector<double> scales = Scales(state, sample_costs);
  if (scales.empty()) return 0;
  const std::vector<BatchSizeArmSummary> arms = state.bandit.Summaries();
  double best_cost = -1;
  int32_t best = 0;
  for (size_t i = 0; i < arms.size(); ++i) {
    const BatchSizeArmSummary& arm = arms[i];
    if (arm.observations == 0 || arm.pruned || arm.batch_size < min || arm.batch_size > max) {
      continue;
    }
    const double cost = arm.mean * scales[i];
    if (best == 0 || cost < best_cost) {
      best = arm.batch_size;
      best_cost = cost;
    }
  }
  if (best == 0 || best == batch_size || projected_ratio * joules_per_sample <= factor * best_cost) {
    return 0;
  }
  (void)state.bandit.Observe(batch_size, projected_ratio);
  state.in_flight.erase(job_id);
  return best;
}

std::string BatchSizer::SerializeClass(const std::string& job_class) const {
  auto it = classes_.find(job_class);
  if (it == classes_.end()) return "";
  return absl::StrCat(kHeader, "sizes ", it->second.sizes, " ",
                      absl::StrFormat("%.17g", it->second.log_size_sum), "\n", "unit ",
                      UnitName(it->second.unit), "\n", it->second.bandit.Serialize());
}

absl::Status BatchSizer::ParseClass(const std::string& job_class, absl::string_view data) {
  if (!absl::ConsumePrefix(&data, kHeader)) {
    if (absl::StartsWith(data, kOldHeader) || BatchSizeBandit::Parse(data).ok()) {
      return absl::FailedPreconditionError(
          "stored by an earlier version, whose costs mixed the work ratio with the GPUs' "
          "joules per sample; the class learns its batch sizes afresh");
    }
    return absl::DataLossError("corrupt BatchSizer state: no 'joule.BatchSizer v2' header");
  }
  std::vector<absl::string_view> lines = absl::StrSplit(data, absl::MaxSplits('\n', 2));
  int64_t sizes = 0;
  double log_size_sum = 0;
  std::vector<absl::string_view> tokens;
  if (lines.size() == 3) tokens = absl::StrSplit(lines[0], ' ', absl::SkipEmpty());
  if (tokens.size() != 3 || tokens[0] != "sizes" || !absl::SimpleAtoi(tokens[1], &sizes) ||
      !absl::SimpleAtod(tokens[2], &log_size_sum) || sizes < 0 || !std::isfinite(log_size_sum)) {
    return absl::DataLossError("corrupt BatchSizer state: bad sizes line");
  }
  Unit unit = Unit::kUnset;
  bool known = false;
  for (Unit candidate : {Unit::kUnset, Unit::kWorkRatio, Unit::kJoulesToTarget,
                         Unit::kJoulesPerSample}) {
    if (lines[1] == absl::StrCat("unit ", UnitName(candidate))) {
      unit = candidate;
      known = true;
    }
  }
  if (!known) return absl::DataLossError("corrupt BatchSizer state: bad unit line");
  absl::StatusOr<BatchSizeBandit> bandit = BatchSizeBandit::Parse(lines[2]);
  if (!bandit.ok()) return bandit.status();
  ClassState& state =
      classes_.insert_or_assign(job_class, ClassState{*std::move(bandit)}).first->second;
  state.unit = unit;
  state.sizes = sizes;
  state.log_size_sum = log_size_sum;
  return absl::OkStatus();
}

const BatchSizeBandit* BatchSizer::Bandit(const std::string& job_class) const {
  auto it = classes_.find(job_class);
  return it == classes_.end() ? nullptr : &it->second.bandit;
}

}  // namespace joule
