#include "scheduler/placement_explanations.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/proto_time.h"

namespace joule {
namespace {

const char* OutcomeName(PlacementResult::Kind kind) {
  switch (kind) {
    case PlacementResult::Kind::kPlaced:
      return "PLACED";
    case PlacementResult::Kind::kRetryLater:
      return "RETRY_LATER";
    case PlacementResult::Kind::kInfeasible:
      return "INFEASIBLE";
    case PlacementResult::Kind::kError:
      return "ERROR";
  }
  return "ERROR";
}

}  // namespace

std::shared_ptr<const v1::JobExplanation> PlacementExplanations::Build(
    const std::string& job_id, const PlacementResult& result, const std::string& profile) {
  auto explanation = std::make_shared<v1::JobExplanation>();
  v1::JobExplanation& out = *explanation;
  out.set_job_id(job_id);
  out.set_outcome(OutcomeName(result.kind));
  out.set_reason(result.reason);
  out.set_profile(profile);
  const CycleSummary& summary = result.summary;
  out.set_nodes_total(summary.nodes_total);
  out.set_nodes_filtered(summary.nodes_filtered);
  out.set_nodes_feasible(summary.nodes_feasible);
  out.set_sampled(summary.sampled);
  for (const RejectionCount& rejection : summary.rejections) {
    v1::RejectionCount* count = out.add_rejections();
    count->set_plugin(rejection.plugin);
    count->set_code(PluginCodeName(rejection.code));
    count->set_nodes(rejection.nodes);
    count->set_example(rejection.example);
  }
  const std::string chosen = result.replicas.empty() ? "" : result.replicas[0].node;
  for (const ScoredCandidate& top : summary.top) {
    v1::PlacementCandidate* candidate = out.add_candidates();
    candidate->set_node(top.node);
    for (const ScoreEntry& entry : top.scores) {
      v1::PluginScore* score = candidate->add_scores();
      score->set_plugin(entry.plugin);
      score->set_score(entry.score);
      score->set_weight(entry.weight);
    }
    candidate->set_total_score(top.total_score);
    candidate->set_chosen(top.node == chosen);
  }
  for (const ReplicaPlacement& replica : result.replicas) out.add_replica_nodes(replica.node);
  return explanation;
}

void PlacementExplanations::Finished(const std::string& job_id) {
  finished_whole_.push_back(job_id);
  if (finished_whole_.size() <= kWholeKept) return;
  Trim(finished_whole_.front());
  finished_whole_.pop_front();
}

void PlacementExplanations::Trim(const std::string& job_id) {
  auto it = by_job_.find(job_id);
  if (it == by_job_.end()) return;
  auto trimmed = std::make_shared<v1::JobExplanation>(*it->second);
  // Swapped out rather than cleared: a cleared repeated field keeps its
  // elements allocated for reuse.
  google::protobuf::RepeatedPtrField<v1::PlacementCandidate> all;
  all.Swap(trimmed->mutable_candidates());
  for (const v1::PlacementCandidate& candidate : all) {
    if (candidate.chosen()) *trimmed->add_candidates() = candidate;
  }
  trimmed->set_note("an older finished job: only the chosen node's scores are kept");
  it->second = std::move(trimmed);
}

v1::JobExplanation PlacementExplanations::Of(const v1::Job& job, absl::Time now) const {
  v1::JobExplanation out;
  std::shared_ptr<const v1::JobExplanation> source;
  if (auto it = by_job_.find(job.id()); it != by_job_.end()) source = it->second;
  const bool pending = job.state() == v1::JOB_STATE_PENDING;
  if (pending) {
    // The last cycle's verdict on the job's shape is the newest, also for a
    // job the cycle stopped before.
    auto shared = failed_shapes_.find(JobQueue::ShapeOf(job.spec()));
    if (shared != failed_shapes_.end()) source = shared->second;
  }
  if (source != nullptr) {
    out = *source;
  } else {
    out.set_note("no placement cycle has examined this job since the scheduler started");
  }
  out.set_job_id(job.id());
  if (pending && job.has_not_before() && FromProtoTime(job.not_before()) > now) {
    out.set_note(absl::StrCat(
        "waiting out its retry backoff: not placed before ",
        absl::FormatTime(absl::RFC3339_sec, FromProtoTime(job.not_before()), absl::UTCTimeZone())));
  }
  // Without a decision of the energy brain's, the task ran at its GPUs'
  // default power limit and the spec's default batch size.
  const v1::Task* last = job.tasks().empty() ? nullptr : &*job.tasks().rbegin();
  if (!job.cap_decision().empty()) {
    out.set_cap_decision(job.cap_decision());
  } else if (last != nullptr) {
    out.set_cap_decision(last->power_cap_w() > 0
                             ? absl::StrFormat("%.0f W: the GPUs' default power limit",
                                               last->power_cap_w())
                             : "no GPU: no power cap");
  }
  out.set_batch_decision(
      !job.batch_decision().empty()
          ? job.batch_decision()
          : absl::StrFormat("%d: the job's default batch size",
                            job.spec().batch_size().default_size()));
  return out;
}

}  // namespace joule
