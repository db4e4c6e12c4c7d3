#ifndef JOULE_SCHEDULER_METRICS_H_
#define JOULE_SCHEDULER_METRICS_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "scheduler/scheduler.h"

namespace joule {

// The scheduler's Prometheus metrics, exactly the series of README "Metrics"
// -> "joule-scheduler" (served by common/metrics_http.h).
//
// The scheduler core knows nothing of Prometheus: it hands out snapshots
// (Scheduler::Metrics) and tells its SchedulerObserver of events.
//  1. Refresh(snapshot), from the tick loop about once a second, sets the
//     gauges; counters advance by how much the snapshot's values grew since
//     the last refresh (they only grow: job energy, emissions, cost, the
//     sums since start), so a counter never goes back.
//  2. A job gets its series when it first shows in a snapshot (it has run)
//     and loses them (Family::Remove) once it no longer does: it ended more
//     than job_retention ago. Per-job cardinality stays bounded by the jobs
//     running plus those ended within the retention.
//  3. The observer hooks feed the histograms (placement cycles, queue wait),
//     the cap counter and the dropped-telemetry counter as events happen.
//
// Thread-safe: Refresh and SetLeader are serialized by mu_; the observer
// hooks (called under the scheduler's lock) touch only prometheus-cpp's
// metrics, which are thread-safe, and never take mu_.
class SchedulerMetrics : public SchedulerObserver {
 public:
  // Label values of joule_cap_changes_total.
  static constexpr const char* kCapReasons[] = {"profiling", "objective", "thermal",
                                                "budget", "operator"};

  explicit SchedulerMetrics(absl::Duration job_retention = absl::Hours(1));
  SchedulerMetrics(const SchedulerMetrics&) = delete;
  SchedulerMetrics& operator=(const SchedulerMetrics&) = delete;

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  absl::Duration job_retention() const { return job_retention_; }

  // joule_leader: 1 on the replica that leads.
  void SetLeader(bool leading);

  // Copies a snapshot taken with job_retention() into the series.
  void Refresh(const MetricsSnapshot& snapshot);
  // Takes the scheduler's snapshot and copies it in.
  void Refresh(const Scheduler& scheduler) { Refresh(scheduler.Metrics(job_retention_)); }

  // SchedulerObserver.
  void OnPlacementCycle(absl::Duration duration) override;
  void OnFirstPlacement(absl::Duration queue_wait) override;
  void OnCapSent(absl::string_view reason) override;
  // joule_telemetry_rejected_total{node, reason}.
  void OnTelemetryRejected(absl::string_view node, absl::string_view reason) override;

 private:
  struct NodeSeries {
    prometheus::Gauge* power = nullptr;
    prometheus::Gauge* ready = nullptr;
    prometheus::Gauge* suspended = nullptr;
    prometheus::Gauge* telemetry_age = nullptr;
  };
  // A counter and the value it has reached (the source's high-water mark).
  struct Tally {
    prometheus::Counter* counter = nullptr;
    double reached = 0;
    // Advances the counter to `value` if that is higher.
    void Grow(double value);
  };
  struct JobSeries {
    Tally gpu_j, cpu_j, static_j, co2e_g, cost;
    prometheus::Gauge* budget = nullptr;  // Jobs with a budget only.
    prometheus::Gauge* saved = nullptr;   // Jobs with a savings estimate only.
  };

  JobSeries& SeriesOf(const JobMetrics& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveJob(JobSeries& series) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration job_retention_;
  const std::shared_ptr<prometheus::Registry> registry_;

  // Families (owned by the registry).
  prometheus::Family<prometheus::Gauge>& cluster_power_;
  prometheus::Family<prometheus::Gauge>& node_power_;
  prometheus::Family<prometheus::Gauge>& node_ready_;
  prometheus::Family<prometheus::Gauge>& node_suspended_;
  prometheus::Family<prometheus::Gauge>& node_telemetry_age_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Gauge>& queue_length_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Histogram>& placement_latency_;
  prometheus::Family<prometheus::Counter>& cap_changes_;
  prometheus::Family<prometheus::Counter>& job_energy_;
  prometheus::Family<prometheus::Gauge>& job_budget_;
  prometheus::Family<prometheus::Gauge>& job_saved_;
  prometheus::Family<prometheus::Counter>& job_co2e_;
  prometheus::Family<prometheus::Counter>& job_cost_;
  prometheus::Family<prometheus::Counter>& energy_total_;
  prometheus::Family<prometheus::Counter>& saved_total_;
  prometheus::Family<prometheus::Counter>& co2e_total_;
  prometheus::Family<prometheus::Counter>& cost_total_;
  prometheus::Family<prometheus::Gauge>& currency_info_;
  prometheus::Family<prometheus::Gauge>& leader_;
  prometheus::Family<prometheus::Gauge>& unstored_jobs_;
  prometheus::Family<prometheus::Counter>& telemetry_rejected_;

  // Series without job or node labels, made once.
  prometheus::Gauge& cluster_power_w_;
  prometheus::Gauge& queue_length_n_;
  prometheus::Histogram& queue_wait_s_;
  prometheus::Histogram& placement_latency_s_;
  prometheus::Gauge& leader_n_;
  prometheus::Gauge& unstored_jobs_n_;
  // By reason, for the hooks (fixed after construction).
  std::map<std::string, prometheus::Counter*, std::less<>> cap_changes_by_reason_;

  absl::Mutex mu_;
  std::map<std::string, NodeSeries> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, JobSeries> job_series_ ABSL_GUARDED_BY(mu_);
  Tally energy_j_ ABSL_GUARDED_BY(mu_);
  Tally saved_j_ ABSL_GUARDED_BY(mu_);
  Tally co2e_g_ ABSL_GUARDED_BY(mu_);
  Tally cost_ ABSL_GUARDED_BY(mu_);
  // The currency label in use, and its series (null until configured).
  std::string currency_ ABSL_GUARDED_BY(mu_);
  prometheus::Gauge* currency_gauge_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_METRICS_H_
