#include "scheduler/run_costs.h"

#include <cmath>
#include <cstdint>
#include <map>
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

namespace joule {
namespace {

constexpr absl::string_view kHeader = "joule.RunCosts v1\n";
// Prior on the noise of log(joules per sample): sd and degrees of freedom.
constexpr double kPriorLogSd = 0.1;
constexpr double kPriorDof = 2;
// Backfitting sweeps; the cells are few (models x batch sizes), and the fit
// converges in a handful.
constexpr int kSweeps = 25;

// Weighted mean of `values` by `weights`; `fallback` when the weights are 0.
template <typename Key>
double WeightedMean(const std::map<Key, double>& values, const std::map<Key, double>& weights,
                    double fallback) {
  double sum = 0, total = 0;
  for (const auto& [key, value] : values) {
    sum += weights.at(key) * value;
    total += weights.at(key);
  }
  return total > 0 ? sum / total : fallback;
}

}  // namespace

absl::Status RunCosts::Observe(const std::string& job_class, const std::string& model,
                               int32_t batch_size, double joules_per_sample) {
  if (job_class.empty() || model.empty() || absl::StrContains(model, '\n') ||
      absl::StrContains(job_class, '\n')) {
    return absl::InvalidArgumentError("a run's class and GPU model must be one non-empty line");
  }
  if (batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("a run's batch size must be >= 1, got ",
                                                   batch_size));
  }
  if (!std::isfinite(joules_per_sample) || joules_per_sample <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a run's joules per sample must be finite and > 0, got ", joules_per_sample));
  }
  Cell& cell = classes_[job_class][{model, batch_size}];
  const double value = std::log(joules_per_sample);
  ++cell.n;
  const double delta = value - cell.mean;
  cell.mean += delta / static_cast<double>(cell.n);
  cell.m2 += delta * (value - cell.mean);
  return absl::OkStatus();
}

std::vector<RunCostEstimate> RunCosts::Predict(const std::string& job_class,
                                               const std::string& model,
                                               const std::vector<int32_t>& batch_sizes) const {
  auto found = classes_.find(job_class);
  if (found == classes_.end() || found->second.empty()) return {};
  const Cells& cells = found->second;

  // Pooled noise, shrunk towards the prior.
  double ss = 0, dof = 0;
  for (const auto& [where, cell] : cells) {
    ss += cell.m2;
    dof += static_cast<double>(cell.n - 1);
  }
  const double s = std::sqrt((kPriorDof * kPriorLogSd * kPriorLogSd + ss) / (kPriorDof + dof));

  // Backfitting of log e = alpha[model] + beta[batch size].
  std::map<std::string, double> alpha, model_runs;
  std::map<int32_t, double> beta, batch_runs;
  for (const auto& [where, cell] : cells) {
    model_runs[where.first] += static_cast<double>(cell.n);
    batch_runs[where.second] += static_cast<double>(cell.n);
  }
  for (const auto& [name, runs] : model_runs) alpha[name] = 0;
  for (const auto& [batch, runs] : batch_runs) beta[batch] = 0;
  for (int sweep = 0; sweep < kSweeps; ++sweep) {
    for (auto& [name, value] : alpha) value = 0;
    for (const auto& [where, cell] : cells) {
      alpha[where.first] += static_cast<double>(cell.n) * (cell.mean - beta[where.second]);
    }
    for (auto& [name, value] : alpha) value /= model_runs[name];
    for (auto& [batch, value] : beta) value = 0;
    for (const auto& [where, cell] : cells) {
      beta[where.second] += static_cast<double>(cell.n) * (cell.mean - alpha[where.first]);
    }
    for (auto& [batch, value] : beta) value /= batch_runs[batch];
  }

  // An unmeasured factor: the error of the mean standing in, plus a whole s
  // for how far the factor may lie from it.
  double total_runs = 0;
  for (const auto& [name, runs] : model_runs) total_runs += runs;

  std::vector<RunCostEstimate> estimates;
  estimates.reserve(batch_sizes.size());
  for (int32_t batch_size : batch_sizes) {
    RunCostEstimate estimate;
    auto cell = cells.find({model, batch_size});
    if (cell != cells.end()) {
      estimate.joules_per_sample = std::exp(cell->second.mean);
      estimate.relative_error = s / std::sqrt(static_cast<double>(cell->second.n));
      estimate.observations = cell->second.n;
      estimate.measured = true;
      estimates.push_back(estimate);
      continue;
    }
    double log_joules = 0, variance = 0;
    if (auto a = alpha.find(model); a != alpha.end()) {
      log_joules += a->second;
      variance += 1 / model_runs[model];
    } else {
      log_joules += WeightedMean(alpha, model_runs, 0);
      variance += 1 + 1 / total_runs;
    }
    if (auto b = beta.find(batch_size); b != beta.end()) {
      log_joules += b->second;
      variance += 1 / batch_runs[batch_size];
    } else {
      log_joules += WeightedMean(beta, batch_runs, 0);
      variance += 1 + 1 / total_runs;
    }
    estimate.joules_per_sample = std::exp(log_joules);
    estimate.relative_error = s * std::sqrt(variance);
    estimates.push_back(estimate);
  }
  return estimates;
}

std::string RunCosts::SerializeClass(const std::string& job_class) const {
  auto found = classes_.find(job_class);
  if (found == classes_.end()) return "";
  std::string text(kHeader);
  for (const auto& [where, cell] : found->second) {
    absl::StrAppendFormat(&text, "cell %d %d %.17g %.17g %s\n", where.second, cell.n, cell.mean,
                          cell.m2, where.first);
  }
  return text;
}

absl::Status RunCosts::ParseClass(const std::string& job_class, absl::string_view data) {
  if (!absl::ConsumePrefix(&data, kHeader)) {
    return absl::DataLossError("run costs: missing the 'joule.RunCosts v1' header");
  }
  Cells cells;
  for (absl::string_view line : absl::StrSplit(data, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(' ', 5));
    Cell cell;
    int32_t batch = 0;
    if (fields.size() != 6 || fields[0] != "cell" || !absl::SimpleAtoi(fields[1], &batch) ||
        batch < 1 || !absl::SimpleAtoi(fields[2], &cell.n) || cell.n < 1 ||
        !absl::SimpleAtod(fields[3], &cell.mean) || !std::isfinite(cell.mean) ||
        !absl::SimpleAtod(fields[4], &cell.m2) || !std::isfinite(cell.m2) || cell.m2 < 0 ||
        fields[5].empty()) {
      return absl::DataLossError(absl::StrCat("run costs: bad line '", line, "'"));
    }
    if (!cells.emplace(std::make_pair(std::string(fields[5]), batch), cell).second) {
      return absl::DataLossError(absl::StrCat("run costs: cell repeated: '", line, "'"));
    }
  }
  classes_[job_class] = std::move(cells);
  return absl::OkStatus();
}

}  // namespace joule
