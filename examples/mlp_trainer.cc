// mlp_trainer: a real (small) training job that follows Joule's task contract.
//
// It trains a 32-64-32-10 MLP with SGD + momentum on a deterministic mixture
// of Gaussian clusters, one data set per shard, and reports what the
// scheduler needs to learn samples-per-joule and epochs-to-target: cumulative
// samples and steps, validation loss as the quality metric, finished shards,
// and when a target loss is reached. See examples/README.md for the contract.
//
// Exit codes: 0 done or stopped by the stop=1 hint, 2 bad flags or
// environment, 143 after SIGTERM (the current step is finished first).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/mlp.h"
#include "examples/synthetic_data.h"
#include "examples/task_contract.h"

namespace joule::examples {
namespace {

constexpr absl::Duration kProgressInterval = absl::Milliseconds(200);

struct TrainerConfig {
  int batch_size = 32;  // Used when JOULE_BATCH_SIZE is missing.
  int shards = 4;       // Shard count when JOULE_SHARD_COUNT is missing.
  int samples_per_shard = 256;
  int epochs = 3;
  double lr = 0.02;
  double momentum = 0.9;
  std::optional<double> target_loss;
  bool stop_at_target = false;
  double sim_step_ms = 0.0;
  int64_t seed = 1;
  int val_samples = 512;
};

// How a run ended, which decides the exit code and the last stdout line.
enum class Outcome { kCompleted, kStoppedByHint, kTerminated, kReachedTarget };

// Owns the model, the data and the live settings for one run.
// Single-threaded: driven from main().
class Trainer {
 public:
  Trainer(const TrainerConfig& config, TaskSettings settings,
          ProgressReporter reporter, HintsReader hints)
      : config_(config),
        settings_(std::move(settings)),
        reporter_(std::move(reporter)),
        hints_(std::move(hints)),
        mixture_(static_cast<uint64_t>(config.seed)),
        model_(static_cast<uint64_t>(config.seed)) {}

  int Run();

 private:
  // Polls the hints file and pushes a changed shard set into `work`.
  void RefreshHints(ShardWorklist* work);
  const Dataset& ShardData(int shard);
  // Trains one mini-batch of the current shard, then sleeps out the
  // simulated accelerator time and reports progress if due.
  void Step(ShardWorklist* work, double* loss_sum, int64_t* epoch_samples);
  void StartShard(int shard, int epoch);

  const TrainerConfig config_;
  TaskSettings settings_;
  ProgressReporter reporter_;
  HintsReader hints_;
  ClusterMixture mixture_;
  Mlp model_;
  std::map<int, Dataset> shard_data_;

  // Position inside the shard being trained on.
  int epoch_ = 0;
  int shard_ = -1;
  std::vector<int> order_;
  int position_ = 0;

  int64_t samples_ = 0;
  int64_t steps_ = 0;
  Outcome outcome_ = Outcome::kCompleted;

  std::vector<float> batch_inputs_;
  std::vector<int> batch_labels_;
};

void Trainer::RefreshHints(ShardWorklist* work) {
  if (!hints_.Poll()) return;
  settings_.Apply(hints_.current());
  if (work != nullptr) work->SetOwned(settings_.shards());
}

const Dataset& Trainer::ShardData(int shard) {
  auto it = shard_data_.find(shard);
  if (it == shard_data_.end()) {
    it = shard_data_
             .emplace(shard, mixture_.Shard(shard, config_.samples_per_shard))
             .first;
  }
  return it->second;
}

void Trainer::StartShard(int shard, int epoch) {
  shard_ = shard;
  position_ = 0;
  const int n = ShardData(shard).size();
  order_.resize(n);
  for (int i = 0; i < n; ++i) order_[i] = i;
  // A fresh, reproducible shuffle per (epoch, shard): SGD needs the order to
  // change between epochs, the tests need runs to be repeatable.
  SplitMix64 rng(MixSeed(MixSeed(static_cast<uint64_t>(config_.seed), epoch),
                         static_cast<uint64_t>(shard)));
  for (int i = n - 1; i > 0; --i) std::swap(order_[i], order_[rng.Below(i + 1)]);
}

void Trainer::Step(ShardWorklist* work, double* loss_sum,
                   int64_t* epoch_samples) {
  const int shard = *work->current();
  const Dataset& data = ShardData(shard);
  const MonotonicTime start = MonotonicNow();

  const int n = std::min(settings_.batch_size(), data.size() - position_);
  batch_inputs_.resize(static_cast<size_t>(n) * Mlp::kInputs);
  batch_labels_.resize(n);
  for (int i = 0; i < n; ++i) {
    const int row = order_[position_ + i];
    std::copy(data.row(row), data.row(row) + Mlp::kInputs,
              batch_inputs_.begin() + static_cast<size_t>(i) * Mlp::kInputs);
    batch_labels_[i] = data.labels[row];
  }
  const double loss =
      model_.TrainStep(batch_inputs_.data(), batch_labels_.data(), n,
                       static_cast<float>(config_.lr),
                       static_cast<float>(config_.momentum));

  // Stretch the step to the simulated accelerator's time for this batch.
  absl::SleepFor(EmulatedStepSleep(config_.sim_step_ms, n,
                                   settings_.device_speed(),
                                   absl::FromChrono(MonotonicNow() - start)));

  position_ += n;
  samples_ += n;
  ++steps_;
  *loss_sum += loss * n;
  *epoch_samples += n;
  if (position_ >= data.size()) {
    work->FinishCurrent();
    shard_ = -1;
  }
  reporter_.MaybeProgress(samples_, steps_, MonotonicNow());
}

int Trainer::Run() {
  const Dataset validation = mixture_.Validation(config_.val_samples);
  RefreshHints(nullptr);
  // The work planned at the start (shards handed over later are extra).
  reporter_.SetTotal(static_cast<int64_t>(config_.epochs) *
                     static_cast<int64_t>(settings_.shards().size()) *
                     config_.samples_per_shard);
  bool target_reported = false;
  int completed_epochs = 0;
  Evaluation eval = model_.Evaluate(validation);

  for (epoch_ = 1; epoch_ <= config_.epochs; ++epoch_) {
    ShardWorklist work(settings_.shards());
    double loss_sum = 0.0;
    int64_t epoch_samples = 0;
    while (true) {
      // Hints and signals are looked at between steps only, so a step is
      // never cut in half.
      RefreshHints(&work);
      if (settings_.stop()) {
        outcome_ = Outcome::kStoppedByHint;
        break;
      }
      if (TerminationRequested()) {
        outcome_ = Outcome::kTerminated;
        break;
      }
      const std::optional<int> shard = work.Next();
      if (!shard.has_value()) break;
      if (*shard != shard_) StartShard(*shard, epoch_);
      Step(&work, &loss_sum, &epoch_samples);
    }
    if (outcome_ != Outcome::kCompleted) break;

    eval = model_.Evaluate(validation);
    ++completed_epochs;
    const double train_loss =
        epoch_samples > 0 ? loss_sum / epoch_samples : std::nan("");
    std::printf("epoch %d/%d loss=%.4f val_loss=%.4f acc=%.2f samples=%lld\n",
                epoch_, config_.epochs, train_loss, eval.loss, eval.accuracy,
                static_cast<long long>(epoch_samples));
    reporter_.Progress(samples_, steps_, eval.loss, MonotonicNow());

    if (config_.target_loss.has_value() && !target_reported &&
        eval.loss < *config_.target_loss) {
      target_reported = true;
      reporter_.TargetReached(eval.loss);
      if (config_.stop_at_target) outcome_ = Outcome::kReachedTarget;
    }
    // A shard is done once the last pass over it has finished; earlier
    // epochs only touched it.
    if (epoch_ == config_.epochs || outcome_ == Outcome::kReachedTarget) {
      for (int done : work.done()) reporter_.ShardDone(done);
    }
    if (outcome_ == Outcome::kReachedTarget) break;
  }

  if (outcome_ == Outcome::kTerminated) {
    reporter_.Progress(samples_, steps_, std::nullopt, MonotonicNow());
    std::printf("terminated\n");
    std::fflush(stdout);
    return kExitTerminated;
  }
  if (outcome_ == Outcome::kStoppedByHint) {
    // The quality at the stop is still worth reporting: the agent may stop a
    // job because its target was reached elsewhere and wants the final loss.
    eval = model_.Evaluate(validation);
    reporter_.Progress(samples_, steps_, eval.loss, MonotonicNow());
  }
  std::printf(
      "done epochs=%d samples=%lld steps=%lld val_loss=%.4f acc=%.2f "
      "stopped=%d target_reached=%d\n",
      completed_epochs, static_cast<long long>(samples_),
      static_cast<long long>(steps_), eval.loss, eval.accuracy,
      outcome_ == Outcome::kStoppedByHint ? 1 : 0, target_reported ? 1 : 0);
  std::fflush(stdout);
  return kExitOk;
}

// Checks flag values that the parser cannot (ranges); the message names the flag.
absl::Status ValidateConfig(const TrainerConfig& c) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(what);
  };
  if (absl::Status common = ValidateWorkloadFlags(c.batch_size, c.shards,
                                                  c.samples_per_shard, c.sim_step_ms);
      !common.ok()) {
    return common;
  }
  if (c.epochs < 1) return bad("flag --epochs must be at least 1");
  if (!(c.lr > 0.0)) return bad("flag --lr must be positive");
  if (c.momentum < 0.0 || c.momentum >= 1.0) {
    return bad("flag --momentum must be in [0, 1)");
  }
  if (c.val_samples < 1 || c.val_samples > 10'000'000) {
    return bad("flag --val-samples must be in 1..10000000");
  }
  if (c.stop_at_target && !c.target_loss.has_value()) {
    return bad("flag --stop-at-target needs --target-loss");
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  // Line-buffered stdout: the agent captures it into the job's log, and
  // `joulectl logs` should show each epoch as it ends.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  InstallTerminationHandler();

  TrainerConfig config;
  FlagSet flags("mlp_trainer");
  flags.AddInt("batch-size", &config.batch_size,
               "mini-batch size when JOULE_BATCH_SIZE is not set");
  flags.AddInt("shards", &config.shards,
               "shard count when JOULE_SHARD_COUNT is not set");
  flags.AddInt("samples-per-shard", &config.samples_per_shard,
               "training samples generated per shard");
  flags.AddInt("epochs", &config.epochs, "passes over the owned shards");
  flags.AddDouble("lr", &config.lr, "SGD learning rate");
  flags.AddDouble("momentum", &config.momentum, "SGD momentum (0 = plain SGD)");
  flags.AddOptionalDouble("target-loss", &config.target_loss,
                          "emit target_reached once val_loss falls below this");
  flags.AddBool("stop-at-target", &config.stop_at_target,
                "end training (exit 0) once the target loss is reached");
  flags.AddDouble("sim-step-ms", &config.sim_step_ms,
                  "simulated accelerator ms per step at batch 64 and full "
                  "speed (0: no emulation)");
  flags.AddInt64("seed", &config.seed, "seed for data, weights and shuffles");
  flags.AddInt("val-samples", &config.val_samples,
               "held-out validation samples");

  WorkloadStart start = StartWorkload("mlp_trainer", flags, argc, argv,
                                      [&config] { return ValidateConfig(config); });
  if (start.exit_code) return *start.exit_code;
  const TaskEnv* env = &start.env;

  Trainer trainer(config,
                  TaskSettings::FromEnv(*env, config.batch_size, config.shards),
                  ProgressReporter(std::move(start.writer), kProgressInterval),
                  HintsReader(env->hints_file));
  return trainer.Run();
}

}  // namespace
}  // namespace joule::examples

int main(int argc, char** argv) { return joule::examples::Main(argc, argv); }
