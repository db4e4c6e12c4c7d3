// submission_bench: durable job submissions per second on the embedded
// store, through the real Scheduler::SubmitJob, with group commit (the
// writer commits everything queued with one fdatasync) and, in the same run
// and process, the baseline of one fdatasync per job (the writer limited to
// one mutation per commit: what the scheduler did before group commit). It
// prints, per number of concurrent submitters, jobs/s and the p50 and p99
// latency of SubmitJob for both, the ratio, and PASS/FAIL against the
// issue's targets (at least 5,000 jobs/s, p99 at most 20 ms, group commit).
//
//   bazel run -c opt //tests/bench:submission_bench -- --submitters=16,64
//
// Method, for each submitter count and repetition (both modes back to back,
// in alternating order):
//   1. A new LocalStore in a fresh directory under $TMPDIR (or /tmp) and a
//      Scheduler on it (real clock, no nodes: jobs stay pending).
//   2. N threads wait for a start signal, then call SubmitJob (each job its
//      own request_id, as joulectl sends) back to back until --duration-s
//      has passed, each timing its calls on the real clock.
//   3. Jobs/s = submissions answered OK within the duration / the duration;
//      latencies over all of them. The scheduler is destroyed (its writer
//      drains), the directory removed.
// The figures are the medians over --repetitions.
//
// Exit status: 0 when group commit meets both targets at every submitter
// count, 1 when it misses one, 2 when the benchmark could not run.
//
// Threading: main() and the submitter threads of one run, which share only
// the Scheduler (thread-safe) and the start signal.

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"
#include "joule/v1/job.pb.h"
#include "scheduler/scheduler.h"
#include "scheduler/store/local_store.h"

namespace joule {
namespace {

struct Flags {
  std::string submitters = "16,64";
  double duration_s = 3;
  int repetitions = 3;
  double target_jobs_per_s = 5000;
  double target_p99_ms = 20;
};

enum class Mode { kGroupCommit, kPerJob };

const char* ModeName(Mode mode) {
  return mode == Mode::kGroupCommit ? "group commit" : "fsync per job";
}

struct RunResult {
  double jobs_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  // Jobs per store commit (fdatasync).
  double jobs_per_commit = 0;
};

double Percentile(std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  const size_t at = std::min(values.size() - 1, static_cast<size_t>(q * values.size()));
  std::nth_element(values.begin(), values.begin() + at, values.end());
  return values[at];
}

double Median(std::vector<double> values) { return Percentile(values, 0.5); }

absl::StatusOr<std::string> MakeTempDir() {
  const char* base = getenv("TMPDIR");
  std::string path = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp",
                                  "/submission_bench_XXXXXX");
  if (mkdtemp(path.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", path, " failed"));
  }
  return path;
}

absl::StatusOr<RunResult> Run(Mode mode, int submitters, absl::Duration duration) {
  absl::StatusOr<std::string> dir = MakeTempDir();
  if (!dir.ok()) return dir.status();
  RunResult result;
  {
    absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(*dir);
    if (!store.ok()) return store.status();
    SchedulerOptions options;
    // The baseline: one job per commit, so one fdatasync per job, as before
    // group commit (the write itself is the same code path).
    if (mode == Mode::kPerJob) options.store_writes.max_batch_mutations = 1;
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
        Scheduler::Create(store->get(), RealClock::Get(), options);
    if (!scheduler.ok()) return scheduler.status();

    const Clock* clock = RealClock::Get();
    absl::Notification go;
    absl::Time end;
    std::vector<std::vector<double>> latencies_ms(submitters);
    std::vector<int64_t> failures(submitters, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < submitters; ++t) {
      threads.emplace_back([&, t] {
        go.WaitForNotification();
        for (int64_t i = 0;; ++i) {
          v1::JobSpec spec;
          spec.set_name("bench");
          spec.set_command("/bin/true");
          spec.mutable_resources()->set_cpus(1);
          const absl::Time start = clock->Now();
          if (start >= end) return;
          absl::StatusOr<v1::Job> job =
              (*scheduler)->SubmitJob(std::move(spec), absl::StrCat("bench/", t, "/", i));
          const absl::Time answered = clock->Now();
          if (!job.ok()) {
            ++failures[t];
            continue;
          }
          if (answered <= end) {
            latencies_ms[t].push_back(absl::ToDoubleMilliseconds(answered - start));
          }
        }
      });
    }
    const GroupCommitWriter::Stats before = (*scheduler)->StoreWriterStats();
    end = clock->Now() + duration;
    go.Notify();
    for (std::thread& thread : threads) thread.join();
    const GroupCommitWriter::Stats after = (*scheduler)->StoreWriterStats();

    std::vector<double> all;
    int64_t failed = 0;
    for (int t = 0; t < submitters; ++t) {
      all.insert(all.end(), latencies_ms[t].begin(), latencies_ms[t].end());
      failed += failures[t];
    }
    if (failed > 0) {
      return absl::InternalError(absl::StrCat(failed, " submissions failed"));
    }
    result.jobs_per_s = static_cast<double>(all.size()) / absl::ToDoubleSeconds(duration);
    result.p50_ms = Percentile(all, 0.50);
    result.p99_ms = Percentile(all, 0.99);
    const int64_t commits = after.commits - before.commits;
    result.jobs_per_commit =
        commits > 0 ? static_cast<double>(after.committed_mutations - before.committed_mutations) /
                          static_cast<double>(commits)
                    : 0;
  }
  std::error_code ignored;
  std::filesystem::remove_all(*dir, ignored);
  return result;
}

int Main(const Flags& flags) {
  std::vector<int> counts;
  for (absl::string_view part : absl::StrSplit(flags.submitters, ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n <= 0) {
      std::cerr << "submission_bench: --submitters: not a positive number: " << part << "\n";
      return 2;
    }
    counts.push_back(n);
  }
  // The per-job INFO lines (job-N Submitted) would dominate the output.
  SetMinLogLevel(LogLevel::kWarning);
  const absl::Duration duration = absl::Seconds(flags.duration_s);
  std::cout << absl::StrFormat(
      "durable submissions on LocalStore (%s), %.1f s per run, median of %d repetitions, "
      "%d hardware threads\n\n",
      "fdatasync per commit", flags.duration_s, flags.repetitions,
      static_cast<int>(std::thread::hardware_concurrency()));
  std::cout << "| submitters | mode | jobs/s | p50 ms | p99 ms | jobs per fdatasync |\n"
               "| --- | --- | --- | --- | --- | --- |\n";
  bool all_met = true;
  std::vector<std::string> verdicts;
  for (int n : counts) {
    std::vector<RunResult> group, per_job;
    for (int rep = 0; rep < flags.repetitions; ++rep) {
      // Alternating order, so that a drift of the machine hits both alike.
      for (Mode mode : rep % 2 == 0 ? std::vector<Mode>{Mode::kGroupCommit, Mode::kPerJob}
                                     : std::vector<Mode>{Mode::kPerJob, Mode::kGroupCommit}) {
        absl::StatusOr<RunResult> result = Run(mode, n, duration);
        if (!result.ok()) {
          std::cerr << "submission_bench: " << ModeName(mode) << ", " << n
                    << " submitters: " << result.status() << "\n";
          return 2;
        }
        (mode == Mode::kGroupCommit ? group : per_job).push_back(*result);
      }
    }
    auto median = [](const std::vector<RunResult>& runs, double RunResult::*field) {
      std::vector<double> values;
      for (const RunResult& run : runs) values.push_back(run.*field);
      return Median(values);
    };
    struct Row {
      Mode mode;
      double jobs_per_s, p50_ms, p99_ms, jobs_per_commit;
    };
    const Row rows[] = {
        {Mode::kGroupCommit, median(group, &RunResult::jobs_per_s),
         median(group, &RunResult::p50_ms), median(group, &RunResult::p99_ms),
         median(group, &RunResult::jobs_per_commit)},
        {Mode::kPerJob, median(per_job, &RunResult::jobs_per_s),
         median(per_job, &RunResult::p50_ms), median(per_job, &RunResult::p99_ms),
         median(per_job, &RunResult::jobs_per_commit)},
    };
    for (const Row& row : rows) {
      std::cout << absl::StrFormat("| %d | %s | %.0f | %.2f | %.2f | %.1f |\n", n,
                                   ModeName(row.mode), row.jobs_per_s, row.p50_ms, row.p99_ms,
                                   row.jobs_per_commit);
    }
    std::cout << absl::StrFormat("| %d | ratio | %.1fx | %.2fx | %.2fx | |\n", n,
                                 rows[0].jobs_per_s / std::max(rows[1].jobs_per_s, 1e-9),
                                 rows[0].p50_ms / std::max(rows[1].p50_ms, 1e-9),
                                 rows[0].p99_ms / std::max(rows[1].p99_ms, 1e-9));
    const bool rate_met = rows[0].jobs_per_s >= flags.target_jobs_per_s;
    const bool p99_met = rows[0].p99_ms <= flags.target_p99_ms;
    all_met = all_met && rate_met && p99_met;
    verdicts.push_back(absl::StrFormat(
        "%d submitters, group commit: %.0f jobs/s (target >= %.0f): %s; p99 %.2f ms "
        "(target <= %.0f ms): %s",
        n, rows[0].jobs_per_s, flags.target_jobs_per_s, rate_met ? "PASS" : "FAIL",
        rows[0].p99_ms, flags.target_p99_ms, p99_met ? "PASS" : "FAIL"));
  }
  std::cout << "\n";
  for (const std::string& verdict : verdicts) std::cout << verdict << "\n";
  return all_met ? 0 : 1;
}

}  // namespace
}  // namespace joule

int main(int argc, char** argv) {
  joule::Flags flags;
  CLI::App app{"submission_bench: durable SubmitJob throughput, group commit vs fsync per job"};
  app.add_option("--submitters", flags.submitters,
                 "Comma-separated numbers of concurrent submitting threads")
      ->capture_default_str();
  app.add_option("--duration-s", flags.duration_s, "Seconds per run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--repetitions", flags.repetitions, "Runs per mode and submitter count")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--target-jobs-per-s", flags.target_jobs_per_s,
                 "Target: group commit jobs/s, at least")
      ->capture_default_str();
  app.add_option("--target-p99-ms", flags.target_p99_ms,
                 "Target: group commit p99 SubmitJob latency, ms, at most")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return joule::Main(flags);
}
