#include "sim/report/report.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::sim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr double kJoulesPerKwh = 3.6e6;
constexpr char kResnet[] = "imagenet/resnet50";
constexpr char kDeepspeech[] = "librispeech/deepspeech2";

// Fluent builder for a PolicyRun fixture.
class RunBuilder {
 public:
  explicit RunBuilder(std::string policy) { run_.policy = std::move(policy); }

  // A finished job; its GPU energy is half its energy.
  RunBuilder& Job(const std::string& workload, double arrival_s, double start_s,
                  double end_s, double energy_j) {
    JobOutcome job;
    job.trace_id = static_cast<int64_t>(run_.jobs.size());
    job.workload = workload;
    job.gpus = 1;
    job.arrival_s = arrival_s;
    job.start_s = start_s;
    job.end_s = end_s;
    job.energy_j = energy_j;
    job.gpu_energy_j = energy_j / 2;
    job.finished = true;
    run_.jobs.push_back(job);
    return *this;
  }
  // A job still running when the simulation ended, with figures that would
  // show if it were counted.
  RunBuilder& Unfinished(const std::string& workload) {
    Job(workload, 0, 1, 1e9, 1e12);
    run_.jobs.back().finished = false;
    return *this;
  }
  RunBuilder& ClusterEnergyJ(double j) {
    run_.cluster_energy_j = j;
    return *this;
  }
  RunBuilder& MakespanS(double s) {
    run_.makespan_s = s;
    return *this;
  }
  RunBuilder& Events(int64_t events, double wall_seconds) {
    run_.events = events;
    run_.wall_seconds = wall_seconds;
    return *this;
  }
  PolicyRun Build() const { return run_; }

 private:
  PolicyRun run_;
};

// Baseline: 1 kWh resnet job (JCT 1 h, queued 10 min) and 3 kWh deepspeech
// job (JCT 3 h, queued 30 min), plus an unfinished job.
PolicyRun Baseline() {
  return RunBuilder("baseline")
      .Job(kResnet, 0, 600, 3600, 1 * kJoulesPerKwh)
      .Job(kDeepspeech, 3600, 5400, 14400, 3 * kJoulesPerKwh)
      .Unfinished(kResnet)
      .ClusterEnergyJ(10 * kJoulesPerKwh)
      .MakespanS(14400)
      .Events(1000, 2)
      .Build();
}

// Joule: 2.4 kWh in all (40% saving), mean JCT 2.1 h (1.05x baseline).
PolicyRun Joule() {
  return RunBuilder("joule")
      .Job(kResnet, 0, 0, 4320, 0.5 * kJoulesPerKwh)
      .Job(kDeepspeech, 3600, 3600, 14400, 1.9 * kJoulesPerKwh)
      .ClusterEnergyJ(8 * kJoulesPerKwh)
      .MakespanS(14400)
      .Build();
}

// Oracle: 2.0 kWh (50% saving), so Joule gets 80% of the oracle's saving.
// No cluster timeline.
PolicyRun Oracle() {
  return RunBuilder("oracle")
      .Job(kResnet, 0, 600, 3600, 0.5 * kJoulesPerKwh)
      .Job(kDeepspeech, 3600, 5400, 14400, 1.5 * kJoulesPerKwh)
      .MakespanS(14400)
      .Build();
}

std::vector<PolicyRun> ThreeRuns() { return {Baseline(), Joule(), Oracle()}; }

TEST(SummarizeTest, BaselineFiguresExcludeUnfinishedJobs) {
  std::vector<PolicySummary> summaries = Summarize(ThreeRuns());
  ASSERT_EQ(summaries.size(), 3);
  const PolicySummary& s = summaries[0];
  EXPECT_EQ(s.policy, "baseline");
  EXPECT_EQ(s.jobs, 3);
  EXPECT_EQ(s.finished, 2);
  EXPECT_DOUBLE_EQ(s.energy_kwh, 4);
  EXPECT_DOUBLE_EQ(s.gpu_energy_kwh, 2);
  EXPECT_DOUBLE_EQ(s.cluster_energy_kwh, 10);
  EXPECT_DOUBLE_EQ(s.mean_job_j, 2 * kJoulesPerKwh);
  EXPECT_DOUBLE_EQ(s.mean_jct_s, 7200);
  EXPECT_DOUBLE_EQ(s.p99_jct_s, 10800);
  EXPECT_DOUBLE_EQ(s.mean_queue_s, 1200);
  EXPECT_DOUBLE_EQ(s.makespan_s, 14400);
  EXPECT_DOUBLE_EQ(s.events_per_second, 500);
  EXPECT_DOUBLE_EQ(s.wall_seconds, 2);
  EXPECT_DOUBLE_EQ(s.saving_vs_baseline, 0);
  EXPECT_DOUBLE_EQ(s.share_of_oracle_saving, 0);
  EXPECT_DOUBLE_EQ(s.jct_vs_baseline, 1);
  EXPECT_THAT(
      s.mean_job_j_by_workload,
      ElementsAre(std::pair(std::string(kResnet), 1 * kJoulesPerKwh),
                  std::pair(std::string(kDeepspeech), 3 * kJoulesPerKwh)));
}

TEST(SummarizeTest, ComparesWithBaselineAndOracle) {
  std::vector<PolicySummary> summaries = Summarize(ThreeRuns());
  ASSERT_EQ(summaries.size(), 3);
  const PolicySummary& joule = summaries[1];
  EXPECT_NEAR(joule.energy_kwh, 2.4, 1e-12);
  EXPECT_NEAR(joule.saving_vs_baseline, 0.4, 1e-12);
  EXPECT_NEAR(joule.share_of_oracle_saving, 0.8, 1e-12);
  EXPECT_NEAR(joule.jct_vs_baseline, 1.05, 1e-12);
  EXPECT_DOUBLE_EQ(joule.mean_queue_s, 0);
  EXPECT_EQ(joule.events_per_second, 0);  // wall_seconds == 0

  const PolicySummary& oracle = summaries[2];
  EXPECT_NEAR(oracle.saving_vs_baseline, 0.5, 1e-12);
  EXPECT_NEAR(oracle.share_of_oracle_saving, 1, 1e-12);
  EXPECT_TRUE(std::isnan(oracle.cluster_energy_kwh));
}

TEST(SummarizeTest, KeepsInputOrderAndFindsBaselineByName) {
  std::vector<PolicySummary> summaries =
      Summarize({Oracle(), Joule(), Baseline()});
  ASSERT_EQ(summaries.size(), 3);
  EXPECT_EQ(summaries[0].policy, "oracle");
  EXPECT_EQ(summaries[1].policy, "joule");
  EXPECT_EQ(summaries[2].policy, "baseline");
  EXPECT_NEAR(summaries[1].saving_vs_baseline, 0.4, 1e-12);
  EXPECT_NEAR(summaries[1].share_of_oracle_saving, 0.8, 1e-12);
}

TEST(SummarizeTest, PerWorkloadMeans) {
  std::vector<PolicySummary> summaries =
      Summarize({RunBuilder("joule")
                     .Job(kResnet, 0, 0, 10, 100)
                     .Job(kResnet, 0, 0, 10, 300)
                     .Job(kDeepspeech, 0, 0, 10, 1000)
                     .Unfinished(kDeepspeech)
                     .Build()});
  ASSERT_EQ(summaries.size(), 1);
  EXPECT_THAT(summaries[0].mean_job_j_by_workload,
              ElementsAre(std::pair(std::string(kResnet), 200.0),
                          std::pair(std::string(kDeepspeech), 1000.0)));
  EXPECT_DOUBLE_EQ(summaries[0].mean_job_j, 1400.0 / 3);
}

TEST(SummarizeTest, NoBaselineMeansNoComparisons) {
  std::vector<PolicySummary> summaries = Summarize({Joule(), Oracle()});
  for (const PolicySummary& s : summaries) {
    EXPECT_TRUE(std::isnan(s.saving_vs_baseline)) << s.policy;
    EXPECT_TRUE(std::isnan(s.share_of_oracle_saving)) << s.policy;
    EXPECT_TRUE(std::isnan(s.jct_vs_baseline)) << s.policy;
  }
}

TEST(SummarizeTest, NoOracleMeansNoOracleShare) {
  std::vector<PolicySummary> summaries = Summarize({Baseline(), Joule()});
  EXPECT_NEAR(summaries[1].saving_vs_baseline, 0.4, 1e-12);
  EXPECT_TRUE(std::isnan(summaries[1].share_of_oracle_saving));
}

TEST(SummarizeTest, OracleSavingNothingMeansNoOracleShare) {
  // An "oracle" that uses more energy than the baseline.
  PolicyRun oracle =
      RunBuilder("oracle").Job(kResnet, 0, 0, 3600, 5 * kJoulesPerKwh).Build();
  std::vector<PolicySummary> summaries =
      Summarize({Baseline(), Joule(), oracle});
  EXPECT_NEAR(summaries[2].saving_vs_baseline, -0.25, 1e-12);
  EXPECT_TRUE(std::isnan(summaries[1].share_of_oracle_saving));
}

TEST(SummarizeTest, BaselineWithoutEnergyMeansNoSaving) {
  std::vector<PolicySummary> summaries =
      Summarize({RunBuilder("baseline").Unfinished(kResnet).Build(), Joule()});
  EXPECT_TRUE(std::isnan(summaries[1].saving_vs_baseline));
  EXPECT_TRUE(std::isnan(summaries[1].jct_vs_baseline));
}

TEST(SummarizeTest, EmptyAndUnfinishedRunsHaveZeroMeans) {
  std::vector<PolicySummary> summaries =
      Summarize({RunBuilder("baseline").Build(),
                 RunBuilder("joule").Unfinished(kResnet).Build()});
  ASSERT_EQ(summaries.size(), 2);
  for (const PolicySummary& s : summaries) {
    EXPECT_EQ(s.finished, 0) << s.policy;
    EXPECT_EQ(s.energy_kwh, 0) << s.policy;
    EXPECT_EQ(s.mean_job_j, 0) << s.policy;
    EXPECT_EQ(s.mean_jct_s, 0) << s.policy;
    EXPECT_EQ(s.p99_jct_s, 0) << s.policy;
    EXPECT_EQ(s.mean_queue_s, 0) << s.policy;
    EXPECT_TRUE(s.mean_job_j_by_workload.empty()) << s.policy;
  }
  EXPECT_EQ(summaries[1].jobs, 1);
  EXPECT_TRUE(Summarize({}).empty());
}

struct P99Case {
  int jobs;         // JCTs 1, 2, ..., jobs seconds (given in reverse order)
  double want_p99;  // the ceil(0.99 n)-th smallest
};

class P99Test : public ::testing::TestWithParam<P99Case> {};

TEST_P(P99Test, NearestRank) {
  RunBuilder builder("baseline");
  for (int i = GetParam().jobs; i >= 1; --i) builder.Job(kResnet, 0, 0, i, 1);
  std::vector<PolicySummary> summaries = Summarize({builder.Build()});
  EXPECT_DOUBLE_EQ(summaries[0].p99_jct_s, GetParam().want_p99);
}

INSTANTIATE_TEST_SUITE_P(Ranks, P99Test,
                         ::testing::Values(P99Case{1, 1}, P99Case{2, 2},
                                           P99Case{10, 10}, P99Case{100, 99},
                                           P99Case{101, 100}, P99Case{200, 198},
                                           P99Case{1000, 990}));

// The CSV as rows of header -> cell.
std::vector<std::map<std::string, std::string>> ParseCsv(
    const std::string& csv) {
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  std::vector<std::string> header = absl::StrSplit(lines.at(0), ',');
  std::vector<std::map<std::string, std::string>> rows;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> cells = absl::StrSplit(lines[i], ',');
    EXPECT_EQ(cells.size(), header.size()) << lines[i];
    std::map<std::string, std::string> row;
    for (size_t j = 0; j < header.size() && j < cells.size(); ++j) {
      row[header[j]] = cells[j];
    }
    rows.push_back(row);
  }
  return rows;
}

TEST(ToCsvTest, OneRowPerPolicyWithWorkloadColumns) {
  const std::string csv = ToCsv(Summarize(ThreeRuns()));
  EXPECT_THAT(csv, HasSubstr("policy,jobs,finished,energy_kwh,"));
  EXPECT_THAT(csv, HasSubstr(",mean_j_imagenet/resnet50,"
                             "mean_j_librispeech/deepspeech2\n"));
  std::vector<std::map<std::string, std::string>> rows = ParseCsv(csv);
  ASSERT_EQ(rows.size(), 3);

  std::map<std::string, std::string>& baseline = rows[0];
  EXPECT_EQ(baseline["policy"], "baseline");
  EXPECT_EQ(baseline["jobs"], "3");
  EXPECT_EQ(baseline["finished"], "2");
  EXPECT_EQ(baseline["energy_kwh"], "4");
  EXPECT_EQ(baseline["cluster_energy_kwh"], "10");
  EXPECT_EQ(baseline["mean_jct_s"], "7200");
  EXPECT_EQ(baseline["p99_jct_s"], "10800");
  EXPECT_EQ(baseline["mean_queue_s"], "1200");
  EXPECT_EQ(baseline["events_per_second"], "500");
  EXPECT_EQ(baseline["mean_j_imagenet/resnet50"], "3600000");
  EXPECT_EQ(baseline["mean_j_librispeech/deepspeech2"], "10800000");

  std::map<std::string, std::string>& joule = rows[1];
  EXPECT_EQ(joule["policy"], "joule");
  EXPECT_EQ(joule["energy_kwh"], "2.4");
  EXPECT_EQ(joule["saving_vs_baseline"], "0.4");
  EXPECT_EQ(joule["share_of_oracle_saving"], "0.8");
  EXPECT_EQ(joule["jct_vs_baseline"], "1.05");

  EXPECT_EQ(rows[2]["cluster_energy_kwh"], "");  // NaN
}

TEST(ToCsvTest, MissingValuesAreEmptyFields) {
  std::vector<std::map<std::string, std::string>> rows =
      ParseCsv(ToCsv(Summarize(
          {RunBuilder("joule").Job(kResnet, 0, 0, 10, 100).Build(),
           RunBuilder("cap-only").Job(kDeepspeech, 0, 0, 10, 100).Build()})));
  ASSERT_EQ(rows.size(), 2);
  EXPECT_EQ(rows[0]["saving_vs_baseline"], "");
  EXPECT_EQ(rows[0]["mean_j_librispeech/deepspeech2"], "");
  EXPECT_EQ(rows[1]["mean_j_imagenet/resnet50"], "");
  EXPECT_EQ(rows[1]["mean_j_librispeech/deepspeech2"], "100");
}

TEST(ToMarkdownTest, PolicyAndWorkloadTables) {
  const std::string md = ToMarkdown(Summarize(ThreeRuns()));
  EXPECT_THAT(md, HasSubstr("| policy | energy (kWh) | Δ vs baseline | "
                            "share of oracle saving | mean J/job | "
                            "mean JCT (h) | p99 JCT (h) | mean queue (min) | "
                            "makespan (days) | "
                            "cluster energy incl. idle (kWh) |\n"
                            "| --- | --- | --- | --- | --- | --- | --- | --- "
                            "| --- | --- |\n"));
  EXPECT_THAT(md, HasSubstr("| baseline | 4.0 | 0.0% | 0.0% | 7200000 | "
                            "2.00 | 3.00 | 20.0 | 0.17 | 10.0 |\n"));
  EXPECT_THAT(md, HasSubstr("| joule | 2.4 | -40.0% | 80.0% | 4320000 | "
                            "2.10 | 3.00 | 0.0 | 0.17 | 8.0 |\n"));
  EXPECT_THAT(md, HasSubstr("| oracle | 2.0 | -50.0% | 100.0% | 3600000 | "
                            "2.00 | 3.00 | 20.0 | 0.17 | n/a |\n"));
  EXPECT_THAT(md, HasSubstr("- baseline: 2 of 3 jobs finished"));

  EXPECT_THAT(md, HasSubstr("| workload | baseline | joule | oracle |\n"
                            "| --- | --- | --- | --- |\n"
                            "| imagenet/resnet50 | 3600.0 | 1800.0 | 1800.0 |\n"
                            "| librispeech/deepspeech2 | 10800.0 | 6840.0 | "
                            "5400.0 |\n"));
}

TEST(ToMarkdownTest, NaNAndMissingWorkloadsAreNotApplicable) {
  const std::string md = ToMarkdown(
      Summarize({RunBuilder("joule").Job(kResnet, 0, 0, 3600, 1000).Build(),
                 RunBuilder("cap-only").Build()}));
  EXPECT_THAT(md, HasSubstr("| joule | 0.0 | n/a | n/a | 1000 | 1.00 | 1.00 "
                            "| 0.0 | 0.00 | n/a |\n"));
  EXPECT_THAT(md, HasSubstr("| imagenet/resnet50 | 1.0 | n/a |\n"));
  // cap-only finished all (none) of its jobs: no note.
  EXPECT_THAT(md, Not(HasSubstr("- cap-only:")));
}

TEST(CheckTargetsTest, PassAndFailLines) {
  // Joule: 40% saving, 1.05x JCT, 80% of the oracle's 50% saving.
  EXPECT_THAT(
      CheckTargets(Summarize(ThreeRuns())),
      ElementsAre(
          "joule energy saving vs baseline: 40.0% (target >= 40%): PASS",
          "joule mean JCT vs baseline: 1.05x (target <= 1.05x): PASS",
          "joule share of oracle saving: 80.0% (target >= 85%): FAIL",
          "joule makespan vs baseline: 1.00x (target <= 1.05x): PASS",
          "joule-pm cluster energy saving vs baseline: cannot check (no joule-pm run)"));
}

TEST(CheckTargetsTest, ClusterEnergyOfThePowerManagedRun) {
  // joule-pm: 6 kWh of cluster energy against the baseline's 10.
  PolicyRun pm = Joule();
  pm.policy = "joule-pm";
  pm.cluster_energy_j = 6 * kJoulesPerKwh;
  std::vector<PolicyRun> runs = ThreeRuns();
  runs.push_back(pm);
  std::vector<std::string> lines = CheckTargets(Summarize(runs));
  ASSERT_EQ(lines.size(), 5);
  EXPECT_EQ(lines[4], "joule-pm cluster energy saving vs baseline: 40.0% (target >= 35%): PASS");
  runs.back().cluster_energy_j = 7 * kJoulesPerKwh;
  EXPECT_EQ(CheckTargets(Summarize(runs))[4],
            "joule-pm cluster energy saving vs baseline: 30.0% (target >= 35%): FAIL");
  // A longer makespan fails its line.
  runs[1].makespan_s = 14400 * 1.2;
  EXPECT_EQ(CheckTargets(Summarize(runs))[3],
            "joule makespan vs baseline: 1.20x (target <= 1.05x): FAIL");
}

TEST(CheckTargetsTest, FailingSavingAndJct) {
  PolicySummary baseline;
  baseline.policy = "baseline";
  PolicySummary oracle;
  oracle.policy = "oracle";
  PolicySummary joule;
  joule.policy = "joule";
  joule.saving_vs_baseline = 0.3;
  joule.jct_vs_baseline = 1.2;
  joule.share_of_oracle_saving = 0.9;
  EXPECT_THAT(
      CheckTargets({baseline, joule, oracle}),
      ElementsAre(
          "joule energy saving vs baseline: 30.0% (target >= 40%): FAIL",
          "joule mean JCT vs baseline: 1.20x (target <= 1.05x): FAIL",
          "joule share of oracle saving: 90.0% (target >= 85%): PASS",
          "joule makespan vs baseline: cannot check (baseline makespan is 0)",
          "joule-pm cluster energy saving vs baseline: cannot check (no joule-pm run)"));
}

TEST(CheckTargetsTest, TargetsThemselvesPass) {
  PolicySummary baseline;
  baseline.policy = "baseline";
  PolicySummary oracle;
  oracle.policy = "oracle";
  PolicySummary joule;
  joule.policy = "joule";
  joule.saving_vs_baseline = 1 - 0.6;  // 0.40 up to rounding
  joule.jct_vs_baseline = 1.05;
  joule.share_of_oracle_saving = 0.85;
  joule.makespan_vs_baseline = 1.05;
  PolicySummary joule_pm = joule;
  joule_pm.policy = "joule-pm";
  joule_pm.cluster_saving_vs_baseline = 1 - 0.65;
  for (const std::string& line : CheckTargets({baseline, joule, oracle, joule_pm})) {
    EXPECT_THAT(line, HasSubstr(": PASS"));
  }
}

TEST(CheckTargetsTest, MissingPolicies) {
  EXPECT_THAT(
      CheckTargets(Summarize({Baseline(), Oracle()})),
      ElementsAre(
          "joule energy saving vs baseline: cannot check (no joule run)",
          "joule mean JCT vs baseline: cannot check (no joule run)",
          "joule share of oracle saving: cannot check (no joule run)",
          "joule makespan vs baseline: cannot check (no joule run)",
          "joule-pm cluster energy saving vs baseline: cannot check (no joule-pm run)"));
  EXPECT_THAT(
      CheckTargets(Summarize({Joule()})),
      ElementsAre(
          "joule energy saving vs baseline: cannot check (no baseline run)",
          "joule mean JCT vs baseline: cannot check (no baseline run)",
          "joule share of oracle saving: cannot check "
          "(no baseline, oracle run)",
          "joule makespan vs baseline: cannot check (no baseline run)",
          "joule-pm cluster energy saving vs baseline: cannot check (no joule-pm, baseline run)"));
  std::vector<std::string> lines =
      CheckTargets(Summarize({Baseline(), Joule()}));
  ASSERT_EQ(lines.size(), 5);
  EXPECT_THAT(lines[0], HasSubstr(": PASS"));
  EXPECT_EQ(lines[2],
            "joule share of oracle saving: cannot check (no oracle run)");
}

TEST(CheckTargetsTest, OracleSavingNothing) {
  PolicyRun oracle =
      RunBuilder("oracle").Job(kResnet, 0, 0, 3600, 5 * kJoulesPerKwh).Build();
  std::vector<std::string> lines =
      CheckTargets(Summarize({Baseline(), Joule(), oracle}));
  ASSERT_EQ(lines.size(), 5);
  EXPECT_EQ(lines[2],
            "joule share of oracle saving: cannot check "
            "(oracle saves nothing vs baseline)");
}

TEST(CheckTargetsTest, NotesFewerFinishedJobs) {
  PolicyRun joule = Joule();
  joule.jobs.push_back(joule.jobs.front());
  joule.jobs.push_back(joule.jobs.front());
  joule.jobs.back().finished = false;
  std::vector<std::string> lines =
      CheckTargets(Summarize({Baseline(), joule, Oracle()}));
  ASSERT_EQ(lines.size(), 6);
  EXPECT_EQ(lines[5],
            "note: joule finished 3 of 4 jobs, baseline 2 of 3; the "
            "comparisons cover finished jobs only");
}

// ---- Files and the plot ----

std::string TestDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// Whether `name` is an executable in PATH (what a shell's `command -v` does).
bool InPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    if (access(absl::StrCat(dir, "/", name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

TEST(WriteFileTest, WritesAndCreatesDirectories) {
  const std::string path = absl::StrCat(TestDir(), "/write_file/a/b/report.md");
  ASSERT_TRUE(WriteFile(path, "first").ok());
  ASSERT_TRUE(WriteFile(path, "hello\n").ok());
  EXPECT_EQ(ReadAll(path), "hello\n");
}

TEST(WriteFileTest, UnwritablePathFails) {
  absl::Status status = WriteFile("/proc/joule_report_test/x.csv", "x");
  EXPECT_FALSE(status.ok());
}

TEST(WritePlotTest, WritesPng) {
  if (!InPath("gnuplot")) {
    GTEST_SKIP() << "gnuplot is not installed (scripts/setup.sh installs "
                    "gnuplot-nox)";
  }
  std::vector<PolicySummary> summaries = Summarize(
      {Baseline(), Joule(), Oracle(),
       RunBuilder("it's \"cap-only\"").Job(kResnet, 0, 0, 3600, 1e6).Build()});
  const std::string png = absl::StrCat(TestDir(), "/plot dir/it's.png");
  absl::Status status = WritePlot(summaries, png);
  ASSERT_TRUE(status.ok()) << status;
  const std::string content = ReadAll(png);
  ASSERT_GT(content.size(), 8);
  EXPECT_EQ(content.substr(0, 8), "\x89PNG\r\n\x1a\n");
}

TEST(WritePlotTest, SinglePoint) {
  if (!InPath("gnuplot")) GTEST_SKIP() << "gnuplot is not installed";
  const std::string png = absl::StrCat(TestDir(), "/single.png");
  absl::Status status = WritePlot(Summarize({Joule()}), png);
  ASSERT_TRUE(status.ok()) << status;
  struct stat png_stat;
  ASSERT_EQ(stat(png.c_str(), &png_stat), 0);
  EXPECT_GT(png_stat.st_size, 0);
}

TEST(WritePlotTest, MissingGnuplotIsNotFound) {
  absl::Status status =
      WritePlot(Summarize(ThreeRuns()), absl::StrCat(TestDir(), "/x.png"),
                "/nonexistent/bin/gnuplot");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr("/nonexistent/bin/gnuplot"));
}

TEST(WritePlotTest, UnrunnableGnuplotIsFailedPrecondition) {
  // A directory cannot be executed.
  absl::Status status =
      WritePlot(Summarize(ThreeRuns()), absl::StrCat(TestDir(), "/x.png"), "/");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
}

TEST(WritePlotTest, FailingGnuplotIsFailedPrecondition) {
  if (access("/bin/false", X_OK) != 0) GTEST_SKIP() << "no /bin/false";
  absl::Status status = WritePlot(
      Summarize(ThreeRuns()), absl::StrCat(TestDir(), "/x.png"), "/bin/false");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("exited with status 1"));
}

TEST(WritePlotTest, NothingToPlot) {
  absl::Status status = WritePlot({}, absl::StrCat(TestDir(), "/x.png"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

}  // namespace
}  // namespace joule::sim
