#include "sim/report/report.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/files.h"

extern char** environ;

namespace joule::sim {
namespace {

constexpr double kJoulesPerKwh = 3.6e6;
constexpr double kSecondsPerHour = 3600;
constexpr double kSecondsPerMinute = 60;
constexpr double kSecondsPerDay = 86400;

// Targets for `joule` (the project's issue).
constexpr double kTargetSaving = 0.40;         // >= 40% less job energy
constexpr double kTargetJctRatio = 1.05;       // mean JCT <= 1.05x baseline
constexpr double kTargetOracleShare = 0.85;    // >= 85% of the oracle's saving
constexpr double kTargetMakespanRatio = 1.05;  // makespan <= 1.05x baseline
constexpr double kTargetClusterSaving = 0.35;  // joule-pm: >= 35% less cluster energy
// Slack for comparing against a target, so that a figure equal to the target
// up to floating-point rounding (1 - 0.65 is not exactly 0.35) passes.
constexpr double kTargetTolerance = 1e-9;

double Mean(double sum, int64_t count) { return count > 0 ? sum / count : 0; }

// Nearest-rank percentile (p in (0, 100]) of `values`; 0 when empty. Sorts
// `values`.
double NearestRankPercentile(std::vector<double>& values, int p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  // rank = ceil(p/100 * n), in integers to avoid 0.99 * 100 rounding upwards.
  const int64_t n = static_cast<int64_t>(values.size());
  int64_t rank = (p * n + 99) / 100;
  rank = std::clamp<int64_t>(rank, 1, n);
  return values[rank - 1];
}

PolicySummary SummarizeOne(const PolicyRun& run) {
  PolicySummary s;
  s.policy = run.policy;
  s.jobs = static_cast<int64_t>(run.jobs.size());
  s.makespan_s = run.makespan_s;
  s.wall_seconds = run.wall_seconds;
  s.events_per_second =
      run.wall_seconds > 0 ? run.events / run.wall_seconds : 0;
  if (run.cluster_energy_j >= 0) {
    s.cluster_energy_kwh = run.cluster_energy_j / kJoulesPerKwh;
  }

  double energy_j = 0;
  double gpu_energy_j = 0;
  double jct_sum_s = 0;
  double queue_sum_s = 0;
  std::vector<double> jcts_s;
  // workload -> (energy sum, finished jobs)
  std::map<std::string, std::pair<double, int64_t>> by_workload;
  for (const JobOutcome& job : run.jobs) {
    if (!job.finished) continue;
    ++s.finished;
    energy_j += job.energy_j;
    gpu_energy_j += job.gpu_energy_j;
    const double jct_s = job.end_s - job.arrival_s;
    jct_sum_s += jct_s;
    jcts_s.push_back(jct_s);
    queue_sum_s += job.start_s - job.arrival_s;
    auto& [workload_j, workload_jobs] = by_workload[job.workload];
    workload_j += job.energy_j;
    ++workload_jobs;
  }

  s.energy_kwh = energy_j / kJoulesPerKwh;
  s.gpu_energy_kwh = gpu_energy_j / kJoulesPerKwh;
  s.mean_job_j = Mean(energy_j, s.finished);
  s.mean_jct_s = Mean(jct_sum_s, s.finished);
  s.mean_queue_s = Mean(queue_sum_s, s.finished);
  s.p99_jct_s = NearestRankPercentile(jcts_s, 99);
  for (const auto& [workload, sum_and_count] : by_workload) {
    s.mean_job_j_by_workload[workload] =
        Mean(sum_and_count.first, sum_and_count.second);
  }
  return s;
}

// The first summary of `policy`, or null.
const PolicySummary* FindPolicy(const std::vector<PolicySummary>& summaries,
                                const std::string& policy) {
  for (const PolicySummary& s : summaries) {
    if (s.policy == policy) return &s;
  }
  return nullptr;
}

// All workloads any summary has a mean for, sorted.
std::vector<std::string> AllWorkloads(
    const std::vector<PolicySummary>& summaries) {
  std::set<std::string> workloads;
  for (const PolicySummary& s : summaries) {
    for (const auto& [workload, unused] : s.mean_job_j_by_workload) {
      workloads.insert(workload);
    }
  }
  return {workloads.begin(), workloads.end()};
}

// ---- CSV ----

// RFC 4180 quoting, only where needed.
std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  return absl::StrCat("\"", absl::StrReplaceAll(text, {{"\"", "\"\""}}), "\"");
}

// %.9g keeps kWh and seconds exact to well below what the model resolves.
std::string CsvNumber(double value) {
  if (std::isnan(value)) return "";
  return absl::StrFormat("%.9g", value);
}

// ---- Markdown ----

std::string MdText(const std::string& text) {
  return absl::StrReplaceAll(text, {{"|", "\\|"}, {"\n", " "}});
}

// `format` applied to value * scale, or "n/a" for NaN.
std::string MdNumber(double value, const absl::FormatSpec<double>& format,
                     double scale = 1) {
  if (std::isnan(value)) return "n/a";
  return absl::StrFormat(format, value * scale);
}

std::string Percent(double fraction) {
  return MdNumber(fraction, "%.1f%%", 100);
}

// Energy change vs the baseline, signed: "-37.2%"; "0.0%" for no change.
std::string SignedPercent(double fraction) {
  if (std::isnan(fraction)) return "n/a";
  std::string text = absl::StrFormat("%+.1f%%", fraction * 100);
  if (text == "+0.0%" || text == "-0.0%") return "0.0%";
  return text;
}

std::string MdRow(const std::vector<std::string>& cells) {
  return absl::StrCat("| ", absl::StrJoin(cells, " | "), " |\n");
}

std::string MdSeparator(size_t columns) {
  std::vector<std::string> cells(columns, "---");
  return MdRow(cells);
}

// ---- Target checks ----

// "<what>: cannot check (<why>)".
std::string CannotCheck(const std::string& what, const std::string& why) {
  return absl::StrCat(what, ": cannot check (", why, ")");
}

std::string Verdict(bool pass) { return pass ? "PASS" : "FAIL"; }

// Why a comparison between `joule` and the reference runs is impossible, or
// "" when all of them are present.
std::string MissingPolicies(const PolicySummary* joule,
                            const PolicySummary* baseline,
                            const PolicySummary* oracle, bool need_oracle) {
  std::vector<std::string> missing;
  if (joule == nullptr) missing.push_back(kJoulePolicy);
  if (baseline == nullptr) missing.push_back(kBaselinePolicy);
  if (need_oracle && oracle == nullptr) missing.push_back(kOraclePolicy);
  if (missing.empty()) return "";
  return absl::StrCat("no ", absl::StrJoin(missing, ", "), " run");
}

// ---- Plot ----

// A file in $TMPDIR (or /tmp), removed when this goes out of scope.
class TempFile {
 public:
  // Creates "<tmpdir>/joule_<stem>_XXXXXX<suffix>", close-on-exec.
  static absl::Status Create(const std::string& stem, const std::string& suffix,
                             TempFile* file) {
    const char* dir = std::getenv("TMPDIR");
    std::string name =
        absl::StrCat(dir != nullptr && *dir != '\0' ? dir : "/tmp", "/joule_",
                     stem, "_XXXXXX", suffix);
    int fd = mkostemps(name.data(), static_cast<int>(suffix.size()), O_CLOEXEC);
    if (fd < 0) {
      return absl::InternalError(absl::StrCat(
          "cannot create temporary file ", name, ": ", std::strerror(errno)));
    }
    file->fd_ = fd;
    file->path_ = name;
    return absl::OkStatus();
  }

  TempFile() = default;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
  }

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Writes all of `content` to `fd`.
absl::Status WriteAll(int fd, const std::string& content,
                      const std::string& path) {
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("write ", path, ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// The whole file, or "" if it cannot be read (used for gnuplot's messages).
std::string ReadBestEffort(const std::string& path) {
  std::string content;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return content;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) {
    content.append(buffer, n);
  }
  std::fclose(f);
  return content;
}

// A gnuplot single-quoted string: no escapes, a quote is written twice.
std::string GnuplotQuoted(const std::string& text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "''"}}), "'");
}

// A data-block label: double-quoted, and data files have no escapes, so
// characters that would end the field are replaced.
std::string GnuplotLabel(const std::string& text) {
  return absl::StrCat(
      "\"", absl::StrReplaceAll(text, {{"\"", "'"}, {"\n", " "}, {"\r", " "}}),
      "\"");
}

std::string PlotScript(const std::vector<const PolicySummary*>& points,
                       const std::string& png_path) {
  std::string script;
  // gnuplot-nox has pngcairo; a gnuplot built without cairo has only png.
  absl::StrAppend(&script,
                  "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
                  "  set terminal pngcairo size 900,600\n"
                  "} else {\n"
                  "  set terminal png size 900,600\n"
                  "}\n");
  absl::StrAppend(&script, "set output ", GnuplotQuoted(png_path), "\n");
  absl::StrAppend(&script,
                  "set title \"Energy vs job completion time per policy\"\n"
                  "set xlabel \"mean JCT (h)\"\n"
                  "set ylabel \"energy of finished jobs (kWh)\"\n"
                  "set grid\n"
                  // Room around the points so no point or label sits on the
                  // border (left, right, top, bottom).
                  "set offsets graph 0.1, graph 0.25, graph 0.15, graph 0.1\n");
  absl::StrAppend(&script, "$points << EOD\n");
  for (const PolicySummary* s : points) {
    absl::StrAppend(
        &script, GnuplotLabel(s->policy), " ",
        absl::StrFormat("%.9g %.9g", s->mean_jct_s / kSecondsPerHour,
                        s->energy_kwh),
        "\n");
  }
  absl::StrAppend(&script, "EOD\n");
  absl::StrAppend(&script,
                  "plot $points using 2:3 with points pt 7 ps 1.5 notitle, \\\n"
                  "     $points using 2:3:1 with labels offset char 1,1 left "
                  "notitle\n");
  return script;
}

// Runs `program script_path` with stdin from /dev/null and stdout+stderr into
// `log`; returns its wait status in `wait_status`.
absl::Status Run(const std::string& program, const std::string& script_path,
                 const TempFile& log, int* wait_status) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log.fd(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, log.fd(), STDERR_FILENO);
  std::string arg0 = program;
  std::string arg1 = script_path;
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid;
  // posix_spawnp searches PATH for a bare name and takes a name with '/' as
  // a path; glibc reports exec failures (ENOENT, EACCES) as its result.
  int error =
      posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error == ENOENT) {
    return absl::NotFoundError(absl::StrCat(
        "gnuplot not found: '", program,
        "' (install the gnuplot-nox package; scripts/setup.sh does)"));
  }
  if (error != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run gnuplot '", program, "': ", std::strerror(error)));
  }
  while (waitpid(pid, wait_status, 0) < 0) {
    if (errno != EINTR) {
      return absl::InternalError(
          absl::StrCat("waitpid for gnuplot: ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

// The last `max_chars` characters of `text`.
std::string Tail(const std::string& text, size_t max_chars) {
  if (text.size() <= max_chars) return text;
  return absl::StrCat("...", text.substr(text.size() - max_chars));
}

// Creates the directory `path` is in, if it names one.
absl::Status MakeParentDirectories(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return absl::OkStatus();
  return MakeDirectories(path.substr(0, slash));
}

}  // namespace

std::vector<PolicySummary> Summarize(const std::vector<PolicyRun>& runs) {
  std::vector<PolicySummary> summaries;
  summaries.reserve(runs.size());
  for (const PolicyRun& run : runs) summaries.push_back(SummarizeOne(run));

  // Copies, so that filling in `summaries` below cannot change them.
  const PolicySummary* found = FindPolicy(summaries, kBaselinePolicy);
  if (found == nullptr) return summaries;
  const PolicySummary baseline = *found;
  found = FindPolicy(summaries, kOraclePolicy);
  double oracle_saving = PolicySummary::kNaN;
  if (found != nullptr && baseline.energy_kwh > 0) {
    oracle_saving = 1 - found->energy_kwh / baseline.energy_kwh;
  }

  for (PolicySummary& s : summaries) {
    if (baseline.energy_kwh > 0) {
      s.saving_vs_baseline = 1 - s.energy_kwh / baseline.energy_kwh;
    }
    // NaN compares false, so a missing oracle leaves the share NaN too.
    if (oracle_saving > 0) {
      s.share_of_oracle_saving = s.saving_vs_baseline / oracle_saving;
    }
    if (baseline.mean_jct_s > 0) {
      s.jct_vs_baseline = s.mean_jct_s / baseline.mean_jct_s;
    }
    if (baseline.makespan_s > 0) s.makespan_vs_baseline = s.makespan_s / baseline.makespan_s;
    if (baseline.cluster_energy_kwh > 0 && !std::isnan(s.cluster_energy_kwh)) {
      s.cluster_saving_vs_baseline = 1 - s.cluster_energy_kwh / baseline.cluster_energy_kwh;
    }
  }
  return summaries;
}

std::string ToCsv(const std::vector<PolicySummary>& summaries) {
  const std::vector<std::string> workloads = AllWorkloads(summaries);
  std::vector<std::string> header = {"policy",
                                     "jobs",
                                     "finished",
                                     "energy_kwh",
                                     "gpu_energy_kwh",
                                     "cluster_energy_kwh",
                                     "mean_job_j",
                                     "mean_jct_s",
                                     "p99_jct_s",
                                     "mean_queue_s",
                                     "makespan_s",
                                     "saving_vs_baseline",
                                     "share_of_oracle_saving",
                                     "jct_vs_baseline",
                                     "events_per_second",
                                     "wall_seconds"};
  for (const std::string& workload : workloads) {
    header.push_back(CsvField(absl::StrCat("mean_j_", workload)));
  }
  std::string csv = absl::StrCat(absl::StrJoin(header, ","), "\n");

  for (const PolicySummary& s : summaries) {
    std::vector<std::string> row = {CsvField(s.policy),
                                    absl::StrCat(s.jobs),
                                    absl::StrCat(s.finished),
                                    CsvNumber(s.energy_kwh),
                                    CsvNumber(s.gpu_energy_kwh),
                                    CsvNumber(s.cluster_energy_kwh),
                                    CsvNumber(s.mean_job_j),
                                    CsvNumber(s.mean_jct_s),
                                    CsvNumber(s.p99_jct_s),
                                    CsvNumber(s.mean_queue_s),
                                    CsvNumber(s.makespan_s),
                                    CsvNumber(s.saving_vs_baseline),
                                    CsvNumber(s.share_of_oracle_saving),
                                    CsvNumber(s.jct_vs_baseline),
                                    CsvNumber(s.events_per_second),
                                    CsvNumber(s.wall_seconds)};
    for (const std::string& workload : workloads) {
      auto it = s.mean_job_j_by_workload.find(workload);
      row.push_back(
          it == s.mean_job_j_by_workload.end() ? "" : CsvNumber(it->second));
    }
    absl::StrAppend(&csv, absl::StrJoin(row, ","), "\n");
  }
  return csv;
}

std::string ToMarkdown(const std::vector<PolicySummary>& summaries) {
  const std::vector<std::string> header = {
      "policy",          "energy (kWh)",
      "Δ vs baseline",   "share of oracle saving",
      "mean J/job",      "mean JCT (h)",
      "p99 JCT (h)",     "mean queue (min)",
      "makespan (days)", "cluster energy incl. idle (kWh)"};
  std::string md = MdRow(header);
  absl::StrAppend(&md, MdSeparator(header.size()));
  for (const PolicySummary& s : summaries) {
    // Energy relative to the baseline's, signed: -saving.
    const double delta = -s.saving_vs_baseline;
    absl::StrAppend(
        &md, MdRow({MdText(s.policy), MdNumber(s.energy_kwh, "%.1f"),
                    SignedPercent(delta), Percent(s.share_of_oracle_saving),
                    MdNumber(s.mean_job_j, "%.0f"),
                    MdNumber(s.mean_jct_s, "%.2f", 1 / kSecondsPerHour),
                    MdNumber(s.p99_jct_s, "%.2f", 1 / kSecondsPerHour),
                    MdNumber(s.mean_queue_s, "%.1f", 1 / kSecondsPerMinute),
                    MdNumber(s.makespan_s, "%.2f", 1 / kSecondsPerDay),
                    MdNumber(s.cluster_energy_kwh, "%.1f")}));
  }

  // Unfinished jobs are left out of every figure above; say so.
  std::string notes;
  for (const PolicySummary& s : summaries) {
    if (s.finished == s.jobs) continue;
    absl::StrAppend(&notes, "- ", MdText(s.policy), ": ", s.finished, " of ",
                    s.jobs, " jobs finished",
                    s.finished == 0 ? "; its means are 0" : "",
                    "; the figures cover finished jobs only.\n");
  }
  if (!notes.empty()) absl::StrAppend(&md, "\n", notes);

  absl::StrAppend(&md, "\nMean kJ per finished job, by workload:\n\n");
  std::vector<std::string> by_workload_header = {"workload"};
  for (const PolicySummary& s : summaries) {
    by_workload_header.push_back(MdText(s.policy));
  }
  absl::StrAppend(&md, MdRow(by_workload_header),
                  MdSeparator(by_workload_header.size()));
  for (const std::string& workload : AllWorkloads(summaries)) {
    std::vector<std::string> row = {MdText(workload)};
    for (const PolicySummary& s : summaries) {
      auto it = s.mean_job_j_by_workload.find(workload);
      row.push_back(it == s.mean_job_j_by_workload.end()
                        ? "n/a"
                        : MdNumber(it->second, "%.1f", 1e-3));
    }
    absl::StrAppend(&md, MdRow(row));
  }
  return md;
}

std::vector<std::string> CheckTargets(
    const std::vector<PolicySummary>& summaries) {
  const PolicySummary* joule = FindPolicy(summaries, kJoulePolicy);
  const PolicySummary* baseline = FindPolicy(summaries, kBaselinePolicy);
  const PolicySummary* oracle = FindPolicy(summaries, kOraclePolicy);
  std::vector<std::string> lines;

  const std::string saving_what = "joule energy saving vs baseline";
  if (std::string missing = MissingPolicies(joule, baseline, oracle, false);
      !missing.empty()) {
    lines.push_back(CannotCheck(saving_what, missing));
  } else if (std::isnan(joule->saving_vs_baseline)) {
    lines.push_back(CannotCheck(saving_what, "baseline used no energy"));
  } else {
    const double saving = joule->saving_vs_baseline;
    lines.push_back(absl::StrCat(
        saving_what, ": ", Percent(saving),
        " (target >= ", absl::StrFormat("%.0f%%", kTargetSaving * 100),
        "): ", Verdict(saving >= kTargetSaving - kTargetTolerance)));
  }

  const std::string jct_what = "joule mean JCT vs baseline";
  if (std::string missing = MissingPolicies(joule, baseline, oracle, false);
      !missing.empty()) {
    lines.push_back(CannotCheck(jct_what, missing));
  } else if (std::isnan(joule->jct_vs_baseline)) {
    lines.push_back(CannotCheck(jct_what, "baseline mean JCT is 0"));
  } else {
    const double ratio = joule->jct_vs_baseline;
    lines.push_back(absl::StrCat(
        jct_what, ": ", absl::StrFormat("%.2fx", ratio),
        " (target <= ", absl::StrFormat("%.2fx", kTargetJctRatio),
        "): ", Verdict(ratio <= kTargetJctRatio + kTargetTolerance)));
  }

  const std::string share_what = "joule share of oracle saving";
  if (std::string missing = MissingPolicies(joule, baseline, oracle, true);
      !missing.empty()) {
    lines.push_back(CannotCheck(share_what, missing));
  } else if (std::isnan(joule->share_of_oracle_saving)) {
    lines.push_back(
        CannotCheck(share_what, baseline->energy_kwh > 0
                                    ? "oracle saves nothing vs baseline"
                                    : "baseline used no energy"));
  } else {
    const double share = joule->share_of_oracle_saving;
    lines.push_back(absl::StrCat(
        share_what, ": ", Percent(share),
        " (target >= ", absl::StrFormat("%.0f%%", kTargetOracleShare * 100),
        "): ", Verdict(share >= kTargetOracleShare - kTargetTolerance)));
  }

  const std::string makespan_what = "joule makespan vs baseline";
  if (std::string missing = MissingPolicies(joule, baseline, oracle, false);
      !missing.empty()) {
    lines.push_back(CannotCheck(makespan_what, missing));
  } else if (std::isnan(joule->makespan_vs_baseline)) {
    lines.push_back(CannotCheck(makespan_what, "baseline makespan is 0"));
  } else {
    const double ratio = joule->makespan_vs_baseline;
    lines.push_back(absl::StrCat(
        makespan_what, ": ", absl::StrFormat("%.2fx", ratio),
        " (target <= ", absl::StrFormat("%.2fx", kTargetMakespanRatio),
        "): ", Verdict(ratio <= kTargetMakespanRatio + kTargetTolerance)));
  }

  const PolicySummary* joule_pm = FindPolicy(summaries, kJoulePmPolicy);
  const std::string cluster_what = "joule-pm cluster energy saving vs baseline";
  if (joule_pm == nullptr || baseline == nullptr) {
    lines.push_back(CannotCheck(
        cluster_what, joule_pm == nullptr && baseline == nullptr ? "no joule-pm, baseline run"
                      : joule_pm == nullptr                      ? "no joule-pm run"
                                                                 : "no baseline run"));
  } else if (std::isnan(joule_pm->cluster_saving_vs_baseline)) {
    lines.push_back(CannotCheck(cluster_what, "no cluster energy"));
  } else {
    const double saving = joule_pm->cluster_saving_vs_baseline;
    lines.push_back(absl::StrCat(
        cluster_what, ": ", Percent(saving),
        " (target >= ", absl::StrFormat("%.0f%%", kTargetClusterSaving * 100),
        "): ", Verdict(saving >= kTargetClusterSaving - kTargetTolerance)));
  }

  // Energy sums cover finished jobs only, so a policy that finishes fewer
  // jobs looks cheaper than it is; flag it rather than hide it.
  if (joule != nullptr && baseline != nullptr &&
      joule->finished != baseline->finished) {
    lines.push_back(absl::StrCat("note: joule finished ", joule->finished,
                                 " of ", joule->jobs, " jobs, baseline ",
                                 baseline->finished, " of ", baseline->jobs,
                                 "; the comparisons cover finished jobs only"));
  }
  return lines;
}

absl::Status WritePlot(const std::vector<PolicySummary>& summaries,
                       const std::string& png_path,
                       const std::string& gnuplot) {
  std::vector<const PolicySummary*> points;
  for (const PolicySummary& s : summaries) {
    if (std::isfinite(s.energy_kwh) && std::isfinite(s.mean_jct_s)) {
      points.push_back(&s);
    }
  }
  if (points.empty()) {
    return absl::InvalidArgumentError(
        "nothing to plot: no policy summary with finite energy and JCT");
  }
  if (absl::Status status = MakeParentDirectories(png_path); !status.ok()) {
    return status;
  }
  // Remove a stale PNG so that its existence afterwards shows gnuplot wrote it.
  if (unlink(png_path.c_str()) != 0 && errno != ENOENT) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot replace ", png_path, ": ", std::strerror(errno)));
  }

  TempFile script;
  if (absl::Status status = TempFile::Create("plot", ".gp", &script);
      !status.ok()) {
    return status;
  }
  if (absl::Status status =
          WriteAll(script.fd(), PlotScript(points, png_path), script.path());
      !status.ok()) {
    return status;
  }
  TempFile log;
  if (absl::Status status = TempFile::Create("gnuplot", ".log", &log);
      !status.ok()) {
    return status;
  }

  int wait_status = 0;
  if (absl::Status status = Run(gnuplot, script.path(), log, &wait_status);
      !status.ok()) {
    return status;
  }
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    const std::string how =
        WIFEXITED(wait_status)
            ? absl::StrCat("exited with status ", WEXITSTATUS(wait_status))
            : absl::StrCat("was killed by signal ", WTERMSIG(wait_status));
    return absl::FailedPreconditionError(
        absl::StrCat("gnuplot '", gnuplot, "' ", how, " drawing ", png_path,
                     ": ", Tail(ReadBestEffort(log.path()), 2000)));
  }
  struct stat png_stat;
  if (stat(png_path.c_str(), &png_stat) != 0 || png_stat.st_size == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("gnuplot '", gnuplot, "' succeeded but wrote no ",
                     png_path, ": ", Tail(ReadBestEffort(log.path()), 2000)));
  }
  return absl::OkStatus();
}

absl::Status WriteFile(const std::string& path, const std::string& content) {
  if (absl::Status status = MakeParentDirectories(path); !status.ok()) {
    return status;
  }
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::InternalError(
        absl::StrCat("open ", path, ": ", std::strerror(errno)));
  }
  const bool written =
      std::fwrite(content.data(), 1, content.size(), f) == content.size();
  const int write_errno = errno;
  if (std::fclose(f) != 0 || !written) {
    return absl::InternalError(absl::StrCat(
        "write ", path, ": ", std::strerror(written ? errno : write_errno)));
  }
  return absl::OkStatus();
}

}  // namespace joule::sim
