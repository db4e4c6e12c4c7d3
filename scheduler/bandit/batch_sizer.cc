#include "scheduler/bandit/batch_sizer.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"

namespace joule {
namespace {

constexpr absl::string_view kHeader = "joule.BatchSizer v1\n";

}  // namespace

BatchChoice BatchSizer::Choose(const BatchRequest& request, absl::BitGenRef gen,
                               const std::function<bool(const std::string&)>& running) {
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
  ClassState& state = it->second;
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
  absl::StatusOr<int32_t> chosen = state.bandit.Choose(gen, arms, explore);
  BatchChoice choice;
  // A class whose range changed may have arms outside the new range.
  if (!chosen.ok() || *chosen < request.min || *chosen > request.max) {
    choice.batch_size = request.default_size;
    choice.reason = absl::StrFormat(
        "%d: the job's default batch size (the class's bandit has no usable arm)",
        request.default_size);
  } else {
    choice.batch_size = *chosen;
    choice.reason = absl::StrFormat(
        "%d: the class's batch-size bandit (cost: %s; %d attempts in flight); %s\n%s", *chosen,
        request.expected_samples > 0 ? "joules per declared sample"
                                     : "joules to target where reported, else joules per sample",
        arms.size(), who, state.bandit.Explain());
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

void BatchSizer::Started(const std::string& job_class, const std::string& job_id,
                         int32_t batch_size) {
  auto it = classes_.find(job_class);
  if (it != classes_.end()) it->second.in_flight[job_id] = batch_size;
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
  if (outcome.target_reached && outcome.expected_samples <= 0 && it->second.sizes > 0) {
    // Its raw joules to target would sit among costs per declared sample.
    return absl::InvalidArgumentError(absl::StrCat(
        "class ", outcome.job_class, " learns joules per declared sample, and ", outcome.job_id,
        " declares no expected_samples"));
  }
  double cost = outcome.joules / outcome.samples;
  if (outcome.target_reached) {
    cost = outcome.expected_samples > 0 ? outcome.joules / outcome.expected_samples
                                        : outcome.joules;
  }
  return it->second.bandit.Observe(outcome.batch_size, cost);
}

int32_t BatchSizer::CheckRunning(const std::string& job_class, const std::string& job_id,
                                 int32_t batch_size, double projected_cost, double factor,
                                 int32_t min, int32_t max) {
  auto it = classes_.find(job_class);
  if (it == classes_.end() || !(projected_cost > 0)) return 0;
  ClassState& state = it->second;
  double best_mean = -1;
  int32_t best = 0;
  for (const BatchSizeArmSummary& arm : state.bandit.Summaries()) {
    if (arm.observations == 0 || arm.pruned || arm.batch_size < min || arm.batch_size > max) {
      continue;
    }
    if (best == 0 || arm.mean < best_mean) {
      best = arm.batch_size;
      best_mean = arm.mean;
    }
  }
  if (best == 0 || best == batch_size || projected_cost <= factor * best_mean) return 0;
  (void)state.bandit.Observe(batch_size, projected_cost);
  state.in_flight.erase(job_id);
  return best;
}

std::string BatchSizer::SerializeClass(const std::string& job_class) const {
  auto it = classes_.find(job_class);
  if (it == classes_.end()) return "";
  return absl::StrCat(kHeader, "sizes ", it->second.sizes, " ",
                      absl::StrFormat("%.17g", it->second.log_size_sum), "\n",
                      it->second.bandit.Serialize());
}

absl::Status BatchSizer::ParseClass(const std::string& job_class, absl::string_view data) {
  int64_t sizes = 0;
  double log_size_sum = 0;
  if (absl::ConsumePrefix(&data, kHeader)) {
    const size_t end = data.find('\n');
    std::vector<absl::string_view> tokens =
        absl::StrSplit(data.substr(0, end), ' ', absl::SkipEmpty());
    if (end == absl::string_view::npos || tokens.size() != 3 || tokens[0] != "sizes" ||
        !absl::SimpleAtoi(tokens[1], &sizes) || !absl::SimpleAtod(tokens[2], &log_size_sum) ||
        sizes < 0 || !std::isfinite(log_size_sum)) {
      return absl::DataLossError("corrupt BatchSizer state: bad sizes line");
    }
    data.remove_prefix(end + 1);
  }
  absl::StatusOr<BatchSizeBandit> bandit = BatchSizeBandit::Parse(data);
  if (!bandit.ok()) return bandit.status();
  ClassState& state =
      classes_.insert_or_assign(job_class, ClassState{*std::move(bandit)}).first->second;
  state.sizes = sizes;
  state.log_size_sum = log_size_sum;
  return absl::OkStatus();
}

const BatchSizeBandit* BatchSizer::Bandit(const std::string& job_class) const {
  auto it = classes_.find(job_class);
  return it == classes_.end() ? nullptr : &it->second.bandit;
}

}  // namespace joule
