// The energy brain's part of the scheduler core: power caps (just-in-time
// profiling, the objective's choice through the EnergyModel, savings),
// energy routing for placement, batch sizes (the BatchSizer for training,
// with mid-run correction; inference under a latency SLO), shards, thermal
// back-off, energy budgets and early stop. The decisions live in parts with
// their own headers (energy_model.h, run_costs.h, bandit/, profiling/,
// sharding/, brain/, power/); these members wire them to jobs, tasks and
// agents. Members of Scheduler; see
// scheduler.h for the threading (all under mu_).

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/range_list.h"
#include "scheduler/scheduler.h"
#include "scheduler/scheduler_internal.h"

namespace joule {

using internal::CapObjective;
using internal::IsActive;
using internal::kBanditKeyPrefix;
using internal::kProfileKeyPrefix;
using internal::ProfileClass;
using internal::ProfileKey;

const v1::Device* Scheduler::TaskGpu(const v1::Task& task) const {
  return task.gpu_indices().empty() ? nullptr : nodes_.GpuAt(task.node(), task.gpu_indices(0));
}

std::string Scheduler::GpuModelOf(const ReplicaPlacement& placement) const {
  const v1::Device* gpu =
      placement.gpu_indices.empty() ? nullptr : nodes_.GpuAt(placement.node, placement.gpu_indices[0]);
  return gpu == nullptr ? std::string() : gpu->model();
}

SampleCosts Scheduler::RunSampleCosts(const std::string& job_class,
                                      const std::string& gpu_model) const {
  // Runs without GPUs are measured under one name of their own.
  const std::string model = gpu_model.empty() ? internal::kNoGpuModel : gpu_model;
  return [this, job_class, model](const std::vector<int32_t>& batch_sizes) {
    std::vector<double> costs;
    for (const RunCostEstimate& estimate :
         energy_model_.runs().Predict(job_class, model, batch_sizes)) {
      costs.push_back(estimate.joules_per_sample);
    }
    return costs;
  };
}

double Scheduler::InitialCap(v1::Job& job, v1::Task& task, const v1::Device& gpu) {
  const v1::JobSpec& spec = job.spec();
  const double max_w = gpu.power_limit_max_w();
  if (spec.pin_max_cap()) {
    job.set_cap_decision(absl::StrFormat(
        "%.0f W: pinned to the maximum power limit (pin_max_cap)", max_w));
    return max_w;
  }
  if (!options_.profile_caps || max_w <= 0 || gpu.power_limit_min_w() >= max_w) {
    job.set_cap_decision(absl::StrFormat("%.0f W: the GPUs' default power limit",
                                         gpu.power_limit_default_w()));
    return gpu.power_limit_default_w();
  }
  const int gpus = task.gpu_indices_size();
  const std::string key = ProfileKey(ProfileClass(spec), gpu.model(), gpus);
  std::string note;
  absl::StatusOr<EnergyPrediction> predicted = energy_model_.Predict(
      ProfileClass(spec), gpu.model(), gpus, CapObjective(spec, &note),
      nodes_.StaticShareW(task.node(), gpus), options_.caps_count_static_power, clock_->Now(),
      spec.job_class(), task.batch_size());
  if (predicted.ok()) {
    std::string runs;
    if (predicted->at_batch) {
      runs = absl::StrFormat(
          "; whole runs at batch %d: %.4g J per sample (+-%.0f%%, %s)", task.batch_size(),
          predicted->at_batch->joules_per_sample, 100 * predicted->at_batch->relative_error,
          predicted->at_batch->measured
              ? absl::StrCat(predicted->at_batch->observations, " measured")
              : std::string("modelled from other batch sizes and GPU models"));
    }
    job.set_cap_decision(absl::StrCat(
        predicted->decision.reason, " (stored profile of class ", ProfileClass(spec), " on ",
        gpus, "x", gpu.model(),
        predicted->measured_gpus == gpus
            ? std::string()
            : absl::StrCat(", measured with ", predicted->measured_gpus, " GPUs and scaled"),
        note, runs, ")"));
    return predicted->decision.cap_w;
  }
  if (!absl::IsNotFound(predicted.status())) {
    JLOG(WARNING) << "stored profile " << key << " unusable: " << predicted.status();
  }
  // Profile on the first replica; the others run at the maximum until the
  // profile chooses a cap for all of them.
  for (const auto& [task_id, running] : profiling_) {
    if (running.profile_key == key) return max_w;
  }
  if (task.replica_index() != 0) return max_w;
  ProfilerOptions options = options_.profiler;
  options.min_cap_w = gpu.power_limit_min_w();
  options.max_cap_w = max_w;
  absl::StatusOr<CapProfiler> profiler = CapProfiler::Create(options);
  if (!profiler.ok()) {
    job.set_cap_decision(absl::StrCat("default power limit: cannot profile: ",
                                      profiler.status().message()));
    return gpu.power_limit_default_w();
  }
  Profiling& profiling = profiling_[task.task_id()];
  profiling.profiler = std::make_unique<CapProfiler>(*std::move(profiler));
  profiling.profile_key = key;
  profiling.applied_cap_w = max_w;
  job.set_cap_decision(absl::StrFormat(
      "profiling class %s on %dx%s: stepping the cap from %.0f W down in %.0f W steps",
      spec.job_class(), gpus, gpu.model(), max_w, options.step_w));
  AddEvent(job, "ProfilingStarted", job.cap_decision());
  return max_w;
}

void Scheduler::ApplyCap(v1::Job& job, v1::Task& task, double cap_w,
                         const std::string& reason) {
  if (task.power_cap_w() == cap_w) return;
  if (!nodes_.Reachable(task.node())) return;
  for (int32_t gpu : task.gpu_indices()) {
    v1::SchedulerCommand command;
    v1::SetCap* cap = command.mutable_set_cap();
    cap->set_kind(v1::DEVICE_KIND_GPU);
    cap->set_index(gpu);
    cap->set_power_cap_w(cap_w);
    cap->set_reason(reason);
    nodes_.Send(task.node(), command);
    CountCap(reason);
  }
  task.set_power_cap_w(cap_w);
}

void Scheduler::CountCap(const std::string& reason) const {
  if (options_.observer == nullptr) return;
  // Restoring the default after a failed profiling run ends the profiling.
  options_.observer->OnCapSent(absl::StartsWith(reason, "profiling") ? "profiling" : reason);
}

void Scheduler::FeedProfiler(v1::Job& job, v1::Task& task) {
  auto it = profiling_.find(task.task_id());
  if (it == profiling_.end()) return;
  Profiling& profiling = it->second;
  CapProfiler& profiler = *profiling.profiler;
  profiler.Observe(clock_->Now(), task.samples_done(), task.energy().gpu_j());
  if (!profiler.done()) {
    if (profiler.cap_w() != profiling.applied_cap_w) {
      ApplyCap(job, task, profiler.cap_w(), "profiling");
      profiling.applied_cap_w = profiler.cap_w();
      AddEvent(job, "Profiling",
               absl::StrFormat("measuring task %s at %.0f W", task.task_id(),
                               profiler.cap_w()));
    }
    return;
  }
  const std::string key = profiling.profile_key;
  const std::vector<CapPoint> profile = profiler.profile();
  const std::string end_reason = profiler.end_reason();
  const absl::Status status = profiler.status();
  profiling_.erase(it);
  const v1::Device* gpu = TaskGpu(task);
  if (!status.ok() || profile.empty() || gpu == nullptr) {
    const double default_w = gpu == nullptr ? task.power_cap_w() : gpu->power_limit_default_w();
    job.set_cap_decision(absl::StrFormat("%.0f W: the default; profiling failed: %s",
                                         default_w, status.message()));
    ApplyCap(job, task, default_w, "profiling failed");
    AddEvent(job, "ProfilingFailed", job.cap_decision());
    Changed(job);
    return;
  }
  energy_model_.Put(key, profile);
  store_->PutState(StoreMutation{StoreMutation::Op::kPut, absl::StrCat(kProfileKeyPrefix, key),
                           SerializeProfile(profile)},
             absl::StrCat("storing profile ", key));
  std::string note;
  absl::StatusOr<CapDecision> decision =
      ChooseCap(profile, CapObjective(job.spec(), &note),
                gpu->power_limit_max_w() * task.gpu_indices_size(), 0, clock_->Now(),
                options_.caps_count_static_power
                    ? nodes_.StaticShareW(task.node(), task.gpu_indices_size())
                    : 0);
  if (!decision.ok()) {
    JLOG(ERROR) << "choosing a cap for " << job.id() << ": " << decision.status();
    return;
  }
  for (v1::Task& sibling : *job.mutable_tasks()) {
    if (sibling.attempt() == job.attempts() && IsActive(sibling.state()) &&
        !sibling.gpu_indices().empty()) {
      ApplyCap(job, sibling, decision->cap_w, "objective");
    }
  }
  job.set_cap_decision(absl::StrCat(decision->reason, " (", end_reason, note, ")"));
  AddEvent(job, "CapChosen", job.cap_decision());
  Changed(job);
}

void Scheduler::SizeInferenceBatch(v1::Job& job, v1::Task& task) {
  const v1::JobSpec& spec = job.spec();
  const v1::BatchSizeRange& range = spec.batch_size();
  if (spec.type() != v1::JOB_TYPE_INFERENCE || spec.latency_slo_ms() <= 0 ||
      range.min() >= range.max() || !IsActive(task.state())) {
    return;
  }
  const absl::Time now = clock_->Now();
  auto last = last_resize_.find(task.task_id());
  // Let a new batch size show in the measurements before moving again.
  if (last != last_resize_.end() && now - last->second < absl::Seconds(3)) return;
  std::vector<BatchLatencyPoint> points;
  for (const auto& [batch, latency] : latencies_[task.task_id()]) {
    points.push_back({batch, latency});
  }
  const std::vector<int32_t> candidates =
      CandidateBatchSizes(range.min(), range.default_size(), range.max());
  const int32_t chosen = LargestBatchWithinSlo(points, candidates, spec.latency_slo_ms());
  if (chosen <= 0 || chosen == task.batch_size()) return;
  if (!nodes_.Reachable(task.node())) return;
  v1::SchedulerCommand command;
  v1::UpdateHints* hints = command.mutable_update_hints();
  hints->set_task_id(task.task_id());
  hints->set_batch_size(chosen);
  hints->set_shards(task.shards());
  nodes_.Send(task.node(), command);
  last_resize_[task.task_id()] = now;
  const double seen = latencies_[task.task_id()][task.batch_size()];
  AddEvent(job, "BatchResized",
           absl::StrFormat("task %s: batch %d -> %d (p95 %.1f ms at %d; SLO %.1f ms)",
                           task.task_id(), task.batch_size(), chosen, seen,
                           task.batch_size(), spec.latency_slo_ms()));
  job.set_batch_decision(absl::StrFormat(
      "%d: the largest batch whose p95 latency stays within %.1f ms (measured and "
      "extrapolated)",
      chosen, spec.latency_slo_ms()));
  task.set_batch_size(chosen);
  Changed(job);
}

void Scheduler::WatchQuality(v1::Job& job, v1::Task& task,
                             absl::optional<double> previous) {
  if (!task.has_quality() || task.stopped_early()) return;
  // A new report is a new value; telemetry repeats the last one.
  if (previous.has_value() && *previous == task.quality()) return;
  std::optional<EarlyStopVerdict> verdict =
      early_stop_.Report(task.task_id(), job.spec().early_stop(), task.quality());
  if (!verdict) return;
  if (!nodes_.Reachable(task.node())) return;
  v1::SchedulerCommand command;
  v1::UpdateHints* hints = command.mutable_update_hints();
  hints->set_task_id(task.task_id());
  hints->set_batch_size(task.batch_size());
  hints->set_shards(task.shards());
  hints->set_stop(true);
  nodes_.Send(task.node(), command);
  task.set_stopped_early(true);
  std::string saved = "the task reports no total work, so the saving is not projected";
  if (task.samples_total() > task.samples_done() && task.samples_done() > 0) {
    saved = absl::StrFormat(
        "about %.0f J saved: %.0f samples left at %.3f J per sample so far",
        (task.samples_total() - task.samples_done()) * task.energy().total_j() /
            task.samples_done(),
        task.samples_total() - task.samples_done(),
        task.energy().total_j() / task.samples_done());
  }
  AddEvent(job, "StoppedEarly",
           absl::StrFormat("task %s: quality %g has not improved on %g for %d reports; %s",
                           task.task_id(), task.quality(), verdict->best, verdict->stale, saved));
  Changed(job);
}

void Scheduler::EnforceBudget(v1::Job& job) {
  const absl::Time now = clock_->Now();
  const BudgetCheck check = budget_.Check(job, now);
  if (!check.step_down) return;
  double lowest = 0;
  bool tightened = false;
  for (v1::Task& task : *job.mutable_tasks()) {
    if (task.attempt() != job.attempts() || !IsActive(task.state())) continue;
    const v1::Device* gpu = TaskGpu(task);
    if (gpu == nullptr) continue;
    const double cap =
        std::max(gpu->power_limit_min_w(), task.power_cap_w() - options_.thermal_step_w);
    if (cap >= task.power_cap_w()) continue;
    if (profiling_.erase(task.task_id()) > 0) {
      job.set_cap_decision("profiling stopped: the energy budget needs lower caps");
    }
    ApplyCap(job, task, cap, "budget");
    lowest = cap;
    tightened = true;
  }
  if (tightened) {
    budget_.Stepped(job.id(), now);
    AddEvent(job, "BudgetTightened",
             absl::StrFormat("projected %.0f J > budget %.0f J: caps lowered to %.0f W",
                             check.projected_j, check.budget_j, lowest));
    Changed(job);
    return;
  }
  job.set_over_budget(true);
  budget_.Forget(job.id());
  AddEvent(job, "BudgetCannotBeMet",
           absl::StrFormat("projected %.0f J > budget %.0f J%s", check.projected_j,
                           check.budget_j,
                           check.total_known ? " even at the lowest caps"
                                             : " (already spent; the task reports no total)"));
  Changed(job);
}

void Scheduler::ThermalBackoff(NodeRecord& node, const v1::NodeSample& sample) {
  for (const v1::DeviceSample& reading : sample.devices()) {
    // Telemetry hot path: a GPU cooler than any model's threshold needs no
    // catalog lookup.
    if (reading.kind() != v1::DEVICE_KIND_GPU ||
        reading.temp_c() < coolest_throttle_c_ - options_.thermal_margin_c) {
      continue;
    }
    const v1::Device* device = nullptr;
    for (const v1::Device& candidate : node.info.devices()) {
      if (candidate.kind() == v1::DEVICE_KIND_GPU && candidate.index() == reading.index()) {
        device = &candidate;
      }
    }
    if (device == nullptr) continue;
    absl::optional<GpuModelSpec> spec = FindGpuModel(options_.gpu_catalog, device->model());
    if (!spec || reading.temp_c() < spec->throttle_temp_c - options_.thermal_margin_c) {
      continue;
    }
    // The task running on the GPU, if any: its cap steps down.
    for (const std::string& task_id : node.task_ids) {
      v1::Job* job = nullptr;
      v1::Task* task = FindTask(task_id, &job);
      if (task == nullptr || !IsActive(task->state())) continue;
      const auto& gpus = task->gpu_indices();
      if (std::find(gpus.begin(), gpus.end(), reading.index()) == gpus.end()) continue;
      const double cap = std::max(device->power_limit_min_w(),
                                  task->power_cap_w() - options_.thermal_step_w);
      if (cap >= task->power_cap_w()) break;  // Already at the minimum.
      // Thermal safety overrides profiling: its measurements would be wrong.
      if (profiling_.erase(task->task_id()) > 0) {
        job->set_cap_decision("profiling stopped: the GPU got too hot");
      }
      ApplyCap(*job, *task, cap, "thermal");
      AddEvent(*job, "ThermalBackoff",
               absl::StrFormat("GPU %d on %s at %.0f C (throttles at %.0f C): cap "
                               "lowered to %.0f W",
                               reading.index(), node.info.name(), reading.temp_c(),
                               spec->throttle_temp_c, cap));
      Changed(*job);
      break;
    }
  }
}

void Scheduler::EstimateSavings(v1::Job& job) {
  double samples = 0, measured_gpu_j = 0;
  const v1::Task* first = nullptr;
  for (const v1::Task& task : job.tasks()) {
    if (task.attempt() != job.attempts()) continue;
    if (first == nullptr) first = &task;
    samples += task.samples_done();
    measured_gpu_j += task.energy().gpu_j();
  }
  if (first == nullptr || first->gpu_indices().empty() || samples <= 0) return;
  const v1::Device* gpu = TaskGpu(*first);
  if (gpu == nullptr) return;
  const std::optional<std::vector<CapPoint>> profile = energy_model_.ForGpus(
      ProfileClass(job.spec()), gpu->model(), first->gpu_indices_size());
  if (!profile || profile->empty()) return;
  // The profile's highest cap is the maximum power limit, where profiling
  // starts: its energy per sample, times the samples this job did.
  const CapPoint& top = profile->front();
  v1::JobSavings* savings = job.mutable_savings();
  savings->set_measured_gpu_j(measured_gpu_j);
  savings->set_estimated_uncapped_gpu_j(samples * top.power_w / top.throughput);
  savings->set_saved_j(savings->estimated_uncapped_gpu_j() - measured_gpu_j);
  saved_j_total_ += std::max(0.0, savings->saved_j());
  savings->set_basis(absl::StrFormat(
      "%.0f samples x %.3f GPU J/sample measured at %.0f W while profiling class %s",
      samples, top.power_w / top.throughput, top.cap_w, job.spec().job_class()));
}

void Scheduler::SplitShards(v1::Job& job) {
  const v1::JobSpec& spec = job.spec();
  if (spec.shard_count() <= 0) return;
  std::vector<v1::Task*> replicas;
  for (v1::Task& task : *job.mutable_tasks()) {
    if (task.attempt() == job.attempts()) replicas.push_back(&task);
  }
  // Predicted throughput: the class's measured throughput on each replica's
  // GPU model where every replica's model has been profiled, else equal.
  std::vector<double> throughput(replicas.size(), 1.0);
  bool all_profiled = true;
  for (size_t i = 0; i < replicas.size(); ++i) {
    const v1::Device* gpu = TaskGpu(*replicas[i]);
    const std::optional<std::vector<CapPoint>> profile =
        gpu == nullptr ? std::nullopt
                       : energy_model_.ForGpus(ProfileClass(spec), gpu->model(),
                                               replicas[i]->gpu_indices_size());
    if (!profile || profile->empty()) {
      all_profiled = false;
      break;
    }
    throughput[i] = profile->front().throughput;
  }
  if (!all_profiled) std::fill(throughput.begin(), throughput.end(), 1.0);
  absl::StatusOr<Sharder> sharder = Sharder::Create(spec.shard_count(), throughput);
  if (!sharder.ok()) {
    JLOG(ERROR) << "job " << job.id() << ": cannot split shards: " << sharder.status();
    return;
  }
  // Shards finished by earlier attempts stay finished.
  for (const v1::Task& task : job.tasks()) {
    if (task.attempt() == job.attempts() || task.shards_done().empty()) continue;
    absl::StatusOr<std::set<int>> done = ParseRangeList(task.shards_done());
    if (!done.ok()) continue;
    for (int shard : *done) (void)sharder->ShardDone(0, shard);
  }
  for (v1::Task* task : replicas) task->set_shards(sharder->ShardsOf(task->replica_index()));
  job.set_shard_state(sharder->Serialize());
  sharders_.insert_or_assign(job.id(), *std::move(sharder));
}

void Scheduler::FeedSharder(v1::Job& job, const v1::Task& task) {
  auto it = sharders_.find(job.id());
  if (it == sharders_.end() || task.attempt() != job.attempts()) return;
  absl::StatusOr<std::set<int>> done = ParseRangeList(task.shards_done());
  if (!done.ok()) return;
  Sharder& sharder = it->second;
  const int before = sharder.done_count();
  for (int shard : *done) (void)sharder.ShardDone(task.replica_index(), shard);
  // A replica that ran out gets shards from the slowest others only if it
  // said it waits for more: a workload may exit as soon as it has no shards,
  // and a hint racing its exit would strand the shards it carries (they
  // would come back when it ends, but later). Idle replicas that did not
  // say so weigh 0 for this rebalance.
  bool any_waiting = false;
  const absl::Time now = clock_->Now();
  for (const v1::Task& sibling : job.tasks()) {
    if (sibling.attempt() != job.attempts() || !IsActive(sibling.state())) continue;
    const bool idle = sharder.pending(sibling.replica_index()).empty();
    if (idle && !sibling.waiting_for_shards()) {
      (void)sharder.UpdateThroughput(sibling.replica_index(), 0.0);
      continue;
    }
    any_waiting |= idle;
    // Measured samples per second, so all replicas weigh in one unit.
    const double seconds =
        sibling.has_start_time()
            ? absl::ToDoubleSeconds(now - FromProtoTime(sibling.start_time()))
            : 0;
    if (sibling.samples_done() > 0 && seconds > 0) {
      (void)sharder.UpdateThroughput(sibling.replica_index(),
                                     sibling.samples_done() / seconds);
    }
  }
  if (any_waiting) ApplyMoves(job, sharder.Rebalance());
  if (sharder.done_count() != before || any_waiting) job.set_shard_state(sharder.Serialize());
}

void Scheduler::ReplicaGone(v1::Job& job, const v1::Task& task) {
  auto it = sharders_.find(job.id());
  if (it == sharders_.end() || task.attempt() != job.attempts()) return;
  // A training gang ends with a replica that did not succeed: its siblings
  // are being stopped, and a retry's split hands out every shard not done.
  // Moving the shards to the siblings would only race their stop.
  if (job.spec().type() != v1::JOB_TYPE_INFERENCE &&
      task.state() != v1::TASK_STATE_SUCCEEDED) {
    return;
  }
  absl::StatusOr<std::vector<Sharder::Move>> moves =
      it->second.ReplicaLost(task.replica_index());
  if (!moves.ok()) return;
  ApplyMoves(job, *moves);
  job.set_shard_state(it->second.Serialize());
}

void Scheduler::ApplyMoves(v1::Job& job, const std::vector<Sharder::Move>& moves) {
  auto it = sharders_.find(job.id());
  if (it == sharders_.end()) return;
  for (const Sharder::Move& move : moves) {
    for (int replica : {move.from_replica, move.to_replica}) {
      for (v1::Task& task : *job.mutable_tasks()) {
        if (task.attempt() != job.attempts() || task.replica_index() != replica ||
            !IsActive(task.state())) {
          continue;
        }
        task.set_shards(it->second.ShardsOf(replica));
        v1::SchedulerCommand command;
        v1::UpdateHints* hints = command.mutable_update_hints();
        hints->set_task_id(task.task_id());
        hints->set_batch_size(task.batch_size());
        hints->set_shards(task.shards());
        nodes_.Send(task.node(), command);
      }
    }
    std::set<int> shards(move.shards.begin(), move.shards.end());
    AddEvent(job, "ShardsMoved",
             absl::StrFormat("shards %s moved from replica %d to replica %d",
                             FormatRangeList(shards), move.from_replica, move.to_replica));
  }
}

void Scheduler::RouteByEnergy(const v1::Job& job, const std::set<std::string>& models,
                              const std::map<std::string, double>& static_per_gpu,
                              absl::Time now, PlacementRequest* request) const {
  const v1::JobSpec& spec = job.spec();
  const int gpus = request->gpus;
  // Only models the job may use and that come on nodes big enough for one
  // of its replicas (PlacePending passes them; see `models`).
  // Per model: the whole energy of a sample (GPUs plus their share of the
  // node's static power) at the cap the objective picks.
  std::map<std::string, double> total_j;
  for (const std::string& model : models) {
    auto static_it = static_per_gpu.find(model);
    const double static_w = static_it == static_per_gpu.end() ? 0 : static_it->second * gpus;
    std::string note;
    absl::StatusOr<EnergyPrediction> predicted =
        energy_model_.Predict(ProfileClass(spec), model, gpus, CapObjective(spec, &note), static_w,
                              options_.caps_count_static_power, now);
    if (!predicted.ok() || predicted->samples_per_second <= 0) continue;
    request->learned_cost[model] = {predicted->gpu_joules_per_sample,
                                    predicted->samples_per_second};
    total_j[model] = predicted->joules_per_sample;
  }
  if (options_.route_wait_fraction <= 0 || total_j.empty()) return;

  auto best = std::min_element(total_j.begin(), total_j.end(),
                               [](const auto& a, const auto& b) { return a.second < b.second; });
  absl::Duration allowance = options_.route_unsized_wait;
  if (spec.expected_samples() > 0) {
    const double rate = request->learned_cost[best->first].samples_per_second *
                        std::max(1, request->replicas);
    allowance = std::min(options_.route_max_wait,
                         absl::Seconds(options_.route_wait_fraction * spec.expected_samples() / rate));
  }
  const absl::Time until = FromProtoTime(job.submit_time()) + allowance;
  if (now >= until) return;
  const std::string deadline = absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", until, absl::UTCTimeZone());

  std::set<std::string> unknown;
  for (const std::string& model : models) {
    if (total_j.count(model) == 0) unknown.insert(model);
  }
  if (!unknown.empty() && batch_sizer_.MayExplore(spec.job_class(), spec.expected_samples())) {
    request->routed_models = unknown;
    request->routing_note = absl::StrFormat(
        "class %s has no power profile on %s yet and this job is small enough to measure "
        "one: waiting for such GPUs until %s",
        ProfileClass(spec), absl::StrJoin(unknown, ", "), deadline);
    return;
  }
  std::set<std::string> routed;
  double worst = best->second;
  for (const auto& [model, joules] : total_j) {
    if (joules <= best->second * options_.route_tolerance) {
      routed.insert(model);
    } else {
      worst = std::max(worst, joules);
    }
  }
  if (routed.size() == models.size()) return;
  request->routed_models = routed;
  request->routing_note = absl::StrFormat(
      "%s do class %s's work for %.3g J per sample (GPUs and static power), other models "
      "for up to %.2fx that: waiting for them until %s",
      absl::StrJoin(routed, ", "), ProfileClass(spec), best->second, worst / best->second,
      deadline);
}

bool Scheduler::LearnsBatchSize(const v1::JobSpec& spec) const {
  return !spec.pin_max_cap() && options_.learn_batch_size &&
         spec.type() == v1::JOB_TYPE_TRAINING && spec.batch_size().min() < spec.batch_size().max();
}

BatchRequest Scheduler::BatchRequestOf(const v1::Job& job) const {
  const v1::JobSpec& spec = job.spec();
  BatchRequest request;
  request.job_id = job.id();
  request.job_class = spec.job_class();
  request.min = spec.batch_size().min();
  request.default_size = spec.batch_size().default_size();
  request.max = spec.batch_size().max();
  request.expected_samples = spec.expected_samples();
  request.first_attempt = job.attempts() <= 1;
  return request;
}

int32_t Scheduler::ChooseBatchSize(v1::Job& job, const std::string& gpu_model) {
  const v1::JobSpec& spec = job.spec();
  const v1::BatchSizeRange& range = spec.batch_size();
  if (!LearnsBatchSize(spec)) {
    job.set_batch_decision(absl::StrFormat(
        "%d: the job's default batch size%s", range.default_size(),
        range.min() >= range.max() ? " (no range to choose from)" : ""));
    return range.default_size();
  }
  // A new attempt starts uncorrected.
  job.clear_batch_corrected();
  BatchRequest request = BatchRequestOf(job);
  request.sample_costs = RunSampleCosts(spec.job_class(), gpu_model);
  request.gpu_model = gpu_model;
  BatchChoice choice =
      batch_sizer_.Choose(request, absl::BitGenRef(rng_), [this](const std::string& id) {
        auto running = jobs_.find(id);
        return running != jobs_.end() && running->second.state() == v1::JOB_STATE_RUNNING;
      });
  job.set_batch_decision(std::move(choice.reason));
  return choice.batch_size;
}

void Scheduler::CorrectBatchSize(v1::Job& job) {
  const v1::JobSpec& spec = job.spec();
  if (options_.batch_correction_factor <= 0 || !options_.learn_batch_size ||
      spec.type() != v1::JOB_TYPE_TRAINING || spec.pin_max_cap() ||
      spec.expected_samples() <= 0 || spec.batch_size().min() >= spec.batch_size().max() ||
      job.batch_corrected()) {
    return;
  }
  double done = 0, total = 0, joules = 0;
  int32_t batch = 0;
  std::vector<v1::Task*> tasks;
  for (v1::Task& task : *job.mutable_tasks()) {
    if (task.attempt() != job.attempts()) continue;
    // Every replica running and reporting its total, none being profiled
    // (a batch change would spoil the profile).
    if (!IsActive(task.state()) || task.samples_total() <= 0 ||
        profiling_.count(task.task_id()) > 0) {
      return;
    }
    done += task.samples_done();
    total += task.samples_total();
    joules += task.energy().total_j();
    batch = task.batch_size();
    tasks.push_back(&task);
  }
  if (tasks.empty() || total <= 0 || done < options_.batch_correction_min_progress * total ||
      joules <= 0) {
    return;
  }
  const v1::Device* gpu = TaskGpu(*tasks.front());
  const double projected_ratio = total / spec.expected_samples();
  const double joules_per_sample = joules / done;
  const int32_t better = batch_sizer_.CheckRunning(
      spec.job_class(), job.id(), batch, projected_ratio, joules_per_sample,
      RunSampleCosts(spec.job_class(), gpu == nullptr ? "" : gpu->model()),
      options_.batch_correction_factor, spec.batch_size().min(), spec.batch_size().max());
  if (better <= 0) return;
  job.set_batch_corrected(true);
  // The projection is an observation of the batch size it left, and so is
  // what a sample cost there: the two factors of its cost stay together.
  RecordRunCost(spec.job_class(), gpu == nullptr ? "" : gpu->model(), batch, joules_per_sample);
  store_->PutState(StoreMutation{StoreMutation::Op::kPut, absl::StrCat(kBanditKeyPrefix, spec.job_class()),
                           batch_sizer_.SerializeClass(spec.job_class())},
             "storing the batch sizes of a class");
  for (v1::Task* task : tasks) {
    if (!nodes_.Reachable(task->node())) continue;
    v1::SchedulerCommand command;
    v1::UpdateHints* hints = command.mutable_update_hints();
    hints->set_task_id(task->task_id());
    hints->set_batch_size(better);
    hints->set_shards(task->shards());
    nodes_.Send(task->node(), command);
    task->set_batch_size(better);
  }
  AddEvent(job, "BatchCorrected",
           absl::StrFormat("batch %d projects %.4g J per declared sample after %.1f%% of the "
                           "work, more than %.1fx the class's best (batch %d): moved to %d",
                           batch, projected_ratio * joules_per_sample, 100 * done / total,
                           options_.batch_correction_factor, better, better));
  job.set_batch_decision(absl::StrCat(job.batch_decision(), "\nthen corrected to ", better,
                                      " (see the BatchCorrected event)"));
  Changed(job);
}

void Scheduler::RecordRunCost(const std::string& job_class, const std::string& gpu_model,
                              int32_t batch_size, double joules_per_sample) {
  absl::Status observed = energy_model_.runs().Observe(
      job_class, gpu_model.empty() ? internal::kNoGpuModel : gpu_model, batch_size,
      joules_per_sample);
  if (!observed.ok()) {
    JLOG(WARNING) << "run costs of class " << job_class << ": " << observed;
    return;
  }
  store_->PutState(StoreMutation{StoreMutation::Op::kPut, absl::StrCat(internal::kRunCostKeyPrefix, job_class),
                           energy_model_.runs().SerializeClass(job_class)},
             "storing the run costs of a class");
}

void Scheduler::LearnBatchSize(const v1::Job& job) {
  if (job.batch_corrected()) return;
  if (batch_sizer_.Bandit(job.spec().job_class()) == nullptr) return;
  BatchOutcome outcome;
  outcome.job_id = job.id();
  outcome.job_class = job.spec().job_class();
  outcome.expected_samples = job.spec().expected_samples();
  std::string gpu_model;
  for (const v1::Task& task : job.tasks()) {
    if (task.attempt() != job.attempts()) continue;
    outcome.samples += task.samples_done();
    outcome.joules += task.energy().total_j();
    outcome.target_reached |= task.target_reached();
    outcome.batch_size = task.batch_size();
    if (const v1::Device* gpu = TaskGpu(task); gpu != nullptr) gpu_model = gpu->model();
  }
  // What a sample cost at this batch size on these GPUs, whatever the run
  // teaches the bandit.
  if (outcome.samples > 0 && outcome.joules > 0) {
    RecordRunCost(outcome.job_class, gpu_model, outcome.batch_size,
                  outcome.joules / outcome.samples);
  }
  absl::Status learned = batch_sizer_.Finished(outcome);
  if (!learned.ok()) {
    JLOG(WARNING) << "batch sizes of class " << outcome.job_class << ": " << learned;
    return;
  }
  store_->PutState(StoreMutation{StoreMutation::Op::kPut, absl::StrCat(kBanditKeyPrefix, outcome.job_class),
                           batch_sizer_.SerializeClass(outcome.job_class)},
             "storing the batch sizes of a class");
}

}  // namespace joule
