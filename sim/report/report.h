// Report of a trace-driven simulation: the same trace run under several
// placement/power policies (`baseline`, `cap-only`, `joule`, `oracle`), turned
// into per-policy summaries, a CSV, a Markdown table, a check of the project's
// targets for `joule`, and an energy-vs-JCT scatter plot drawn by gnuplot.
//
// Conventions:
//  - Only finished jobs count towards energy, JCT and queueing figures; the
//    others are visible as `jobs - finished`.
//  - A run with no finished job gets 0 for every mean and percentile (not NaN,
//    so tables stay readable); ToMarkdown adds a note under the table for each
//    policy whose jobs did not all finish.
//  - Comparisons (saving, JCT ratio, share of the oracle's saving) are NaN when
//    the reference run is missing or its figure is 0, and are written "n/a"
//    (Markdown) or as an empty field (CSV).
//
// Everything here is a pure function of its input except WriteFile and
// WritePlot, which touch the file system and run a child process. Nothing here
// keeps state; all functions are thread-compatible.
#ifndef JOULE_SIM_REPORT_REPORT_H_
#define JOULE_SIM_REPORT_REPORT_H_

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace joule::sim {

// Policy names the comparisons are made against.
inline constexpr char kBaselinePolicy[] = "baseline";
inline constexpr char kOraclePolicy[] = "oracle";
inline constexpr char kJoulePolicy[] = "joule";
// Joule with idle power management (joule-sim's joule-pm).
inline constexpr char kJoulePmPolicy[] = "joule-pm";

// What happened to one trace job under one policy.
struct JobOutcome {
  int64_t trace_id = 0;
  std::string workload;  // e.g. "imagenet/resnet50"
  int32_t gpus = 0;
  double arrival_s = 0;  // virtual seconds since the trace's first arrival
  double start_s = 0;    // when it started running
  double end_s = 0;      // when it finished
  // The job's energy: its GPUs plus its attributed share of node static power.
  double energy_j = 0;
  double gpu_energy_j = 0;  // GPU part only
  bool finished = false;    // false: still running/queued when the run ended
};

// One simulation of the trace under one policy.
struct PolicyRun {
  std::string policy;
  std::vector<JobOutcome> jobs;
  // Every device including idle GPUs, plus node static power, over the
  // makespan; negative: not applicable (the oracle has no cluster timeline).
  double cluster_energy_j = -1;
  double makespan_s = 0;    // first arrival to last completion
  int64_t events = 0;       // simulated events processed
  double wall_seconds = 0;  // wall-clock time of the run
};

// The figures of one PolicyRun, compared with the baseline and oracle runs.
struct PolicySummary {
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

  std::string policy;
  int64_t jobs = 0;
  int64_t finished = 0;
  double energy_kwh = 0;  // sum of finished jobs' energy_j, in kWh
  double gpu_energy_kwh = 0;
  double cluster_energy_kwh = kNaN;  // NaN when not applicable
  double mean_job_j = 0;
  std::map<std::string, double> mean_job_j_by_workload;  // finished jobs
  double mean_jct_s = 0;    // JCT = end - arrival, finished jobs
  double p99_jct_s = 0;     // nearest-rank 99th percentile
  double mean_queue_s = 0;  // start - arrival, finished jobs
  double makespan_s = 0;
  // 1 - energy / baseline energy, as a fraction; NaN without a baseline run
  // (or when the baseline used no energy).
  double saving_vs_baseline = kNaN;
  // saving / the oracle's saving; NaN without oracle or baseline, or when the
  // oracle saves nothing (<= 0).
  double share_of_oracle_saving = kNaN;
  // mean JCT / the baseline's mean JCT; NaN without a baseline or when the
  // baseline's mean JCT is 0.
  double jct_vs_baseline = kNaN;
  // makespan / the baseline's; NaN without a baseline or when it is 0.
  double makespan_vs_baseline = kNaN;
  // 1 - cluster energy / the baseline's cluster energy; NaN when either is
  // not applicable.
  double cluster_saving_vs_baseline = kNaN;
  double events_per_second =
      0;  // events / wall_seconds; 0 if wall_seconds == 0
  double wall_seconds = 0;
};

// One summary per run, in input order. The baseline and oracle are found by
// policy name (the first run of that name).
std::vector<PolicySummary> Summarize(const std::vector<PolicyRun>& runs);

// A header row and one row per policy. Per-workload means are the columns
// "mean_j_<workload>" (the workload name kept as is, '/' included), over the
// union of workloads, sorted; a policy without a finished job of a workload
// has an empty field there. NaN is written as an empty field.
std::string ToCsv(const std::vector<PolicySummary>& summaries);

// Two GitHub-flavoured Markdown tables: the per-policy figures, then the mean
// kJ per finished job for each workload (rows) under each policy (columns).
// "n/a" stands for NaN and for a workload a policy finished no job of.
std::string ToMarkdown(const std::vector<PolicySummary>& summaries);

// Checks the targets for `joule`, one human-readable line each, e.g.
//   "joule energy saving vs baseline: 37.2% (target >= 35%): PASS"
// Targets: saving >= 35%, mean JCT <= 1.10x the baseline's, and >= 85% of the
// oracle's saving. A target that cannot be checked (a policy missing, a
// reference figure of 0) gets a line saying so and why.
std::vector<std::string> CheckTargets(
    const std::vector<PolicySummary>& summaries);

// Writes a PNG scatter plot to `png_path`: mean JCT in hours on x, energy in
// kWh on y, one labelled point per policy. Runs `gnuplot` (a name looked up in
// PATH, or a path) on a script in a temporary file, using the pngcairo
// terminal when gnuplot has it and png otherwise. Creates the PNG's directory
// if needed.
// Errors: NOT_FOUND if `gnuplot` does not exist; FAILED_PRECONDITION if it
// cannot be run, exits non-zero (the message carries its stderr), or leaves
// no PNG; INVALID_ARGUMENT if no summary has finite figures to plot.
absl::Status WritePlot(const std::vector<PolicySummary>& summaries,
                       const std::string& png_path,
                       const std::string& gnuplot = "gnuplot");

// Writes `content` to `path`, replacing the file, creating its directory if
// needed. An error names the path and the errno text.
absl::Status WriteFile(const std::string& path, const std::string& content);

}  // namespace joule::sim

#endif  // JOULE_SIM_REPORT_REPORT_H_
