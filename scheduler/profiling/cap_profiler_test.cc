#include "scheduler/profiling/cap_profiler.h"

#include <cmath>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/job.pb.h"
#include "scheduler/profiling/cap_choice.h"
#include "scheduler/profiling/test_gpu_model.h"

namespace joule {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing_model::TestGpuModel;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// What the device does during one simulated second.
struct Rates {
  double throughput = 0;
  double power_w = 0;
};

// The device's behaviour at `cap_w`, `since_change` after the cap was last
// applied (or the task started).
using DeviceFn =
    std::function<Rates(double cap_w, absl::Duration since_change)>;

// The steady-state model.
DeviceFn Steady(TestGpuModel model = TestGpuModel()) {
  return [model](double cap_w, absl::Duration) {
    return Rates{model.Throughput(cap_w), model.PowerW(cap_w)};
  };
}

// The model, except that for 3 s after each cap change (and at start) the
// task crawls at 30% speed while power spikes to the maximum limit: what a
// profiler must not measure.
DeviceFn WithTransients(TestGpuModel model = TestGpuModel()) {
  return [model](double cap_w, absl::Duration since_change) {
    if (since_change < absl::Seconds(3)) {
      return Rates{0.3 * model.Throughput(cap_w), model.max_limit_w};
    }
    return Rates{model.Throughput(cap_w), model.PowerW(cap_w)};
  };
}

struct CapVisit {
  double cap_w;
  absl::Duration at;  // Since kStart.
};

struct DriveOptions {
  int max_seconds = 10000;
  // Report whole work units only (a counter of finished samples).
  bool integer_work = false;
  // Called before each real observation with the last real counters, to
  // inject bad observations.
  std::function<void(CapProfiler&, absl::Time now, double last_work,
                     double last_energy_j)>
      before_observe;
};

// Runs the task on a virtual clock, 1 s per step, applying profiler.cap_w()
// after every observation, until the profiler is done. Returns the caps
// applied, in order, with when each was applied.
std::vector<CapVisit> Drive(CapProfiler& profiler, const DeviceFn& device,
                            const DriveOptions& options = DriveOptions()) {
  absl::Time now = kStart;
  double work = 0;
  double energy_j = 0;
  double reported_work = 0;
  profiler.Observe(now, 0, 0);
  std::vector<CapVisit> visits = {{profiler.cap_w(), absl::ZeroDuration()}};
  absl::Time applied_at = now;
  for (int i = 0; i < options.max_seconds && !profiler.done(); ++i) {
    const Rates rates = device(visits.back().cap_w, now - applied_at);
    const double last_work = reported_work;
    const double last_energy_j = energy_j;
    now += absl::Seconds(1);
    work += rates.throughput;
    energy_j += rates.power_w;
    reported_work = options.integer_work ? std::floor(work) : work;
    if (options.before_observe) {
      options.before_observe(profiler, now, last_work, last_energy_j);
    }
    profiler.Observe(now, reported_work, energy_j);
    if (profiler.cap_w() != visits.back().cap_w) {
      visits.push_back({profiler.cap_w(), now - kStart});
      applied_at = now;
    }
  }
  return visits;
}

std::vector<double> Caps(const std::vector<CapVisit>& visits) {
  std::vector<double> caps;
  for (const CapVisit& v : visits) caps.push_back(v.cap_w);
  return caps;
}

// Each measured point within 1% of the model at its cap.
void ExpectMatchesModel(const std::vector<CapPoint>& profile,
                        const TestGpuModel& model = TestGpuModel()) {
  for (const CapPoint& p : profile) {
    SCOPED_TRACE(absl::StrCat(p.cap_w, " W"));
    EXPECT_NEAR(p.throughput, model.Throughput(p.cap_w),
                0.01 * model.Throughput(p.cap_w));
    EXPECT_NEAR(p.power_w, model.PowerW(p.cap_w), 0.01 * model.PowerW(p.cap_w));
  }
}

ProfilerOptions V100Options() {
  ProfilerOptions o;
  o.min_cap_w = 100;
  o.max_cap_w = 250;
  o.step_w = 25;
  o.warmup = absl::Seconds(5);
  o.window = absl::Seconds(10);
  o.min_work_per_window = 1;
  o.max_window = absl::Seconds(60);
  o.max_explore_slowdown = kInf;
  return o;
}

v1::Objective Slowdown(double s) {
  v1::Objective o;
  o.set_max_slowdown(s);
  return o;
}

TEST(CapProfilerTest, StartsAtMaxCap) {
  CapProfiler profiler(V100Options());
  EXPECT_EQ(profiler.cap_w(), 250);
  EXPECT_FALSE(profiler.done());
  EXPECT_THAT(profiler.profile(), IsEmpty());
}

TEST(CapProfilerTest, VisitsEveryCapDiscardsWarmupAndMatchesModel) {
  CapProfiler profiler(V100Options());
  const std::vector<CapVisit> visits = Drive(profiler, WithTransients());
  ASSERT_TRUE(profiler.done());
  EXPECT_TRUE(profiler.status().ok()) << profiler.status();
  // Back to the maximum once done, until the caller applies its choice.
  EXPECT_THAT(Caps(visits), ElementsAreArray<double>(
                                {250, 225, 200, 175, 150, 125, 100, 250}));
  // Warmup 5 s + window 10 s at each cap.
  for (size_t i = 0; i < visits.size(); ++i) {
    EXPECT_EQ(visits[i].at, absl::Seconds(15 * i)) << "visit " << i;
  }
  ASSERT_EQ(profiler.profile().size(), 7);
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(profiler.profile()[i].cap_w, 250 - 25 * i);
  }
  ExpectMatchesModel(profiler.profile());
  EXPECT_EQ(profiler.end_reason(), "profiled 7 caps from 250 W to 100 W");
  EXPECT_EQ(profiler.ignored_observations(), 0);
}

TEST(CapProfilerTest, WithoutWarmupTheTransientsLeakIn) {
  // The counterpart of the test above: the transients are large enough that
  // a profiler measuring through them would be far off.
  ProfilerOptions options = V100Options();
  options.warmup = absl::ZeroDuration();
  CapProfiler profiler(options);
  Drive(profiler, WithTransients());
  ASSERT_FALSE(profiler.profile().empty());
  const CapPoint& first = profiler.profile().front();
  EXPECT_LT(first.throughput, 0.9 * TestGpuModel().Throughput(250));
}

TEST(CapProfilerTest, ChoiceFromMeasuredProfileMatchesExactModel) {
  CapProfiler profiler(V100Options());
  Drive(profiler, WithTransients());
  ASSERT_TRUE(profiler.done());
  const std::vector<CapPoint> exact = TestGpuModel().Profile(100, 250, 25);
  for (double s : {1.0, 1.1, 1.3}) {
    SCOPED_TRACE(absl::StrCat("max_slowdown ", s));
    absl::StatusOr<CapDecision> measured =
        ChooseCap(profiler.profile(), Slowdown(s), 250, 1e6, kStart);
    absl::StatusOr<CapDecision> modelled =
        ChooseCap(exact, Slowdown(s), 250, 1e6, kStart);
    ASSERT_TRUE(measured.ok()) << measured.status();
    ASSERT_TRUE(modelled.ok()) << modelled.status();
    EXPECT_EQ(measured->cap_w, modelled->cap_w);
  }
  absl::StatusOr<CapDecision> decision =
      ChooseCap(profiler.profile(), Slowdown(1.1), 250, 1e6, kStart);
  ASSERT_TRUE(decision.ok());
  EXPECT_EQ(decision->cap_w, 175);
}

struct VisitCase {
  std::string name;
  ProfilerOptions options;
  std::vector<double> expected_caps;  // Measured, in order.
};

void PrintTo(const VisitCase& c, std::ostream* os) { *os << c.name; }

class CapProfilerVisitTest : public ::testing::TestWithParam<VisitCase> {};

TEST_P(CapProfilerVisitTest, VisitsExpectedCaps) {
  const VisitCase& c = GetParam();
  CapProfiler profiler(c.options);
  std::vector<double> visited = Caps(Drive(profiler, WithTransients()));
  ASSERT_TRUE(profiler.done());
  EXPECT_TRUE(profiler.status().ok()) << profiler.status();
  ASSERT_FALSE(visited.empty());
  // The return to max_cap_w once done (no change when only max was visited).
  if (visited.size() > 1) visited.pop_back();
  EXPECT_THAT(visited, ElementsAreArray(c.expected_caps));
  std::vector<double> measured;
  for (const CapPoint& p : profiler.profile()) measured.push_back(p.cap_w);
  EXPECT_THAT(measured, ElementsAreArray(c.expected_caps));
  ExpectMatchesModel(profiler.profile());
}

ProfilerOptions With(std::function<void(ProfilerOptions&)> edit) {
  ProfilerOptions o = V100Options();
  edit(o);
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    Sequences, CapProfilerVisitTest,
    ::testing::ValuesIn(std::vector<VisitCase>{
        {"Step25", V100Options(), {250, 225, 200, 175, 150, 125, 100}},
        {"Step40EndsAtMin",
         With([](ProfilerOptions& o) { o.step_w = 40; }),
         {250, 210, 170, 130, 100}},
        {"Step50",
         With([](ProfilerOptions& o) { o.step_w = 50; }),
         {250, 200, 150, 100}},
        {"StepLargerThanRange",
         With([](ProfilerOptions& o) { o.step_w = 500; }),
         {250, 100}},
        {"SingleCap",
         With([](ProfilerOptions& o) { o.min_cap_w = 250; }),
         {250}},
        // Throughput relative to 250 W: 125 W 0.841, 100 W 0.778.
        {"EarlyExitBelowHalfNeverTriggers",
         With([](ProfilerOptions& o) { o.max_explore_slowdown = 2.0; }),
         {250, 225, 200, 175, 150, 125, 100}},
        {"EarlyExitAt1_15StopsAfter125",
         With([](ProfilerOptions& o) { o.max_explore_slowdown = 1.15; }),
         {250, 225, 200, 175, 150, 125}},
        {"EarlyExitAt1_0StopsAfterFirstSlowerCap",
         With([](ProfilerOptions& o) { o.max_explore_slowdown = 1.0; }),
         {250, 225}},
    }),
    [](const ::testing::TestParamInfo<VisitCase>& info) {
      return info.param.name;
    });

TEST(CapProfilerTest, EarlyExitSaysWhy) {
  CapProfiler profiler(
      With([](ProfilerOptions& o) { o.max_explore_slowdown = 1.15; }));
  Drive(profiler, Steady());
  EXPECT_EQ(profiler.end_reason(),
            "stopped early at 125 W: throughput 84% of 250 W's, below the "
            "1/1.15 exploration limit");
}

TEST(CapProfilerTest, WindowWithoutProgressExtends) {
  // The task stalls (loading data, checkpointing) from 5 s to 30 s: the
  // first window, which would end at 15 s, extends until 5000 samples are
  // done (5 s of progress at 1000 samples/s), at 35 s.
  ProfilerOptions options = V100Options();
  options.min_work_per_window = 5000;
  CapProfiler profiler(options);
  absl::Duration elapsed = absl::ZeroDuration();
  const DeviceFn steady = Steady();
  const std::vector<CapVisit> visits =
      Drive(profiler, [&](double cap_w, absl::Duration since_change) {
        const bool stalled =
            elapsed >= absl::Seconds(5) && elapsed < absl::Seconds(30);
        elapsed += absl::Seconds(1);
        if (stalled) return Rates{0, 35};
        return steady(cap_w, since_change);
      });
  ASSERT_GE(visits.size(), 2);
  EXPECT_EQ(visits[1].cap_w, 225);
  EXPECT_EQ(visits[1].at, absl::Seconds(35));
  // The point is the window's average: 5000 samples in 30 s.
  ASSERT_FALSE(profiler.profile().empty());
  EXPECT_DOUBLE_EQ(profiler.profile()[0].throughput, 5000.0 / 30);
  EXPECT_DOUBLE_EQ(profiler.profile()[0].power_w, (25 * 35 + 5 * 228.5) / 30);
  // Later caps, without stalls, are measured as usual.
  ASSERT_EQ(profiler.profile().size(), 7);
  ExpectMatchesModel(std::vector<CapPoint>(profiler.profile().begin() + 1,
                                           profiler.profile().end()));
}

TEST(CapProfilerTest, StartUpWithoutWorkIsNotTheFirstCapsThroughput) {
  // The task spends its first 20 s starting up (an interpreter importing its
  // libraries) at idle power, then works steadily: the first cap's warmup
  // begins with its first work, so its point is the steady rate, not one
  // diluted by the start-up.
  CapProfiler profiler(V100Options());
  absl::Duration elapsed = absl::ZeroDuration();
  const DeviceFn steady = Steady();
  const std::vector<CapVisit> visits =
      Drive(profiler, [&](double cap_w, absl::Duration since_change) {
        const bool starting = elapsed < absl::Seconds(20);
        elapsed += absl::Seconds(1);
        if (starting) return Rates{0, 35};
        return steady(cap_w, since_change);
      });
  ASSERT_TRUE(profiler.done());
  EXPECT_TRUE(profiler.status().ok()) << profiler.status();
  ASSERT_GE(visits.size(), 2);
  // 20 s of start-up (the first work is seen at 20 s), 5 s warmup, 10 s
  // window.
  EXPECT_EQ(visits[1].at, absl::Seconds(35));
  ASSERT_EQ(profiler.profile().size(), 7);
  ExpectMatchesModel(profiler.profile());
}

TEST(CapProfilerTest, AStartUpThatNeverEndsAbandonsProfiling) {
  // No work at all: profiling fails within warmup + max_window.
  CapProfiler profiler(V100Options());
  const std::vector<CapVisit> visits =
      Drive(profiler, [](double, absl::Duration) { return Rates{0, 35}; });
  ASSERT_TRUE(profiler.done());
  EXPECT_EQ(profiler.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(profiler.status().message(), HasSubstr("no progress at 250 W in 1m5s"));
}

TEST(CapProfilerTest, SlowTaskWindowExtendsUntilMinWork) {
  // 3 samples/s uncapped, counted in whole samples: 10 s windows would see
  // ~30 samples (a 3% quantization error); at least 300 are required.
  TestGpuModel model;
  model.base_throughput = 3;
  ProfilerOptions options = V100Options();
  options.min_work_per_window = 300;
  options.max_window = absl::Seconds(300);
  CapProfiler profiler(options);
  DriveOptions drive;
  drive.integer_work = true;
  const std::vector<CapVisit> visits =
      Drive(profiler, WithTransients(model), drive);
  ASSERT_TRUE(profiler.done());
  EXPECT_TRUE(profiler.status().ok()) << profiler.status();
  EXPECT_THAT(Caps(visits), ElementsAreArray<double>(
                                {250, 225, 200, 175, 150, 125, 100, 250}));
  for (size_t i = 1; i < visits.size(); ++i) {
    // Warmup 5 s + at least 100 s to count 300 samples at <= 3/s.
    EXPECT_GE(visits[i].at - visits[i - 1].at, absl::Seconds(105))
        << "visit " << i;
  }
  ExpectMatchesModel(profiler.profile(), model);
}

TEST(CapProfilerTest, NoProgressAtMaxCapAbandonsProfiling) {
  CapProfiler profiler(V100Options());
  const std::vector<CapVisit> visits =
      Drive(profiler, [](double, absl::Duration) {
        return Rates{0, 35};
      });
  ASSERT_TRUE(profiler.done());
  EXPECT_EQ(profiler.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(profiler.status().message(), HasSubstr("no progress at 250 W"));
  EXPECT_THAT(profiler.profile(), IsEmpty());
  EXPECT_EQ(profiler.cap_w(), 250);
  EXPECT_THAT(Caps(visits), ElementsAreArray<double>({250}));
}

TEST(CapProfilerTest, NoProgressAtLowerCapEndsProfiling) {
  // A task that cannot run at all below 150 W.
  CapProfiler profiler(V100Options());
  const DeviceFn steady = Steady();
  Drive(profiler, [&](double cap_w, absl::Duration since_change) {
    if (cap_w < 150) return Rates{0, cap_w};
    return steady(cap_w, since_change);
  });
  ASSERT_TRUE(profiler.done());
  EXPECT_TRUE(profiler.status().ok()) << profiler.status();
  ASSERT_EQ(profiler.profile().size(), 5);
  EXPECT_EQ(profiler.profile().back().cap_w, 150);
  ExpectMatchesModel(profiler.profile());
  EXPECT_THAT(profiler.end_reason(),
              HasSubstr("stopped at 125 W: no progress"));
}

TEST(CapProfilerTest, StuckEnergyCounterAbandonsProfiling) {
  CapProfiler profiler(V100Options());
  const TestGpuModel model;
  Drive(profiler, [&](double cap_w, absl::Duration) {
    return Rates{model.Throughput(cap_w), 0};
  });
  ASSERT_TRUE(profiler.done());
  EXPECT_EQ(profiler.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(profiler.status().message(), HasSubstr("energy counter"));
}

TEST(CapProfilerTest, BackwardsRepeatedAndNonFiniteObservationsAreIgnored) {
  CapProfiler profiler(V100Options());
  DriveOptions drive;
  int injected = 0;
  drive.before_observe = [&](CapProfiler& p, absl::Time now, double last_work,
                             double last_energy_j) {
    // Work and energy counters below the last accepted ones.
    p.Observe(now, last_work - 1, last_energy_j + 1e6);
    p.Observe(now, last_work + 1e6, last_energy_j - 1);
    // A time before the last accepted one, with wild counters.
    p.Observe(now - absl::Seconds(2), last_work + 1e6, last_energy_j + 1e6);
    // Non-finite counters.
    p.Observe(now, kNaN, last_energy_j + 1);
    p.Observe(now, last_work + 1, kInf);
    injected += 5;
  };
  const std::vector<CapVisit> visits = Drive(profiler, WithTransients(), drive);
  ASSERT_TRUE(profiler.done());
  EXPECT_EQ(profiler.ignored_observations(), injected);
  EXPECT_THAT(Caps(visits), ElementsAreArray<double>(
                                {250, 225, 200, 175, 150, 125, 100, 250}));
  ExpectMatchesModel(profiler.profile());
}

TEST(CapProfilerTest, RepeatedTimeIsIgnoredAndDoneIgnoresEverything) {
  CapProfiler profiler(With([](ProfilerOptions& o) { o.min_cap_w = 250; }));
  profiler.Observe(kStart, 0, 0);
  profiler.Observe(kStart, 10, 10);
  EXPECT_EQ(profiler.ignored_observations(), 1);
  profiler.Observe(kStart + absl::Seconds(5), 5000, 1000);    // Warmup over.
  profiler.Observe(kStart + absl::Seconds(15), 15000, 3000);  // Window over.
  ASSERT_TRUE(profiler.done());
  ASSERT_EQ(profiler.profile().size(), 1);
  EXPECT_DOUBLE_EQ(profiler.profile()[0].throughput, 1000);
  EXPECT_DOUBLE_EQ(profiler.profile()[0].power_w, 200);
  profiler.Observe(kStart + absl::Seconds(16), 1, 1);
  EXPECT_EQ(profiler.ignored_observations(), 1);
  EXPECT_EQ(profiler.profile().size(), 1);
}

struct BadOptionsCase {
  std::string name;
  ProfilerOptions options;
};

void PrintTo(const BadOptionsCase& c, std::ostream* os) { *os << c.name; }

class CapProfilerBadOptionsTest
    : public ::testing::TestWithParam<BadOptionsCase> {};

TEST_P(CapProfilerBadOptionsTest, CreateIsInvalidArgument) {
  absl::StatusOr<CapProfiler> profiler =
      CapProfiler::Create(GetParam().options);
  EXPECT_EQ(profiler.status().code(), absl::StatusCode::kInvalidArgument)
      << profiler.status();
}

INSTANTIATE_TEST_SUITE_P(
    BadOptions, CapProfilerBadOptionsTest,
    ::testing::ValuesIn(std::vector<BadOptionsCase>{
        {"ZeroMinCap", With([](ProfilerOptions& o) { o.min_cap_w = 0; })},
        {"MinAboveMax", With([](ProfilerOptions& o) { o.min_cap_w = 300; })},
        {"InfiniteMax", With([](ProfilerOptions& o) { o.max_cap_w = kInf; })},
        {"NaNMin", With([](ProfilerOptions& o) { o.min_cap_w = kNaN; })},
        {"ZeroStep", With([](ProfilerOptions& o) { o.step_w = 0; })},
        {"NegativeStep", With([](ProfilerOptions& o) { o.step_w = -25; })},
        {"NaNStep", With([](ProfilerOptions& o) { o.step_w = kNaN; })},
        {"TooManyCaps", With([](ProfilerOptions& o) { o.step_w = 0.01; })},
        {"NegativeWarmup",
         With([](ProfilerOptions& o) { o.warmup = absl::Seconds(-1); })},
        {"InfiniteWarmup",
         With([](ProfilerOptions& o) { o.warmup = absl::InfiniteDuration(); })},
        {"ZeroWindow",
         With([](ProfilerOptions& o) { o.window = absl::ZeroDuration(); })},
        {"MaxWindowBelowWindow",
         With([](ProfilerOptions& o) { o.max_window = absl::Seconds(5); })},
        {"InfiniteMaxWindow", With([](ProfilerOptions& o) {
           o.max_window = absl::InfiniteDuration();
         })},
        {"NegativeMinWork",
         With([](ProfilerOptions& o) { o.min_work_per_window = -1; })},
        {"NaNMinWork",
         With([](ProfilerOptions& o) { o.min_work_per_window = kNaN; })},
        {"ExploreBelowOne",
         With([](ProfilerOptions& o) { o.max_explore_slowdown = 0.5; })},
        {"ExploreNaN",
         With([](ProfilerOptions& o) { o.max_explore_slowdown = kNaN; })},
    }),
    [](const ::testing::TestParamInfo<BadOptionsCase>& info) {
      return info.param.name;
    });

TEST(CapProfilerTest, CreateAcceptsValidOptions) {
  absl::StatusOr<CapProfiler> profiler = CapProfiler::Create(V100Options());
  ASSERT_TRUE(profiler.ok()) << profiler.status();
  EXPECT_EQ(profiler->cap_w(), 250);
  EXPECT_TRUE(CapProfiler::Create(ProfilerOptions()).ok());
}

TEST(ProfileSerializationTest, RoundTripIsExact) {
  std::vector<CapPoint> profile = TestGpuModel().Profile(100, 250, 25);
  profile.push_back({1.0 / 3, 1e-300, 123456789.123456789});
  profile.push_back({0.1, 7e300, 1e-7});
  absl::StatusOr<std::vector<CapPoint>> parsed =
      ParseProfile(SerializeProfile(profile));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), profile.size());
  for (size_t i = 0; i < profile.size(); ++i) {
    EXPECT_EQ((*parsed)[i].cap_w, profile[i].cap_w) << i;
    EXPECT_EQ((*parsed)[i].throughput, profile[i].throughput) << i;
    EXPECT_EQ((*parsed)[i].power_w, profile[i].power_w) << i;
  }
}

TEST(ProfileSerializationTest, FormatIsReadable) {
  EXPECT_EQ(SerializeProfile({{250, 1000, 228.5}, {150, 890.5, 150}}),
            "joule-cap-profile v1\n250 1000 228.5\n150 890.5 150\n");
}

TEST(ProfileSerializationTest, EmptyProfileRoundTrips) {
  absl::StatusOr<std::vector<CapPoint>> parsed =
      ParseProfile(SerializeProfile({}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(*parsed, IsEmpty());
}

TEST(ProfileSerializationTest, StoredProfileGivesTheSameChoice) {
  // A second run of the job class skips profiling: the stored profile must
  // choose what the measured one did.
  CapProfiler profiler(V100Options());
  Drive(profiler, WithTransients());
  absl::StatusOr<std::vector<CapPoint>> stored =
      ParseProfile(SerializeProfile(profiler.profile()));
  ASSERT_TRUE(stored.ok()) << stored.status();
  absl::StatusOr<CapDecision> first =
      ChooseCap(profiler.profile(), Slowdown(1.1), 250, 1e6, kStart);
  absl::StatusOr<CapDecision> second =
      ChooseCap(*stored, Slowdown(1.1), 250, 1e6, kStart);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->cap_w, second->cap_w);
  EXPECT_EQ(first->predicted_energy_j, second->predicted_energy_j);
  EXPECT_EQ(first->reason, second->reason);
}

class ProfileGarbageTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ProfileGarbageTest, IsDataLoss) {
  absl::StatusOr<std::vector<CapPoint>> parsed = ParseProfile(GetParam());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss)
      << "input: \"" << GetParam() << "\" status: " << parsed.status();
}

const char kHeader[] = "joule-cap-profile v1\n";

INSTANTIATE_TEST_SUITE_P(
    Garbage, ProfileGarbageTest,
    ::testing::Values("", "\n", "hello", std::string("\0\xff\x01", 3),
                      "joule-cap-profile v1",  // No final newline.
                      "joule-cap-profile v2\n", "JOULE-CAP-PROFILE V1\n",
                      " joule-cap-profile v1\n",
                      "250 1000 228.5\n",                       // No header.
                      absl::StrCat(kHeader, "250 1000 228.5"),  // Truncated.
                      absl::StrCat(kHeader, "250 1000\n"),
                      absl::StrCat(kHeader, "250 1000 228.5 1\n"),
                      absl::StrCat(kHeader, "250  1000 228.5\n"),
                      absl::StrCat(kHeader, " 250 1000 228.5\n"),
                      absl::StrCat(kHeader, "250 1000 228.5 \n"),
                      absl::StrCat(kHeader, "250\t1000\t228.5\n"),
                      absl::StrCat(kHeader, "250 1000 228.5\r\n"),
                      absl::StrCat(kHeader, "abc 1000 228.5\n"),
                      absl::StrCat(kHeader, "250 1000 228.5x\n"),
                      absl::StrCat(kHeader, "250 1e5e5 228.5\n"),
                      absl::StrCat(kHeader, "250 nan 228.5\n"),
                      absl::StrCat(kHeader, "250 inf 228.5\n"),
                      absl::StrCat(kHeader, "250 1e999 228.5\n"),
                      absl::StrCat(kHeader, "250 -1000 228.5\n"),
                      absl::StrCat(kHeader, "250 0 228.5\n"),
                      absl::StrCat(kHeader, "0 1000 228.5\n"),
                      absl::StrCat(kHeader, "250 1000 0\n"),
                      absl::StrCat(kHeader, "250 1000 228.5\n250 900 200\n"),
                      absl::StrCat(kHeader, "\n"),
                      absl::StrCat(kHeader, "250 1000 228.5\n\n")));

}  // namespace
}  // namespace joule
