// batch_infer: a batch-inference job that follows Joule's task contract.
//
// A fixed-weights 32-64-32-10 MLP (weights from --seed) classifies each owned
// shard's inputs, generated deterministically from (seed, shard), in batches
// of JOULE_BATCH_SIZE. Per shard it prints the class histogram and a checksum
// of the outputs, so a shard can be checked to give the same answer on any
// replica, at any batch size, in any run. Shards handed over through the
// hints file are picked up until none remain. See examples/README.md.
//
// Exit codes: 0 done or stopped by the stop=1 hint, 2 bad flags or
// environment, 143 after SIGTERM (the current step is finished first).

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/mlp.h"
#include "examples/synthetic_data.h"
#include "examples/task_contract.h"

namespace joule::examples {
namespace {

constexpr absl::Duration kProgressInterval = absl::Milliseconds(200);
// How often to look at the hints file while idling for more shards.
constexpr absl::Duration kIdlePollInterval = absl::Milliseconds(20);

struct InferConfig {
  int batch_size = 64;  // Used when JOULE_BATCH_SIZE is missing.
  int shards = 4;       // Shard count when JOULE_SHARD_COUNT is missing.
  int samples_per_shard = 512;
  int64_t seed = 1;
  std::string output;
  double sim_step_ms = 0.0;
  int idle_wait_ms = 0;
};

// FNV-1a over the bytes of each value; simple, specified, and enough to tell
// one shard's outputs from another's.
class Fnv1a64 {
 public:
  void Add(int32_t value) {
    for (int i = 0; i < 4; ++i) {
      hash_ ^= static_cast<uint8_t>(static_cast<uint32_t>(value) >> (8 * i));
      hash_ *= 0x100000001b3ULL;
    }
  }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ULL;
};

// The shard being classified and what has been seen of it so far.
struct ShardState {
  int shard = -1;
  Dataset data;
  int position = 0;
  std::vector<int> histogram;
  Fnv1a64 checksum;
};

// Owns the model and the live settings for one run.
// Single-threaded: driven from main().
class Inferencer {
 public:
  Inferencer(const InferConfig& config, TaskSettings settings,
             ProgressReporter reporter, HintsReader hints, std::FILE* output)
      : config_(config),
        settings_(std::move(settings)),
        reporter_(std::move(reporter)),
        hints_(std::move(hints)),
        output_(output),
        mixture_(static_cast<uint64_t>(config.seed)),
        model_(static_cast<uint64_t>(config.seed)) {}

  int Run();
  // The p95 of the last 20 full steps at the current batch size.
  void RecordLatency(int batch, double latency_ms);
  int latency_batch_ = 0;
  std::vector<double> latencies_;

 private:
  void RefreshHints(ShardWorklist* work);
  void StartShard(int shard);
  // Classifies one batch of the current shard; finishes the shard when it
  // was the last batch.
  void Step(ShardWorklist* work);
  void FinishShard();

  const InferConfig config_;
  TaskSettings settings_;
  ProgressReporter reporter_;
  HintsReader hints_;
  std::FILE* output_;  // Not owned; may be null.
  ClusterMixture mixture_;
  Mlp model_;

  ShardState state_;
  std::vector<float> logits_;
  int64_t samples_ = 0;
  int64_t steps_ = 0;
  int shards_done_ = 0;
};

void Inferencer::RefreshHints(ShardWorklist* work) {
  if (!hints_.Poll()) return;
  settings_.Apply(hints_.current());
  work->SetOwned(settings_.shards());
}

void Inferencer::StartShard(int shard) {
  state_.shard = shard;
  state_.data = mixture_.Shard(shard, config_.samples_per_shard);
  state_.position = 0;
  state_.histogram.assign(Mlp::kClasses, 0);
  state_.checksum = Fnv1a64();
}

void Inferencer::Step(ShardWorklist* work) {
  const MonotonicTime start = MonotonicNow();
  const int n =
      std::min(settings_.batch_size(), state_.data.size() - state_.position);
  model_.Forward(state_.data.row(state_.position), n, &logits_);
  for (int i = 0; i < n; ++i) {
    const float* z = logits_.data() + static_cast<size_t>(i) * Mlp::kClasses;
    const int predicted = ArgMax(z, Mlp::kClasses);
    ++state_.histogram[predicted];
    // Hash the prediction and the logits rounded to 1e-3, in sample order:
    // the checksum then covers the numbers, not just the argmax, and does not
    // depend on how samples were grouped into batches.
    state_.checksum.Add(predicted);
    for (int c = 0; c < Mlp::kClasses; ++c) {
      state_.checksum.Add(static_cast<int32_t>(std::lround(z[c] * 1000.0f)));
    }
  }

  absl::SleepFor(EmulatedStepSleep(config_.sim_step_ms, n,
                                   settings_.device_speed(),
                                   absl::FromChrono(MonotonicNow() - start)));
  RecordLatency(n, absl::ToDoubleMilliseconds(absl::FromChrono(MonotonicNow() - start)));
  state_.position += n;
  samples_ += n;
  ++steps_;
  if (state_.position >= state_.data.size()) {
    work->FinishCurrent();
    FinishShard();
  }
  reporter_.MaybeProgress(samples_, steps_, MonotonicNow());
}

void Inferencer::RecordLatency(int batch, double latency_ms) {
  // Full batches only: a shard's last, smaller batch would look fast.
  if (batch != settings_.batch_size()) return;
  if (batch != latency_batch_) {
    latency_batch_ = batch;
    latencies_.clear();
  }
  latencies_.push_back(latency_ms);
  if (latencies_.size() > 20) latencies_.erase(latencies_.begin());
  std::vector<double> sorted = latencies_;
  std::sort(sorted.begin(), sorted.end());
  reporter_.SetLatency(batch, sorted[(sorted.size() * 95 + 99) / 100 - 1]);
}

void Inferencer::FinishShard() {
  const std::string line = absl::StrFormat(
      "shard %d: %d samples, class histogram [%s], checksum %016x",
      state_.shard, state_.data.size(), absl::StrJoin(state_.histogram, ","),
      state_.checksum.value());
  std::printf("%s\n", line.c_str());
  if (output_ != nullptr) {
    std::fprintf(output_, "%s\n", line.c_str());
    std::fflush(output_);
  }
  reporter_.ShardDone(state_.shard);
  ++shards_done_;
  state_.shard = -1;
}

int Inferencer::Run() {
  ShardWorklist work(settings_.shards());
  reporter_.SetTotal(static_cast<int64_t>(settings_.shards().size()) *
                     config_.samples_per_shard);
  bool stopped = false;
  // When the worklist ran dry; only meaningful while `idle` is true.
  bool idle = false;
  MonotonicTime idle_since{};
  while (true) {
    // Hints and signals are looked at between steps only, so a batch is
    // never cut in half.
    RefreshHints(&work);
    if (settings_.stop()) {
      stopped = true;
      break;
    }
    if (TerminationRequested()) {
      reporter_.Progress(samples_, steps_, std::nullopt, MonotonicNow());
      std::printf("terminated\n");
      std::fflush(stdout);
      return kExitTerminated;
    }
    const std::optional<int> shard = work.Next();
    if (!shard.has_value()) {
      // Out of work. The sharder may be about to hand over more, so wait up
      // to --idle-wait-ms for a hints update before leaving.
      const MonotonicTime now = MonotonicNow();
      if (!idle) {
        idle = true;
        idle_since = now;
        // Tell the scheduler this replica can take more shards.
        if (config_.idle_wait_ms > 0) reporter_.Waiting();
      }
      if (absl::FromChrono(now - idle_since) >=
          absl::Milliseconds(config_.idle_wait_ms)) {
        break;
      }
      absl::SleepFor(kIdlePollInterval);
      continue;
    }
    idle = false;
    if (*shard != state_.shard) StartShard(*shard);
    Step(&work);
  }

  reporter_.Progress(samples_, steps_, std::nullopt, MonotonicNow());
  std::printf("done shards=%d samples=%lld steps=%lld stopped=%d\n",
              shards_done_, static_cast<long long>(samples_),
              static_cast<long long>(steps_), stopped ? 1 : 0);
  std::fflush(stdout);
  return kExitOk;
}

absl::Status ValidateConfig(const InferConfig& c) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(what);
  };
  if (absl::Status common = ValidateWorkloadFlags(c.batch_size, c.shards,
                                                  c.samples_per_shard, c.sim_step_ms);
      !common.ok()) {
    return common;
  }
  if (c.idle_wait_ms < 0) return bad("flag --idle-wait-ms must not be negative");
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  // Line-buffered stdout: the agent captures it into the job's log.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  InstallTerminationHandler();

  InferConfig config;
  FlagSet flags("batch_infer");
  flags.AddInt("batch-size", &config.batch_size,
               "inference batch size when JOULE_BATCH_SIZE is not set");
  flags.AddInt("shards", &config.shards,
               "shard count when JOULE_SHARD_COUNT is not set");
  flags.AddInt("samples-per-shard", &config.samples_per_shard,
               "inputs generated per shard");
  flags.AddInt64("seed", &config.seed, "seed for the weights and the inputs");
  flags.AddString("output", &config.output,
                  "also write the per-shard lines to this file (truncated)");
  flags.AddDouble("sim-step-ms", &config.sim_step_ms,
                  "simulated accelerator ms per step at batch 64 and full "
                  "speed (0: no emulation)");
  flags.AddInt("idle-wait-ms", &config.idle_wait_ms,
               "when out of shards, wait this long for the hints file to "
               "hand over more before exiting");

  WorkloadStart start = StartWorkload("batch_infer", flags, argc, argv,
                                      [&config] { return ValidateConfig(config); });
  if (start.exit_code) return *start.exit_code;
  const TaskEnv* env = &start.env;
  std::FILE* output = nullptr;
  if (!config.output.empty()) {
    output = std::fopen(config.output.c_str(), "w");
    if (output == nullptr) {
      std::fprintf(stderr, "batch_infer: flag --output: cannot open %s: %s\n",
                   config.output.c_str(), std::strerror(errno));
      return kExitUsage;
    }
  }

  Inferencer inferencer(
      config, TaskSettings::FromEnv(*env, config.batch_size, config.shards),
      ProgressReporter(std::move(start.writer), kProgressInterval),
      HintsReader(env->hints_file), output);
  const int code = inferencer.Run();
  if (output != nullptr) std::fclose(output);
  return code;
}

}  // namespace
}  // namespace joule::examples

int main(int argc, char** argv) { return joule::examples::Main(argc, argv); }
