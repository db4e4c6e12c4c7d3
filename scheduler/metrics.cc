#include "scheduler/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "common/log.h"

namespace joule {
namespace {

// `count` boundaries from `start`, each `factor` times the one before,
// rounded to 3 significant digits so that the `le` labels read well
// (0.000178, not 0.0001778279410038923).
prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start, double factor,
                                                           int count) {
  prometheus::Histogram::BucketBoundaries out;
  for (int i = 0; i < count; ++i) {
    char rounded[32];
    std::snprintf(rounded, sizeof(rounded), "%.3g", start * std::pow(factor, i));
    out.push_back(std::strtod(rounded, nullptr));
  }
  return out;
}

// One placement cycle: 100 us to 10 s, four buckets per decade.
prometheus::Histogram::BucketBoundaries PlacementLatencyBuckets() {
  return ExponentialBuckets(1e-4, std::pow(10.0, 0.25), 21);
}

// Submission to first placement: 0.1 s to 0.1 x 2^20 s (about 1.2 days),
// doubling.
prometheus::Histogram::BucketBoundaries QueueWaitBuckets() {
  return ExponentialBuckets(0.1, 2, 21);
}

template <typename T>
prometheus::Family<T>& Register(prometheus::detail::Builder<T> builder,
                                prometheus::Registry& registry, const std::string& name,
                                const std::string& help) {
  return builder.Name(name).Help(help).Register(registry);
}

std::string StateLabel(v1::JobState state) {
  // JOB_STATE_SUCCEEDED -> succeeded.
  return absl::AsciiStrToLower(
      v1::JobState_Name(state).substr(sizeof("JOB_STATE_") - 1));
}

}  // namespace

void SchedulerMetrics::Tally::Grow(double value) {
  if (!(value > reached)) return;
  counter->Increment(value - reached);
  reached = value;
}

SchedulerMetrics::SchedulerMetrics(absl::Duration job_retention)
    : job_retention_(job_retention),
      registry_(std::make_shared<prometheus::Registry>()),
      cluster_power_(Register(prometheus::BuildGauge(), *registry_, "joule_cluster_power_watts",
                              "Sum of the nodes' last reported power.")),
      node_power_(Register(prometheus::BuildGauge(), *registry_, "joule_node_power_watts",
                           "A node's last reported power.")),
      node_ready_(Register(prometheus::BuildGauge(), *registry_, "joule_node_ready",
                           "1 while a node is READY, else 0.")),
      node_suspended_(Register(prometheus::BuildGauge(), *registry_, "joule_node_suspended",
                               "1 while idle power management has a node suspended "
                               "(or suspending, resuming), else 0.")),
      node_telemetry_age_(Register(prometheus::BuildGauge(), *registry_,
                                   "joule_node_telemetry_age_seconds",
                                   "Seconds since a node's last telemetry (since it "
                                   "registered, before the first).")),
      jobs_(Register(prometheus::BuildGauge(), *registry_, "joule_jobs", "Jobs by state.")),
      queue_length_(Register(prometheus::BuildGauge(), *registry_, "joule_queue_length",
                             "Pending jobs.")),
      queue_wait_(Register(prometheus::BuildHistogram(), *registry_,
                           "joule_queue_wait_seconds",
                           "Time from a job's submission to its first placement.")),
      placement_latency_(Register(prometheus::BuildHistogram(), *registry_,
                                  "joule_placement_latency_seconds",
                                  "Duration of one placement cycle.")),
      cap_changes_(Register(prometheus::BuildCounter(), *registry_, "joule_cap_changes_total",
                            "Power caps sent to agents, by reason.")),
      job_energy_(Register(prometheus::BuildCounter(), *registry_,
                           "joule_job_energy_joules_total",
                           "A job's measured energy, by component.")),
      job_budget_(Register(prometheus::BuildGauge(), *registry_,
                           "joule_job_energy_budget_joules",
                           "A job's energy budget (jobs with a budget only).")),
      job_saved_(Register(prometheus::BuildGauge(), *registry_,
                          "joule_job_energy_saved_joules",
                          "A finished job's estimated GPU energy saving against the "
                          "maximum cap (negative when it cost more).")),
      job_co2e_(Register(prometheus::BuildCounter(), *registry_,
                         "joule_job_co2e_grams_total", "A job's emissions in gCO2e.")),
      job_cost_(Register(prometheus::BuildCounter(), *registry_, "joule_job_cost_total",
                         "A job's electricity cost in the configured currency.")),
      energy_total_(Register(prometheus::BuildCounter(), *registry_,
                             "joule_energy_joules_total",
                             "Measured energy of every job since the scheduler started.")),
      saved_total_(Register(prometheus::BuildCounter(), *registry_,
                            "joule_energy_saved_joules_total",
                            "Estimated savings of every finished job since the scheduler "
                            "started (positive savings; a counter cannot go down).")),
      co2e_total_(Register(prometheus::BuildCounter(), *registry_, "joule_co2e_grams_total",
                           "Emissions of every job since the scheduler started, gCO2e.")),
      cost_total_(Register(prometheus::BuildCounter(), *registry_, "joule_cost_total",
                           "Electricity cost of every job since the scheduler started.")),
      currency_info_(Register(prometheus::BuildGauge(), *registry_,
                              "joule_cost_currency_info",
                              "1, with the currency of the cost metrics as a label "
                              "(absent without --carbon-config).")),
      leader_(Register(prometheus::BuildGauge(), *registry_, "joule_leader",
                       "1 on the replica that leads, else 0.")),
      unstored_jobs_(Register(prometheus::BuildGauge(), *registry_, "joule_unstored_jobs",
                              "Jobs whose latest state the store has not taken yet.")),
      telemetry_rejected_(Register(prometheus::BuildCounter(), *registry_,
                                   "joule_telemetry_rejected_total",
                                   "Agent telemetry dropped as impossible (NaN, power above "
                                   "the device's ceiling, counters going back...), by node "
                                   "and reason.")),
      cluster_power_w_(cluster_power_.Add({})),
      queue_length_n_(queue_length_.Add({})),
      queue_wait_s_(queue_wait_.Add({}, QueueWaitBuckets())),
      placement_latency_s_(placement_latency_.Add({}, PlacementLatencyBuckets())),
      leader_n_(leader_.Add({})),
      unstored_jobs_n_(unstored_jobs_.Add({})) {
  for (const char* reason : kCapReasons) {
    cap_changes_by_reason_[reason] = &cap_changes_.Add({{"reason", reason}});
  }
  for (v1::JobState state : {v1::JOB_STATE_PENDING, v1::JOB_STATE_RUNNING,
                             v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED,
                             v1::JOB_STATE_CANCELLED}) {
    jobs_.Add({{"state", StateLabel(state)}});
  }
  absl::MutexLock lock(&mu_);
  energy_j_.counter = &energy_total_.Add({});
  saved_j_.counter = &saved_total_.Add({});
  co2e_g_.counter = &co2e_total_.Add({});
  cost_.counter = &cost_total_.Add({});
}

void SchedulerMetrics::SetLeader(bool leading) {
  absl::MutexLock lock(&mu_);
  leader_n_.Set(leading ? 1 : 0);
}

SchedulerMetrics::JobSeries& SchedulerMetrics::SeriesOf(const JobMetrics& job) {
  auto [it, added] = job_series_.try_emplace(job.id);
  JobSeries& series = it->second;
  if (added) {
    auto energy = [&](const char* component) {
      return &job_energy_.Add({{"job", job.id}, {"user", job.user}, {"component", component}});
    };
    series.gpu_j.counter = energy("gpu");
    series.cpu_j.counter = energy("cpu");
    series.static_j.counter = energy("static");
    series.co2e_g.counter = &job_co2e_.Add({{"job", job.id}, {"user", job.user}});
    series.cost.counter = &job_cost_.Add({{"job", job.id}, {"user", job.user}});
  }
  if (job.budget_j > 0 && series.budget == nullptr) {
    series.budget = &job_budget_.Add({{"job", job.id}, {"user", job.user}});
  }
  if (job.has_savings && series.saved == nullptr) {
    series.saved = &job_saved_.Add({{"job", job.id}, {"user", job.user}});
  }
  return series;
}

void SchedulerMetrics::RemoveJob(JobSeries& series) {
  job_energy_.Remove(series.gpu_j.counter);
  job_energy_.Remove(series.cpu_j.counter);
  job_energy_.Remove(series.static_j.counter);
  job_co2e_.Remove(series.co2e_g.counter);
  job_cost_.Remove(series.cost.counter);
  if (series.budget != nullptr) job_budget_.Remove(series.budget);
  if (series.saved != nullptr) job_saved_.Remove(series.saved);
}

void SchedulerMetrics::Refresh(const MetricsSnapshot& snapshot) {
  absl::MutexLock lock(&mu_);
  // Nodes.
  double cluster_power_w = 0;
  std::set<std::string> nodes_seen;
  for (const NodeMetrics& node : snapshot.nodes) {
    nodes_seen.insert(node.name);
    auto [it, added] = nodes_.try_emplace(node.name);
    NodeSeries& series = it->second;
    if (added) {
      series.power = &node_power_.Add({{"node", node.name}});
      series.ready = &node_ready_.Add({{"node", node.name}});
      series.suspended = &node_suspended_.Add({{"node", node.name}});
      series.telemetry_age = &node_telemetry_age_.Add({{"node", node.name}});
    }
    series.power->Set(node.power_w);
    series.ready->Set(node.ready ? 1 : 0);
    series.suspended->Set(node.suspended ? 1 : 0);
    series.telemetry_age->Set(absl::ToDoubleSeconds(node.telemetry_age));
    cluster_power_w += node.power_w;
  }
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (nodes_seen.count(it->first)) {
      ++it;
      continue;
    }
    node_power_.Remove(it->second.power);
    node_ready_.Remove(it->second.ready);
    node_suspended_.Remove(it->second.suspended);
    node_telemetry_age_.Remove(it->second.telemetry_age);
    it = nodes_.erase(it);
  }
  cluster_power_w_.Set(cluster_power_w);

  // Jobs by state and the queue.
  for (const auto& [state, count] : snapshot.jobs_by_state) {
    if (state == v1::JOB_STATE_UNSPECIFIED) continue;
    jobs_.Add({{"state", StateLabel(state)}}).Set(count);
  }
  queue_length_n_.Set(snapshot.queue_length);

  // Per job: series for the jobs in the snapshot, none for the others.
  std::set<std::string> jobs_seen;
  for (const JobMetrics& job : snapshot.jobs) {
    jobs_seen.insert(job.id);
    JobSeries& series = SeriesOf(job);
    series.gpu_j.Grow(job.energy.gpu_j());
    series.cpu_j.Grow(job.energy.cpu_j());
    series.static_j.Grow(job.energy.static_j());
    series.co2e_g.Grow(job.co2e_g);
    series.cost.Grow(job.cost);
    if (series.budget != nullptr) series.budget->Set(job.budget_j);
    if (series.saved != nullptr) series.saved->Set(job.saved_j);
  }
  for (auto it = job_series_.begin(); it != job_series_.end();) {
    if (jobs_seen.count(it->first)) {
      ++it;
      continue;
    }
    RemoveJob(it->second);
    it = job_series_.erase(it);
  }

  // Sums since start.
  energy_j_.Grow(snapshot.energy_j);
  saved_j_.Grow(snapshot.saved_j);
  co2e_g_.Grow(snapshot.co2e_g);
  cost_.Grow(snapshot.cost);
  if (snapshot.currency != currency_) {
    if (currency_gauge_ != nullptr) currency_info_.Remove(currency_gauge_);
    currency_gauge_ = nullptr;
    currency_ = snapshot.currency;
    if (!currency_.empty()) {
      currency_gauge_ = &currency_info_.Add({{"currency", currency_}});
      currency_gauge_->Set(1);
    }
  }
  unstored_jobs_n_.Set(snapshot.unstored_jobs);
}

void SchedulerMetrics::OnPlacementCycle(absl::Duration duration) {
  placement_latency_s_.Observe(absl::ToDoubleSeconds(duration));
}

void SchedulerMetrics::OnFirstPlacement(absl::Duration queue_wait) {
  queue_wait_s_.Observe(absl::ToDoubleSeconds(queue_wait));
}

void SchedulerMetrics::OnTelemetryRejected(absl::string_view node, absl::string_view reason) {
  // Family::Add is thread-safe and returns the existing series. Node names
  // are validated at registration and reasons are a fixed set, so the
  // series stay bounded by nodes x reasons.
  telemetry_rejected_.Add({{"node", std::string(node)}, {"reason", std::string(reason)}})
      .Increment();
}

void SchedulerMetrics::OnCapSent(absl::string_view reason) {
  auto it = cap_changes_by_reason_.find(reason);
  if (it != cap_changes_by_reason_.end()) {
    it->second->Increment();
    return;
  }
  // Not one of the documented reasons: a new caller of ApplyCap that the
  // README's table should learn of. Counted under its own label
  // (Family::Add is thread-safe), and logged.
  JLOG(WARNING) << "cap reason \"" << reason << "\" is not one of the documented ones";
  cap_changes_.Add({{"reason", std::string(reason)}}).Increment();
}

}  // namespace joule
