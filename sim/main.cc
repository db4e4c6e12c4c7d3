// joule-sim: runs the Philly trace on a simulated cluster under each policy
// (baseline, cap-only, joule, and the oracle bound) with the real scheduler
// core on a virtual clock, and prints the energy/JCT report. See
// sim/README.md.

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/device_catalog.h"
#include "common/log.h"
#include "sim/engine/oracle.h"
#include "sim/engine/simulator.h"
#include "sim/engine/work_model.h"
#include "sim/hardware/power_tables.h"
#include "sim/report/report.h"
#include "sim/trace/cluster_config.h"
#include "sim/trace/job_trace.h"
#include "sim/trace/philly_trace.h"
#include "sim/trace/workload_mapping.h"

namespace joule::sim {
namespace {

struct Flags {
  std::string data_dir = "../shared/data";
  std::string trace;
  std::string power_dir;
  std::string cluster = "sim/clusters/mixed.yaml";
  std::string gpu_catalog;
  std::string policies = "baseline,cap-only,joule,joule-pm,oracle";
  int64_t limit = 0;
  double max_job_hours = 0;
  bool caps_count_static_power = true;
  double max_slowdown = 0;
  double size_error = SimOptions().size_error;
  double suspend_after_min = 30;
  double standby_power_w = SimOptions().standby_power_w;
  double resume_time_s = absl::ToDoubleSeconds(SimOptions().resume_time);
  uint64_t seed = 1;
  double telemetry_period_s = 300;
  std::string out_dir = "sim-out";
  int threads = 2;
};

// Relative paths are taken from where the command was typed, also under
// `bazel run` (which starts the binary in its runfiles tree).
std::string Resolve(const std::string& path) {
  const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  if (path.empty() || path[0] == '/' || workspace == nullptr) return path;
  return std::string(workspace) + "/" + path;
}

int Run(const Flags& flags) {
  SetMinLogLevel(LogLevel::kWarning);
  const std::string trace_path =
      Resolve(flags.trace.empty() ? flags.data_dir + "/traces/philly.csv" : flags.trace);
  const std::string power_dir =
      Resolve(flags.power_dir.empty() ? flags.data_dir + "/gpu-power" : flags.power_dir);
  std::vector<GpuModelSpec> catalog = GpuCatalog();
  if (!flags.gpu_catalog.empty()) {
    absl::StatusOr<std::vector<GpuModelSpec>> loaded =
        LoadGpuCatalogFile(Resolve(flags.gpu_catalog));
    if (!loaded.ok()) {
      std::cerr << "joule-sim: --gpu-catalog " << loaded.status().message() << "\n";
      return 1;
    }
    catalog = *std::move(loaded);
  }
  absl::StatusOr<PowerTables> tables = PowerTables::Load(power_dir, catalog);
  if (!tables.ok()) {
    std::cerr << "joule-sim: power tables: " << tables.status() << "\n";
    return 1;
  }
  absl::StatusOr<ClusterConfig> cluster = LoadClusterConfig(Resolve(flags.cluster));
  if (!cluster.ok()) {
    std::cerr << "joule-sim: " << cluster.status() << "\n";
    return 1;
  }
  absl::StatusOr<std::vector<TraceJob>> trace = LoadAnyTrace(trace_path, flags.limit);
  if (!trace.ok()) {
    std::cerr << "joule-sim: trace: " << trace.status() << "\n";
    return 1;
  }
  // A second job mix: only the short jobs (where profiling and exploration
  // cost the most), arriving as they did.
  if (flags.max_job_hours > 0) {
    trace->erase(std::remove_if(trace->begin(), trace->end(),
                                [&](const TraceJob& job) {
                                  return job.duration_s > flags.max_job_hours * 3600;
                                }),
                 trace->end());
  }
  absl::StatusOr<WorkModel> model = WorkModel::Create(&*tables, *cluster, flags.seed);
  if (!model.ok()) {
    std::cerr << "joule-sim: " << model.status() << "\n";
    return 1;
  }
  std::vector<SimJob> jobs;
  for (const MappedJob& mapped : MapWorkloads(*trace, flags.seed)) {
    absl::StatusOr<SimJob> job = model->Build(mapped);
    if (!job.ok()) {
      std::cerr << "joule-sim: trace job " << mapped.job.id << ": " << job.status() << "\n";
      return 1;
    }
    jobs.push_back(*std::move(job));
  }
  std::cout << absl::StrFormat("joule-sim: %d jobs of %s on cluster %s (%d GPUs), seed %d\n",
                               jobs.size(), trace_path, cluster->name, cluster->TotalGpus(),
                               flags.seed);

  std::vector<std::string> names = absl::StrSplit(flags.policies, ',', absl::SkipEmpty());
  std::vector<absl::StatusOr<PolicyRun>> results(names.size(),
                                                 absl::UnknownError("not run"));
  // Each policy gets its own work model (its cost cache is not shared) and
  // runs on its own thread, `threads` at a time.
  auto run_one = [&](size_t i) {
    WorkModel own = *model;
    if (names[i] == "oracle") {
      results[i] = ComputeOracle(own, *cluster, jobs, catalog);
      return;
    }
    // joule-pm: joule with idle power management.
    const bool power_managed = names[i] == "joule-pm";
    absl::StatusOr<Policy> policy = ParsePolicy(power_managed ? "joule" : names[i]);
    if (!policy.ok()) {
      results[i] = policy.status();
      return;
    }
    SimOptions options;
    options.policy = *policy;
    options.seed = flags.seed;
    options.caps_count_static_power = flags.caps_count_static_power;
    options.max_slowdown = flags.max_slowdown;
    options.size_error = flags.size_error;
    options.gpu_catalog = catalog;
    options.telemetry_period = absl::Seconds(flags.telemetry_period_s);
    if (power_managed) {
      options.suspend_after = absl::Seconds(flags.suspend_after_min * 60);
      options.standby_power_w = flags.standby_power_w;
      options.resume_time = absl::Seconds(flags.resume_time_s);
    }
    Simulator simulator(&own, *cluster, jobs, options);
    results[i] = simulator.Run();
    if (results[i].ok() && power_managed) results[i]->policy = "joule-pm";
  };
  for (size_t first = 0; first < names.size(); first += flags.threads) {
    std::vector<std::thread> threads;
    for (size_t i = first; i < names.size() && i < first + flags.threads; ++i) {
      threads.emplace_back(run_one, i);
    }
    for (std::thread& thread : threads) thread.join();
  }
  std::vector<PolicyRun> runs;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!results[i].ok()) {
      std::cerr << "joule-sim: policy " << names[i] << ": " << results[i].status() << "\n";
      return 1;
    }
    const PolicyRun& run = *results[i];
    std::cout << absl::StrFormat(
        "%-9s %9d events in %6.1f s wall: %9.0f simulated events/s; %d/%d jobs finished\n",
        run.policy, run.events, run.wall_seconds,
        run.wall_seconds > 0 ? run.events / run.wall_seconds : 0.0,
        std::count_if(run.jobs.begin(), run.jobs.end(),
                      [](const JobOutcome& job) { return job.finished; }),
        run.jobs.size());
    runs.push_back(*std::move(results[i]));
  }
  const std::vector<PolicySummary> summaries = Summarize(runs);
  std::cout << "\n" << ToMarkdown(summaries) << "\n";
  for (const std::string& line : CheckTargets(summaries)) std::cout << line << "\n";

  const std::string out = Resolve(flags.out_dir);
  absl::Status written = WriteFile(out + "/report.csv", ToCsv(summaries));
  if (written.ok()) written = WriteFile(out + "/report.md", ToMarkdown(summaries));
  // Per policy, every job's outcome, for analysis (e.g. the makespan tail).
  for (const PolicyRun& run : runs) {
    if (!written.ok()) break;
    std::string csv =
        "trace_id,workload,gpus,arrival_s,start_s,end_s,energy_j,gpu_energy_j,finished\n";
    for (const JobOutcome& job : run.jobs) {
      absl::StrAppendFormat(&csv, "%d,%s,%d,%.0f,%.0f,%.0f,%.0f,%.0f,%d\n", job.trace_id,
                            job.workload, job.gpus, job.arrival_s, job.start_s, job.end_s,
                            job.energy_j, job.gpu_energy_j, job.finished ? 1 : 0);
    }
    written = WriteFile(absl::StrCat(out, "/jobs-", run.policy, ".csv"), csv);
  }
  if (!written.ok()) {
    std::cerr << "joule-sim: " << written << "\n";
    return 1;
  }
  absl::Status plotted = WritePlot(summaries, out + "/energy_vs_jct.png");
  std::cout << "\nwrote " << out << "/report.csv, " << out << "/report.md"
            << (plotted.ok() ? ", " + out + "/energy_vs_jct.png" : "") << "\n";
  if (!plotted.ok()) std::cerr << "joule-sim: no plot: " << plotted.message() << "\n";
  return 0;
}

}  // namespace
}  // namespace joule::sim

int main(int argc, char** argv) {
  joule::sim::Flags flags;
  CLI::App app{"joule-sim: the Philly trace under each scheduling policy, on a virtual clock"};
  app.add_option("--data-dir", flags.data_dir,
                 "directory with traces/philly.csv and gpu-power/ (relative: from the "
                 "current directory)")
      ->capture_default_str();
  app.add_option("--trace", flags.trace,
                 "job trace: the Philly CSV, or any trace in sim/trace/job_trace.h's format "
                 "(arrival_s,duration_s,gpus[,user]) (default: <data-dir>/traces/philly.csv)");
  app.add_option("--power-dir", flags.power_dir,
                 "Zeus power tables (default: <data-dir>/gpu-power)");
  app.add_option("--cluster", flags.cluster, "cluster YAML")->capture_default_str();
  app.add_option("--gpu-catalog", flags.gpu_catalog,
                 "GPU models added to or replacing the built-in catalog, in joule-scheduler's "
                 "--gpu-catalog CSV format; each summary_power_<gpu>.csv must name one");
  app.add_option("--policies", flags.policies,
                 "comma-separated: baseline, cap-only, joule, joule-pm (joule with idle "
                 "nodes suspended), oracle")
      ->capture_default_str();
  app.add_option("--jobs", flags.limit, "only the earliest N trace jobs (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--caps-count-static-power", flags.caps_count_static_power,
                 "joule chooses power caps by GPU plus attributed node static energy; "
                 "false: GPU energy only")
      ->capture_default_str();
  app.add_option("--max-slowdown", flags.max_slowdown,
                 "joule's jobs ask for the least energy within this slowdown instead of "
                 "the default objective (the least total energy); 0: the default")
      ->check(CLI::Validator(
          [](std::string& value) {
            double s = 0;
            return absl::SimpleAtod(value, &s) && (s == 0 || (s >= 1 && s <= 100))
                       ? std::string()
                       : std::string("must be 0 or in [1, 100]");
          },
          "0 or [1, 100]"))
      ->capture_default_str();
  app.add_option("--size-error", flags.size_error,
                 "joule's jobs declare their size with this log-normal error (sigma of "
                 "the log; 0: exact; negative: no declared size)")
      ->capture_default_str();
  app.add_option("--suspend-after-min", flags.suspend_after_min,
                 "joule-pm: suspend nodes idle this many minutes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--standby-power-w", flags.standby_power_w,
                 "joule-pm: a suspended node's draw in watts")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--resume-time-s", flags.resume_time_s,
                 "joule-pm: seconds a suspended node takes to come back")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--max-job-hours", flags.max_job_hours,
                 "only trace jobs that ran at most this long (0: all); the second job mix")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", flags.seed, "seed of the workload mapping, draws and scheduler")
      ->capture_default_str();
  app.add_option("--telemetry-period", flags.telemetry_period_s,
                 "simulated agents' telemetry period, virtual seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--out", flags.out_dir, "where report.csv, report.md and the plot go")
      ->capture_default_str();
  app.add_option("--threads", flags.threads, "policies simulated at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return joule::sim::Run(flags);
}
