#include "scheduler/placement_explanations.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "scheduler/job_queue.h"
#include "scheduler/placement/framework.h"
#include "scheduler/placement/pipeline.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);  // 2023-11-14T22:13:20Z

MATCHER_P(EqualsProto, expected, "equals the expected message") {
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(arg, expected)) return true;
  *result_listener << diff;
  return false;
}

v1::JobExplanation ExplanationFromText(const std::string& text) {
  v1::JobExplanation explanation;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &explanation)) << text;
  return explanation;
}

ScoredCandidate TopCandidate(const std::string& node, double total_score) {
  ScoredCandidate candidate;
  candidate.node = node;
  candidate.scores = {{"LeastAllocated", total_score, 1}, {"EnergyEfficiency", 50, 2}};
  candidate.total_score = total_score;
  return candidate;
}

// A cycle over 10 nodes: 2 rejections, 3 top candidates (node-a, node-b,
// node-c), replicas placed on `replica_nodes`.
PlacementResult Result(PlacementResult::Kind kind, std::vector<std::string> replica_nodes) {
  PlacementResult result;
  result.kind = kind;
  result.reason = "the reason";
  for (std::string& node : replica_nodes) {
    result.replicas.push_back({std::move(node), {0}});
  }
  CycleSummary& summary = result.summary;
  summary.nodes_total = 10;
  summary.nodes_filtered = 7;
  summary.nodes_feasible = 3;
  summary.sampled = true;
  summary.rejections = {
      {"GpuFit", PluginCode::kUnschedulable, 3, "node-x: 2 free GPUs, a replica needs 4"},
      {"GpuModel", PluginCode::kUnresolvable, 1, "node-y: no A100"},
  };
  summary.top = {TopCandidate("node-a", 90), TopCandidate("node-b", 80),
                 TopCandidate("node-c", 70)};
  return result;
}

TEST(PlacementExplanationsBuildTest, MapsEachKindToItsOutcome) {
  const struct {
    PlacementResult::Kind kind;
    const char* outcome;
  } cases[] = {
      {PlacementResult::Kind::kPlaced, "PLACED"},
      {PlacementResult::Kind::kRetryLater, "RETRY_LATER"},
      {PlacementResult::Kind::kInfeasible, "INFEASIBLE"},
      {PlacementResult::Kind::kError, "ERROR"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.outcome);
    PlacementResult result;
    result.kind = c.kind;
    EXPECT_EQ(PlacementExplanations::Build("job-1", result, "default")->outcome(), c.outcome);
  }
}

TEST(PlacementExplanationsBuildTest, CopiesTheCycle) {
  // Two replicas: only the first one's node is the chosen candidate, though
  // the second's is a candidate too.
  const std::shared_ptr<const v1::JobExplanation> explanation = PlacementExplanations::Build(
      "job-1", Result(PlacementResult::Kind::kPlaced, {"node-b", "node-a"}), "energy");
  ASSERT_NE(explanation, nullptr);
  EXPECT_THAT(*explanation, EqualsProto(ExplanationFromText(R"pb(
    job_id: "job-1"
    outcome: "PLACED"
    reason: "the reason"
    profile: "energy"
    nodes_total: 10
    nodes_filtered: 7
    nodes_feasible: 3
    sampled: true
    rejections {
      plugin: "GpuFit"
      code: "UNSCHEDULABLE"
      nodes: 3
      example: "node-x: 2 free GPUs, a replica needs 4"
    }
    rejections { plugin: "GpuModel" code: "UNRESOLVABLE" nodes: 1 example: "node-y: no A100" }
    candidates {
      node: "node-a"
      scores { plugin: "LeastAllocated" score: 90 weight: 1 }
      scores { plugin: "EnergyEfficiency" score: 50 weight: 2 }
      total_score: 90
      chosen: false
    }
    candidates {
      node: "node-b"
      scores { plugin: "LeastAllocated" score: 80 weight: 1 }
      scores { plugin: "EnergyEfficiency" score: 50 weight: 2 }
      total_score: 80
      chosen: true
    }
    candidates {
      node: "node-c"
      scores { plugin: "LeastAllocated" score: 70 weight: 1 }
      scores { plugin: "EnergyEfficiency" score: 50 weight: 2 }
      total_score: 70
      chosen: false
    }
    replica_nodes: "node-b"
    replica_nodes: "node-a"
  )pb")));
}

TEST(PlacementExplanationsBuildTest, WithoutReplicasNoCandidateIsChosen) {
  const std::shared_ptr<const v1::JobExplanation> explanation = PlacementExplanations::Build(
      "job-1", Result(PlacementResult::Kind::kRetryLater, {}), "default");
  EXPECT_EQ(explanation->outcome(), "RETRY_LATER");
  ASSERT_THAT(explanation->candidates(), SizeIs(3));
  for (const v1::PlacementCandidate& candidate : explanation->candidates()) {
    EXPECT_FALSE(candidate.chosen()) << candidate.node();
  }
  EXPECT_THAT(explanation->replica_nodes(), IsEmpty());
}

// A job of `shape_gpus` GPUs in `state`.
v1::Job MakeJob(const std::string& id, v1::JobState state, int32_t shape_gpus = 1) {
  v1::Job job;
  job.set_id(id);
  job.set_state(state);
  job.mutable_spec()->mutable_resources()->set_gpus(shape_gpus);
  job.mutable_spec()->mutable_batch_size()->set_default_size(32);
  return job;
}

std::shared_ptr<const v1::JobExplanation> Explanation(const std::string& job_id,
                                                      const std::string& reason) {
  auto explanation = std::make_shared<v1::JobExplanation>();
  explanation->set_job_id(job_id);
  explanation->set_outcome("RETRY_LATER");
  explanation->set_reason(reason);
  return explanation;
}

TEST(PlacementExplanationsTest, AJobNeverExaminedSaysSo) {
  PlacementExplanations explanations;
  const v1::JobExplanation out = explanations.Of(MakeJob("job-1", v1::JOB_STATE_PENDING), kT0);
  EXPECT_EQ(out.job_id(), "job-1");
  EXPECT_THAT(out.note(), HasSubstr("no placement cycle has examined this job"));
  EXPECT_EQ(out.outcome(), "");
}

TEST(PlacementExplanationsTest, AJobIsExplainedByItsRecord) {
  PlacementExplanations explanations;
  explanations.Record("job-1", Explanation("job-1", "own"));
  const v1::JobExplanation out = explanations.Of(MakeJob("job-1", v1::JOB_STATE_RUNNING), kT0);
  EXPECT_EQ(out.job_id(), "job-1");
  EXPECT_EQ(out.reason(), "own");
  EXPECT_EQ(out.note(), "");
}

TEST(PlacementExplanationsTest, APendingJobPrefersItsShapesVerdict) {
  PlacementExplanations explanations;
  const v1::Job pending = MakeJob("job-1", v1::JOB_STATE_PENDING);
  explanations.Record("job-1", Explanation("job-1", "older, own"));
  explanations.ShapeFailed(JobQueue::ShapeOf(pending.spec()),
                           Explanation("job-0", "newer, of the shape"));

  v1::JobExplanation out = explanations.Of(pending, kT0);
  EXPECT_EQ(out.reason(), "newer, of the shape");
  // Under the job's own id, not the one the verdict was built for.
  EXPECT_EQ(out.job_id(), "job-1");

  // A job of another shape, or one that is no longer pending, keeps its own.
  const struct {
    const char* name;
    v1::Job job;
  } others[] = {
      {"other shape", MakeJob("job-1", v1::JOB_STATE_PENDING, /*shape_gpus=*/2)},
      {"running", MakeJob("job-1", v1::JOB_STATE_RUNNING)},
  };
  for (const auto& c : others) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(explanations.Of(c.job, kT0).reason(), "older, own");
  }

  // A new cycle forgets the shape verdicts.
  explanations.CycleStarted();
  out = explanations.Of(pending, kT0);
  EXPECT_EQ(out.reason(), "older, own");
  EXPECT_EQ(out.job_id(), "job-1");
}

TEST(PlacementExplanationsTest, ShapeVerdictExplainsAPendingJobNeverExamined) {
  PlacementExplanations explanations;
  const v1::Job pending = MakeJob("job-9", v1::JOB_STATE_PENDING);
  explanations.ShapeFailed(JobQueue::ShapeOf(pending.spec()), Explanation("job-0", "no room"));
  const v1::JobExplanation out = explanations.Of(pending, kT0);
  EXPECT_EQ(out.reason(), "no room");
  EXPECT_EQ(out.note(), "");

  explanations.CycleStarted();
  EXPECT_THAT(explanations.Of(pending, kT0).note(),
              HasSubstr("no placement cycle has examined this job"));
}

TEST(PlacementExplanationsTest, BackoffNote) {
  const struct {
    const char* name;
    v1::JobState state;
    absl::Duration not_before;  // From kT0.
    std::string note;
  } cases[] = {
      {"pending, in the future", v1::JOB_STATE_PENDING, absl::Seconds(30),
       "waiting out its retry backoff: not placed before 2023-11-14T22:13:50+00:00"},
      {"pending, now", v1::JOB_STATE_PENDING, absl::ZeroDuration(), ""},
      {"pending, in the past", v1::JOB_STATE_PENDING, absl::Seconds(-30), ""},
      {"running, in the future", v1::JOB_STATE_RUNNING, absl::Seconds(30), ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    PlacementExplanations explanations;
    explanations.Record("job-1", Explanation("job-1", "own"));
    v1::Job job = MakeJob("job-1", c.state);
    *job.mutable_not_before() = ToProtoTime(kT0 + c.not_before);
    const v1::JobExplanation out = explanations.Of(job, kT0);
    EXPECT_EQ(out.note(), c.note);
    EXPECT_EQ(out.reason(), "own");
  }
}

TEST(PlacementExplanationsTest, NoBackoffNoteWithoutNotBefore) {
  PlacementExplanations explanations;
  explanations.Record("job-1", Explanation("job-1", "own"));
  EXPECT_EQ(explanations.Of(MakeJob("job-1", v1::JOB_STATE_PENDING), kT0).note(), "");
}

TEST(PlacementExplanationsTest, CapDecision) {
  const struct {
    const char* name;
    std::string job_decision;
    std::vector<double> task_caps_w;
    std::string decision;
  } cases[] = {
      {"the job's", "180 W: the energy brain's choice", {250}, "180 W: the energy brain's choice"},
      {"the last task's default", "", {300, 250}, "250 W: the GPUs' default power limit"},
      {"no GPU", "", {0}, "no GPU: no power cap"},
      {"no tasks", "", {}, ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    PlacementExplanations explanations;
    v1::Job job = MakeJob("job-1", v1::JOB_STATE_RUNNING);
    job.set_cap_decision(c.job_decision);
    for (const double cap_w : c.task_caps_w) job.add_tasks()->set_power_cap_w(cap_w);
    EXPECT_EQ(explanations.Of(job, kT0).cap_decision(), c.decision);
  }
}

TEST(PlacementExplanationsTest, BatchDecision) {
  const struct {
    const char* name;
    std::string job_decision;
    std::string decision;
  } cases[] = {
      {"the job's", "64: the bandit's choice", "64: the bandit's choice"},
      {"the default", "", "32: the job's default batch size"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    PlacementExplanations explanations;
    v1::Job job = MakeJob("job-1", v1::JOB_STATE_RUNNING);
    job.set_batch_decision(c.job_decision);
    EXPECT_EQ(explanations.Of(job, kT0).batch_decision(), c.decision);
  }
}

TEST(PlacementExplanationsTest, OlderFinishedJobsKeepOnlyTheChosenCandidate) {
  PlacementExplanations explanations;
  const std::shared_ptr<const v1::JobExplanation> placed = PlacementExplanations::Build(
      "job-0", Result(PlacementResult::Kind::kPlaced, {"node-b"}), "default");
  // job-0 and job-shared share one explanation, as jobs of one cycle do.
  explanations.Record("job-0", placed);
  explanations.Record("job-shared", placed);
  explanations.Finished("job-0");
  const size_t jobs = PlacementExplanations::kWholeKept + 1;
  for (size_t i = 1; i < jobs; ++i) {
    const std::string id = absl::StrCat("job-", i);
    explanations.Record(id, PlacementExplanations::Build(
                                id, Result(PlacementResult::Kind::kPlaced, {"node-b"}), "default"));
    explanations.Finished(id);
  }

  // The oldest is trimmed to the chosen node's scores.
  const v1::JobExplanation oldest = explanations.Of(MakeJob("job-0", v1::JOB_STATE_SUCCEEDED), kT0);
  ASSERT_THAT(oldest.candidates(), SizeIs(1));
  EXPECT_EQ(oldest.candidates(0).node(), "node-b");
  EXPECT_TRUE(oldest.candidates(0).chosen());
  EXPECT_THAT(oldest.candidates(0).scores(), SizeIs(2));
  EXPECT_THAT(oldest.note(), HasSubstr("an older finished job"));
  // The rest of it is kept.
  EXPECT_EQ(oldest.outcome(), "PLACED");
  EXPECT_THAT(oldest.rejections(), SizeIs(2));
  EXPECT_THAT(oldest.replica_nodes(), ::testing::ElementsAre("node-b"));

  // The newest kWholeKept are whole.
  for (const size_t i : {size_t{1}, jobs - 1}) {
    SCOPED_TRACE(i);
    const v1::JobExplanation whole =
        explanations.Of(MakeJob(absl::StrCat("job-", i), v1::JOB_STATE_SUCCEEDED), kT0);
    EXPECT_THAT(whole.candidates(), SizeIs(3));
    EXPECT_EQ(whole.note(), "");
  }

  // The explanation job-0 shared is not changed under the other job.
  EXPECT_THAT(placed->candidates(), SizeIs(3));
  const v1::JobExplanation shared =
      explanations.Of(MakeJob("job-shared", v1::JOB_STATE_RUNNING), kT0);
  EXPECT_THAT(shared.candidates(), SizeIs(3));
  EXPECT_THAT(shared.note(), Not(HasSubstr("an older finished job")));
}

TEST(PlacementExplanationsTest, FinishingAJobNeverExaminedIsHarmless) {
  PlacementExplanations explanations;
  for (size_t i = 0; i <= PlacementExplanations::kWholeKept; ++i) {
    explanations.Finished(absl::StrCat("job-", i));
  }
  EXPECT_THAT(explanations.Of(MakeJob("job-0", v1::JOB_STATE_SUCCEEDED), kT0).note(),
              HasSubstr("no placement cycle has examined this job"));
}

}  // namespace
}  // namespace joule
