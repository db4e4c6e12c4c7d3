// Data: Zeus, NSDI 2023, ml-energy/zeus trace (Apache-2.0).

#include "sim/hardware/power_tables.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/distributions.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace joule::sim {
namespace {

constexpr char kTrainFile[] = "summary_train.csv";

constexpr char kPowerPrefix[] = "summary_power_";
constexpr char kPowerSuffix[] = ".csv";

struct GpuFile {
  std::string file;
  std::string gpu;
};

// The power files of `dir`, each with its catalog model, sorted by file name.
absl::StatusOr<std::vector<GpuFile>> PowerFiles(const std::string& dir,
                                                const std::vector<GpuModelSpec>& catalog) {
  std::vector<GpuFile> files;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, kPowerPrefix) || !absl::EndsWith(name, kPowerSuffix)) continue;
    const std::string gpu = name.substr(strlen(kPowerPrefix),
                                        name.size() - strlen(kPowerPrefix) - strlen(kPowerSuffix));
    absl::optional<GpuModelSpec> spec = FindGpuModel(catalog, gpu);
    if (!spec) {
      return absl::InvalidArgumentError(absl::StrCat(
          dir, "/", name, ": GPU model '", gpu,
          "' is not in the GPU catalog; describe it there (joule-sim --gpu-catalog)"));
    }
    files.push_back({name, spec->model});
  }
  if (error) return absl::NotFoundError(absl::StrCat("cannot list ", dir, ": ", error.message()));
  std::sort(files.begin(), files.end(),
            [](const GpuFile& a, const GpuFile& b) { return a.file < b.file; });
  return files;
}

// A parsed CSV file: plain comma-separated fields, no quoting (the trace has
// none). Rows keep their 1-based line numbers for error messages.
struct CsvTable {
  std::string path;
  std::map<std::string, int> columns;  // name -> 0-based index
  struct Row {
    int line;
    std::vector<std::string> fields;
  };
  std::vector<Row> rows;

  // Error for field `name` of `row`, "path:line:column: ...".
  absl::Status FieldError(const Row& row, const std::string& name,
                          absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", row.line, ":", columns.at(name) + 1,
                     ": column '", name, "': '",
                     row.fields[columns.at(name)], "' ", what));
  }
  const std::string& Field(const Row& row, const std::string& name) const {
    return row.fields[columns.at(name)];
  }
};

absl::StatusOr<CsvTable> ReadCsv(const std::string& path,
                                 const std::vector<std::string>& required) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string content = buffer.str();

  CsvTable table;
  table.path = path;
  std::vector<std::string> lines = absl::StrSplit(content, '\n');
  // Drop trailing blank lines (a final newline yields one).
  while (!lines.empty() &&
         absl::StripTrailingAsciiWhitespace(lines.back()).empty()) {
    lines.pop_back();
  }
  if (lines.empty()) {
    return absl::DataLossError(absl::StrCat(path, ":1: empty file, no header"));
  }
  for (std::string& line : lines) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
  }
  std::vector<std::string> header = absl::StrSplit(lines[0], ',');
  for (size_t i = 0; i < header.size(); ++i) {
    table.columns[std::string(absl::StripAsciiWhitespace(header[i]))] =
        static_cast<int>(i);
  }
  for (const std::string& name : required) {
    if (table.columns.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":1: missing column '", name, "'"));
    }
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const int line_no = static_cast<int>(i) + 1;
    if (absl::StripAsciiWhitespace(lines[i]).empty()) continue;
    std::vector<std::string> fields = absl::StrSplit(lines[i], ',');
    if (fields.size() != header.size()) {
      return absl::DataLossError(absl::StrCat(
          path, ":", line_no, ":", std::min(fields.size(), header.size()) + 1,
          ": expected ", header.size(), " fields, got ", fields.size()));
    }
    for (std::string& f : fields) {
      f = std::string(absl::StripAsciiWhitespace(f));
    }
    table.rows.push_back({line_no, std::move(fields)});
  }
  if (table.rows.empty()) {
    return absl::DataLossError(absl::StrCat(path, ":2: no data rows"));
  }
  return table;
}

// Finite number > 0 (or >= 0 when `allow_zero`).
absl::StatusOr<double> PositiveDouble(const CsvTable& t, const CsvTable::Row& r,
                                      const std::string& name,
                                      bool allow_zero = false) {
  double v;
  if (!absl::SimpleAtod(t.Field(r, name), &v) || !std::isfinite(v)) {
    return t.FieldError(r, name, "is not a finite number");
  }
  if (v < 0 || (v == 0 && !allow_zero)) {
    return t.FieldError(r, name, "must be positive");
  }
  return v;
}

absl::StatusOr<int> PositiveInt(const CsvTable& t, const CsvTable::Row& r,
                                const std::string& name) {
  int v;
  if (!absl::SimpleAtoi(t.Field(r, name), &v)) {
    return t.FieldError(r, name, "is not an integer");
  }
  if (v <= 0) return t.FieldError(r, name, "must be positive");
  return v;
}

absl::Status NonEmpty(const CsvTable& t, const CsvTable::Row& r,
                      const std::string& name) {
  if (t.Field(r, name).empty()) return t.FieldError(r, name, "is empty");
  return absl::OkStatus();
}

// Most frequent name; ties go to the lexicographically smallest (std::map
// iterates in order and only a strictly larger count replaces the best).
std::string MostRows(const std::map<std::string, int>& counts) {
  std::string best;
  int best_count = -1;
  for (const auto& [name, count] : counts) {
    if (count > best_count) {
      best = name;
      best_count = count;
    }
  }
  return best;
}

// Finds the neighbours of `x` among the sorted keys of `m`: sets *lo and *hi
// (equal on an exact hit or when clamped) and returns whether x was clamped.
template <typename Map, typename Key>
bool Bracket(const Map& m, Key x, typename Map::const_iterator* lo,
             typename Map::const_iterator* hi) {
  auto it = m.lower_bound(x);
  if (it == m.end()) {
    *lo = *hi = std::prev(m.end());
    return true;
  }
  if (it->first == x) {
    *lo = *hi = it;
    return false;
  }
  if (it == m.begin()) {
    *lo = *hi = it;
    return true;
  }
  *lo = std::prev(it);
  *hi = it;
  return false;
}

EpochCost Lerp(const EpochCost& a, const EpochCost& b, double t) {
  EpochCost c;
  c.seconds = a.seconds + t * (b.seconds - a.seconds);
  c.average_power_w =
      a.average_power_w + t * (b.average_power_w - a.average_power_w);
  return c;
}

// Interpolates one batch size's row linearly in power limit.
EpochCost AlongLimit(const std::map<double, EpochCost>& row, double limit_w,
                     bool* extrapolated) {
  std::map<double, EpochCost>::const_iterator lo, hi;
  if (Bracket(row, limit_w, &lo, &hi)) *extrapolated = true;
  if (lo == hi) return lo->second;
  const double t = (limit_w - lo->first) / (hi->first - lo->first);
  return Lerp(lo->second, hi->second, t);
}

}  // namespace

absl::StatusOr<PowerTables> PowerTables::Load(const std::string& dir) {
  return Load(dir, GpuCatalog());
}

absl::StatusOr<PowerTables> PowerTables::Load(const std::string& dir,
                                              const std::vector<GpuModelSpec>& catalog) {
  const std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  PowerTables tables;
  absl::StatusOr<std::vector<GpuFile>> gpu_files = PowerFiles(dir.empty() ? "." : dir, catalog);
  if (!gpu_files.ok()) return gpu_files.status();

  // 1. Read all power rows, counting rows per optimizer per workload.
  struct PowerRow {
    std::string key, gpu, optimizer;
    int batch;
    double limit_w, seconds, power_w;
  };
  std::vector<PowerRow> power_rows;
  std::map<std::string, std::map<std::string, int>> power_opt_counts;
  const std::vector<std::string> power_cols = {
      "dataset",     "network",        "batch_size",   "optimizer",
      "power_limit", "time_per_epoch", "average_power"};
  for (const GpuFile& gf : *gpu_files) {
    const std::string path = prefix + gf.file;
    absl::StatusOr<CsvTable> t = ReadCsv(path, power_cols);
    if (!t.ok()) return t.status();
    tables.gpus_.push_back(gf.gpu);
    for (const CsvTable::Row& r : t->rows) {
      for (const char* c : {"dataset", "network", "optimizer"}) {
        if (absl::Status s = NonEmpty(*t, r, c); !s.ok()) return s;
      }
      PowerRow p;
      p.key = Workload{t->Field(r, "dataset"), t->Field(r, "network")}.Key();
      p.gpu = gf.gpu;
      p.optimizer = t->Field(r, "optimizer");
      absl::StatusOr<int> batch = PositiveInt(*t, r, "batch_size");
      if (!batch.ok()) return batch.status();
      absl::StatusOr<double> limit = PositiveDouble(*t, r, "power_limit");
      if (!limit.ok()) return limit.status();
      absl::StatusOr<double> secs = PositiveDouble(*t, r, "time_per_epoch");
      if (!secs.ok()) return secs.status();
      absl::StatusOr<double> power = PositiveDouble(*t, r, "average_power");
      if (!power.ok()) return power.status();
      p.batch = *batch;
      p.limit_w = *limit;
      p.seconds = *secs;
      p.power_w = *power;
      ++power_opt_counts[p.key][p.optimizer];
      power_rows.push_back(std::move(p));
    }
  }
  if (tables.gpus_.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no summary_power_<gpu>.csv in ", dir));
  }
  std::sort(tables.gpus_.begin(), tables.gpus_.end());

  // 2. Keep the chosen optimizer's rows; average repeated cells.
  for (const auto& [key, counts] : power_opt_counts) {
    tables.optimizer_[key] = MostRows(counts);
  }
  std::map<std::pair<std::string, std::string>,
           std::map<int, std::map<double, int>>>
      cell_counts;
  for (const PowerRow& p : power_rows) {
    if (p.optimizer != tables.optimizer_[p.key]) continue;
    EpochCost& c = tables.grids_[{p.key, p.gpu}][p.batch][p.limit_w];
    c.seconds += p.seconds;
    c.average_power_w += p.power_w;
    ++cell_counts[{p.key, p.gpu}][p.batch][p.limit_w];
  }
  for (auto& [grid_key, grid] : tables.grids_) {
    for (auto& [batch, row] : grid) {
      for (auto& [limit, cost] : row) {
        const int n = cell_counts[grid_key][batch][limit];
        cost.seconds /= n;
        cost.average_power_w /= n;
      }
    }
  }

  // 3. Training runs.
  absl::StatusOr<CsvTable> train =
      ReadCsv(prefix + kTrainFile,
              {"dataset", "network", "batch_size", "optimizer",
               "learning_rate", "run", "target_metric", "target_epoch"});
  if (!train.ok()) return train.status();
  struct TrainRow {
    std::string key, optimizer;
    int batch;
    double target, epochs;  // epochs is NaN when the target was not reached.
  };
  std::vector<TrainRow> train_rows;
  std::map<std::string, std::map<std::string, int>> train_opt_counts;
  for (const CsvTable::Row& r : train->rows) {
    for (const char* c : {"dataset", "network", "optimizer"}) {
      if (absl::Status s = NonEmpty(*train, r, c); !s.ok()) return s;
    }
    TrainRow row;
    row.key = Workload{train->Field(r, "dataset"), train->Field(r, "network")}
                  .Key();
    row.optimizer = train->Field(r, "optimizer");
    absl::StatusOr<int> batch = PositiveInt(*train, r, "batch_size");
    if (!batch.ok()) return batch.status();
    row.batch = *batch;
    if (!absl::SimpleAtod(train->Field(r, "target_metric"), &row.target) ||
        !std::isfinite(row.target)) {
      return train->FieldError(r, "target_metric", "is not a finite number");
    }
    const std::string& epochs = train->Field(r, "target_epoch");
    if (epochs == "nan" || epochs == "NaN") {
      row.epochs = std::nan("");
    } else {
      absl::StatusOr<double> e =
          PositiveDouble(*train, r, "target_epoch", /*allow_zero=*/true);
      if (!e.ok()) return e.status();
      row.epochs = *e;
    }
    ++train_opt_counts[row.key][row.optimizer];
    train_rows.push_back(std::move(row));
  }
  std::map<std::string, std::string> train_optimizer;
  for (const auto& [key, counts] : train_opt_counts) {
    auto it = tables.optimizer_.find(key);
    const bool has_power_choice =
        it != tables.optimizer_.end() && counts.count(it->second) > 0;
    train_optimizer[key] = has_power_choice ? it->second : MostRows(counts);
  }
  for (const TrainRow& row : train_rows) {
    if (row.optimizer != train_optimizer[row.key]) continue;
    std::map<int, std::vector<double>>& by_batch =
        tables.train_[row.key][row.target];
    if (std::isnan(row.epochs)) continue;  // Never reached the target.
    by_batch[row.batch].push_back(row.epochs);
  }
  return tables;
}

absl::StatusOr<EpochCost> PowerTables::Epoch(const Workload& workload,
                                             const std::string& gpu,
                                             double power_limit_w,
                                             int batch_size) const {
  if (batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch size must be positive, got ", batch_size));
  }
  if (!std::isfinite(power_limit_w) || power_limit_w <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("power limit must be positive, got ", power_limit_w));
  }
  auto it = grids_.find({workload.Key(), gpu});
  if (it == grids_.end()) {
    return absl::NotFoundError(absl::StrCat("no power data for workload '",
                                            workload.Key(), "' on GPU '", gpu,
                                            "'"));
  }
  const Grid& grid = it->second;
  Grid::const_iterator lo, hi;
  bool extrapolated = Bracket(grid, batch_size, &lo, &hi);
  EpochCost a = AlongLimit(lo->second, power_limit_w, &extrapolated);
  EpochCost result = a;
  if (lo != hi) {
    EpochCost b = AlongLimit(hi->second, power_limit_w, &extrapolated);
    const double x0 = std::log2(static_cast<double>(lo->first));
    const double x1 = std::log2(static_cast<double>(hi->first));
    const double x = std::log2(static_cast<double>(batch_size));
    const double t = (x - x0) / (x1 - x0);
    result = Lerp(a, b, t);
  }
  result.extrapolated = extrapolated;
  return result;
}

std::vector<double> PowerTables::PowerLimits(const Workload& workload,
                                             const std::string& gpu) const {
  std::vector<double> limits;
  auto it = grids_.find({workload.Key(), gpu});
  if (it == grids_.end()) return limits;
  for (const auto& [batch, row] : it->second) {
    for (const auto& [limit, cost] : row) limits.push_back(limit);
  }
  std::sort(limits.begin(), limits.end());
  limits.erase(std::unique(limits.begin(), limits.end()), limits.end());
  return limits;
}

std::vector<int> PowerTables::BatchSizes(const Workload& workload,
                                         const std::string& gpu) const {
  std::vector<int> sizes;
  auto it = grids_.find({workload.Key(), gpu});
  if (it == grids_.end()) return sizes;
  for (const auto& [batch, row] : it->second) sizes.push_back(batch);
  return sizes;
}

std::vector<std::string> PowerTables::Workloads() const {
  std::vector<std::string> keys;
  for (const auto& [key, opt] : optimizer_) keys.push_back(key);
  return keys;
}

std::vector<std::string> PowerTables::Gpus() const { return gpus_; }

absl::StatusOr<std::string> PowerTables::Optimizer(
    const Workload& workload) const {
  auto it = optimizer_.find(workload.Key());
  if (it == optimizer_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no power data for workload '", workload.Key(), "'"));
  }
  return it->second;
}

absl::StatusOr<double> PowerTables::DefaultTargetMetric(
    const Workload& workload) const {
  auto it = train_.find(workload.Key());
  if (it == train_.end() || it->second.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no training runs for workload '", workload.Key(), "'"));
  }
  // Lower median of the distinct recorded targets: direction-agnostic
  // (accuracy rises, word error rate falls) and deterministic.
  auto median = it->second.begin();
  std::advance(median, (it->second.size() - 1) / 2);
  return median->first;
}

absl::StatusOr<double> PowerTables::EpochsToTarget(const Workload& workload,
                                                   int batch_size,
                                                   absl::BitGenRef gen) const {
  absl::StatusOr<double> target = DefaultTargetMetric(workload);
  if (!target.ok()) return target.status();
  return EpochsToTarget(workload, batch_size, *target, gen);
}

absl::StatusOr<double> PowerTables::EpochsToTarget(const Workload& workload,
                                                   int batch_size,
                                                   double target_metric,
                                                   absl::BitGenRef gen) const {
  if (batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch size must be positive, got ", batch_size));
  }
  auto it = train_.find(workload.Key());
  if (it == train_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no training runs for workload '", workload.Key(), "'"));
  }
  // Targets are parsed from text, so compare with a small relative tolerance.
  const std::map<int, std::vector<double>>* by_batch = nullptr;
  for (const auto& [target, runs] : it->second) {
    if (std::abs(target - target_metric) <=
        1e-9 * std::max(1.0, std::abs(target_metric))) {
      by_batch = &runs;
      break;
    }
  }
  if (by_batch == nullptr || by_batch->empty()) {
    return absl::NotFoundError(absl::StrCat("no run of workload '",
                                            workload.Key(),
                                            "' reached target metric ",
                                            target_metric));
  }
  // Nearest recorded batch size in log2 distance; ties go to the smaller.
  const double x = std::log2(static_cast<double>(batch_size));
  const std::vector<double>* runs = nullptr;
  double best = 0;
  for (const auto& [batch, epochs] : *by_batch) {
    const double d = std::abs(std::log2(static_cast<double>(batch)) - x);
    if (runs == nullptr || d < best) {
      runs = &epochs;
      best = d;
    }
  }
  const size_t i = absl::Uniform<size_t>(gen, 0, runs->size());
  return (*runs)[i];
}

}  // namespace joule::sim
