#include "scheduler/profiling/cap_choice.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/job.pb.h"
#include "scheduler/profiling/test_gpu_model.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing_model::TestGpuModel;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);
constexpr double kPMaxW = 250;
// 1000 s at the fastest cap (1000 samples/s).
constexpr double kRemainingWork = 1e6;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

v1::Objective Default() { return v1::Objective(); }
v1::Objective Slowdown(double s) {
  v1::Objective o;
  o.set_max_slowdown(s);
  return o;
}
v1::Objective Eta(double eta) {
  v1::Objective o;
  o.set_energy_time_weight(eta);
  return o;
}
v1::Objective DeadlineIn(absl::Duration left) {
  const absl::Time deadline = kNow + left;
  v1::Objective o;
  o.mutable_deadline()->set_seconds(absl::ToUnixSeconds(deadline));
  o.mutable_deadline()->set_nanos(static_cast<int32_t>(
      (deadline - absl::FromUnixSeconds(absl::ToUnixSeconds(deadline))) /
      absl::Nanoseconds(1)));
  return o;
}

// The V100 model at 100, 125, ..., 250 W. Per the model (samples/s; J per
// sample; time relative to 250 W):
//   100 W: 778.2, 0.1285, 1.285x    125 W: 841.1, 0.1486, 1.189x
//   150 W: 890.4, 0.1685, 1.123x    175 W: 931.1, 0.1880, 1.074x
//   200 W: 965.8, 0.2071, 1.036x    225 W: 996.0, 0.2259, 1.004x
//   250 W: 1000,  0.2285, 1.000x    (draws 228.5 W, its demand)
std::vector<CapPoint> V100Profile() {
  return TestGpuModel().Profile(100, 250, 25);
}

struct ChoiceCase {
  std::string name;
  v1::Objective objective;
  double expected_cap_w;
  bool expected_met = true;
};

void PrintTo(const ChoiceCase& c, std::ostream* os) { *os << c.name; }

class ChooseCapTableTest : public ::testing::TestWithParam<ChoiceCase> {};

TEST_P(ChooseCapTableTest, ChoosesExpectedCapInAnyProfileOrder) {
  const ChoiceCase& c = GetParam();
  std::vector<CapPoint> profile = V100Profile();
  for (bool reversed : {false, true}) {
    if (reversed) std::reverse(profile.begin(), profile.end());
    SCOPED_TRACE(reversed ? "profile low cap first" : "profile high cap first");
    absl::StatusOr<CapDecision> decision =
        ChooseCap(profile, c.objective, kPMaxW, kRemainingWork, kNow);
    ASSERT_TRUE(decision.ok()) << decision.status();
    EXPECT_EQ(decision->cap_w, c.expected_cap_w) << decision->reason;
    EXPECT_EQ(decision->objective_met, c.expected_met) << decision->reason;
    const CapPoint p = TestGpuModel().Point(c.expected_cap_w);
    EXPECT_DOUBLE_EQ(decision->predicted_seconds,
                     kRemainingWork / p.throughput);
    EXPECT_DOUBLE_EQ(decision->predicted_energy_j,
                     kRemainingWork * p.power_w / p.throughput);
    EXPECT_THAT(decision->reason,
                HasSubstr(absl::StrFormat("%g W", c.expected_cap_w)));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Objectives, ChooseCapTableTest,
    ::testing::ValuesIn(std::vector<ChoiceCase>{
        // max_slowdown: minimum energy with t <= s * T(250 W).
        {"Slowdown1_0", Slowdown(1.0), 250},
        {"Slowdown1_1", Slowdown(1.1), 175},
        {"Slowdown1_18", Slowdown(1.18), 150},  // 125 W is 1.189x.
        {"Slowdown1_19", Slowdown(1.19), 125},
        {"Slowdown1_3", Slowdown(1.3), 100},
        {"Slowdown10", Slowdown(10), 100},
        // No goal: the least energy, as eta = 1.
        {"DefaultIsLeastEnergy", Default(), 100},
        // Zeus cost eta*e + (1-eta)*250 W*t per sample (eta = 0: time only;
        // eta = 1: energy only; eta = 0.5: 125 W, 0.2229 vs 0.2246 at
        // 150 W and 0.2249 at 100 W).
        {"Eta0", Eta(0), 250},
        {"Eta0_5", Eta(0.5), 125},
        {"Eta1", Eta(1), 100},
        // Deadlines for 1e6 samples: 250 W needs 1000 s, 175 W 1074 s,
        // 100 W 1285 s.
        {"DeadlineMetBy175AndUp", DeadlineIn(absl::Seconds(1100)), 175},
        {"DeadlineMetByAll", DeadlineIn(absl::Seconds(1300)), 100},
        {"DeadlineExactlyAtFastest", DeadlineIn(absl::Seconds(1000)), 250},
        {"DeadlineMetByNone", DeadlineIn(absl::Seconds(900)), 250, false},
        {"DeadlinePassed", DeadlineIn(absl::Seconds(-60)), 250, false},
    }),
    [](const ::testing::TestParamInfo<ChoiceCase>& info) {
      return info.param.name;
    });

TEST(ChooseCapTest, SlowdownReasonComparesWithFastest) {
  absl::StatusOr<CapDecision> decision =
      ChooseCap(V100Profile(), Slowdown(1.1), kPMaxW, kRemainingWork, kNow);
  ASSERT_TRUE(decision.ok()) << decision.status();
  EXPECT_EQ(decision->reason,
            "175 W: 18% less energy per sample than 250 W at 1.07x the time "
            "(limit 1.10x)");
}

TEST(ChooseCapTest, ZeusReasonNamesTheCost) {
  absl::StatusOr<CapDecision> decision =
      ChooseCap(V100Profile(), Eta(0.5), kPMaxW, kRemainingWork, kNow);
  ASSERT_TRUE(decision.ok()) << decision.status();
  EXPECT_EQ(decision->reason,
            "125 W: lowest Zeus cost 0.50*E + 0.50*250 W*T; 35% less energy "
            "per sample than 250 W at 1.19x the time");
}

TEST(ChooseCapTest, MissedDeadlineSaysByHowMuch) {
  absl::StatusOr<CapDecision> decision =
      ChooseCap(V100Profile(), DeadlineIn(absl::Seconds(900)), kPMaxW,
                kRemainingWork, kNow);
  ASSERT_TRUE(decision.ok()) << decision.status();
  EXPECT_FALSE(decision->objective_met);
  EXPECT_EQ(decision->reason,
            "250 W (fastest): misses the deadline by 1m40s even at full speed "
            "(needs 16m40s, 15m left)");
}

TEST(ChooseCapTest, MetDeadlineSaysHowMuchTimeItNeeds) {
  absl::StatusOr<CapDecision> decision =
      ChooseCap(V100Profile(), DeadlineIn(absl::Seconds(1100)), kPMaxW,
                kRemainingWork, kNow);
  ASSERT_TRUE(decision.ok()) << decision.status();
  EXPECT_TRUE(decision->objective_met);
  // 1e6 / 931.06 samples/s = 1074.04 s, shown rounded up.
  EXPECT_THAT(decision->reason, HasSubstr("needs 17m55s of 18m20s left"));
}

TEST(ChooseCapTest, NoRemainingWorkMeetsAnyFutureDeadlineAtMinimumEnergy) {
  absl::StatusOr<CapDecision> decision =
      ChooseCap(V100Profile(), DeadlineIn(absl::Seconds(1)), kPMaxW, 0, kNow);
  ASSERT_TRUE(decision.ok()) << decision.status();
  EXPECT_EQ(decision->cap_w, 100);
  EXPECT_TRUE(decision->objective_met);
  EXPECT_EQ(decision->predicted_energy_j, 0);
  EXPECT_EQ(decision->predicted_seconds, 0);
}

// The node's static power is held for as long as the task runs: counting
// it moves the least-energy cap towards the faster caps.
TEST(ChooseCapTest, StaticPowerMakesSlowCapsCostMore) {
  absl::StatusOr<CapDecision> gpu_only =
      ChooseCap(V100Profile(), Eta(1), kPMaxW, kRemainingWork, kNow, 0);
  ASSERT_TRUE(gpu_only.ok()) << gpu_only.status();
  EXPECT_EQ(gpu_only->cap_w, 100);
  EXPECT_THAT(gpu_only->reason, Not(HasSubstr("static")));
  // 1 kW of static power: 250 W costs 1.2285 J per sample in all, 100 W
  // 1100 / 778.2 = 1.413.
  absl::StatusOr<CapDecision> with_static =
      ChooseCap(V100Profile(), Eta(1), kPMaxW, kRemainingWork, kNow, 1000);
  ASSERT_TRUE(with_static.ok()) << with_static.status();
  EXPECT_EQ(with_static->cap_w, 250);
  EXPECT_NEAR(with_static->predicted_energy_j, kRemainingWork * 1228.5 / 1000, 1e-6 * kRemainingWork);
  EXPECT_THAT(with_static->reason, HasSubstr("1000 W of node static power"));
  // In between, the optimum is in between; a slowdown limit still bounds it.
  absl::StatusOr<CapDecision> some = ChooseCap(V100Profile(), Eta(1), kPMaxW, kRemainingWork, kNow, 300);
  ASSERT_TRUE(some.ok());
  EXPECT_GT(some->cap_w, 100);
  EXPECT_LT(some->cap_w, 250);
  absl::StatusOr<CapDecision> bounded =
      ChooseCap(V100Profile(), Slowdown(1.05), kPMaxW, kRemainingWork, kNow, 300);
  ASSERT_TRUE(bounded.ok());
  EXPECT_GE(bounded->cap_w, 200);
  for (double bad : {-1.0, kNaN, kInf}) {
    EXPECT_TRUE(absl::IsInvalidArgument(
        ChooseCap(V100Profile(), Eta(1), kPMaxW, kRemainingWork, kNow, bad).status()))
        << bad;
  }
}

TEST(ChooseCapTest, SinglePointIsChosen) {
  absl::StatusOr<CapDecision> decision =
      ChooseCap({TestGpuModel().Point(150)}, Default(), kPMaxW, 10, kNow);
  ASSERT_TRUE(decision.ok()) << decision.status();
  EXPECT_EQ(decision->cap_w, 150);
  EXPECT_EQ(decision->reason, "150 W: least energy per sample; the fastest cap");
}

// Equal costs go to the higher (faster) cap, whatever the profile order.
struct TieCase {
  std::string name;
  std::vector<CapPoint> profile;
  v1::Objective objective;
  double expected_cap_w;
};

void PrintTo(const TieCase& c, std::ostream* os) { *os << c.name; }

class ChooseCapTieTest : public ::testing::TestWithParam<TieCase> {};

TEST_P(ChooseCapTieTest, HigherCapWins) {
  const TieCase& c = GetParam();
  std::vector<CapPoint> profile = c.profile;
  std::sort(
      profile.begin(), profile.end(),
      [](const CapPoint& a, const CapPoint& b) { return a.cap_w < b.cap_w; });
  do {
    absl::StatusOr<CapDecision> decision =
        ChooseCap(profile, c.objective, kPMaxW, kRemainingWork, kNow);
    ASSERT_TRUE(decision.ok()) << decision.status();
    EXPECT_EQ(decision->cap_w, c.expected_cap_w) << decision->reason;
  } while (std::next_permutation(
      profile.begin(), profile.end(),
      [](const CapPoint& a, const CapPoint& b) { return a.cap_w < b.cap_w; }));
}

// Above its 228.5 W demand the model GPU behaves identically at 240 and 250 W.
std::vector<CapPoint> SaturatedProfile() {
  const TestGpuModel model;
  return {model.Point(200), model.Point(240), model.Point(250)};
}
// 0.2 J per sample at both 200 W and 150 W; 150 W is 1.25x slower.
std::vector<CapPoint> EqualEnergyProfile() {
  return {{250, 1000, 250}, {200, 500, 100}, {150, 400, 80}};
}

INSTANTIATE_TEST_SUITE_P(
    Ties, ChooseCapTieTest,
    ::testing::ValuesIn(std::vector<TieCase>{
        {"SlowdownSaturated", SaturatedProfile(), Slowdown(1.0), 250},
        {"EtaZeroSaturated", SaturatedProfile(), Eta(0), 250},
        {"DeadlineSaturated", SaturatedProfile(),
         DeadlineIn(absl::Seconds(1000)), 250},
        {"SlowdownEqualEnergy", EqualEnergyProfile(), Slowdown(3), 200},
        {"EtaOneEqualEnergy", EqualEnergyProfile(), Eta(1), 200},
        {"DeadlineEqualEnergy", EqualEnergyProfile(),
         DeadlineIn(absl::Seconds(5000)), 200},
    }),
    [](const ::testing::TestParamInfo<TieCase>& info) {
      return info.param.name;
    });

struct BadInputCase {
  std::string name;
  std::vector<CapPoint> profile;
  v1::Objective objective;
  double p_max_w = kPMaxW;
  double remaining_work = kRemainingWork;
};

void PrintTo(const BadInputCase& c, std::ostream* os) { *os << c.name; }

class ChooseCapBadInputTest : public ::testing::TestWithParam<BadInputCase> {};

TEST_P(ChooseCapBadInputTest, IsInvalidArgument) {
  const BadInputCase& c = GetParam();
  absl::StatusOr<CapDecision> decision =
      ChooseCap(c.profile, c.objective, c.p_max_w, c.remaining_work, kNow);
  EXPECT_EQ(decision.status().code(), absl::StatusCode::kInvalidArgument)
      << decision.status();
}

std::vector<CapPoint> WithPoint(CapPoint p) {
  std::vector<CapPoint> profile = V100Profile();
  profile.push_back(p);
  return profile;
}

v1::Objective BadNanosDeadline() {
  v1::Objective o = DeadlineIn(absl::Seconds(100));
  o.mutable_deadline()->set_nanos(-1);
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    BadInput, ChooseCapBadInputTest,
    ::testing::ValuesIn(std::vector<BadInputCase>{
        {"EmptyProfile", {}, Default()},
        {"ZeroThroughput", WithPoint({90, 0, 80}), Default()},
        {"NegativeThroughput", WithPoint({90, -1, 80}), Default()},
        {"NaNThroughput", WithPoint({90, kNaN, 80}), Default()},
        {"InfiniteThroughput", WithPoint({90, kInf, 80}), Default()},
        {"ZeroPower", WithPoint({90, 500, 0}), Default()},
        {"InfinitePower", WithPoint({90, 500, kInf}), Default()},
        {"NaNPower", WithPoint({90, 500, kNaN}), Default()},
        {"ZeroCap", WithPoint({0, 500, 80}), Default()},
        {"NaNCap", WithPoint({kNaN, 500, 80}), Default()},
        {"DuplicateCap", WithPoint({150, 500, 80}), Default()},
        {"ZeroPMax", V100Profile(), Eta(0.5), 0},
        {"NaNPMax", V100Profile(), Default(), kNaN},
        {"NegativeRemainingWork", V100Profile(), Default(), kPMaxW, -1},
        {"InfiniteRemainingWork", V100Profile(), Default(), kPMaxW, kInf},
        {"NaNRemainingWork", V100Profile(), Default(), kPMaxW, kNaN},
        {"SlowdownBelowOne", V100Profile(), Slowdown(0.9)},
        {"SlowdownExplicitZero", V100Profile(), Slowdown(0)},
        {"SlowdownNaN", V100Profile(), Slowdown(kNaN)},
        {"SlowdownInfinite", V100Profile(), Slowdown(kInf)},
        {"EtaNegative", V100Profile(), Eta(-0.1)},
        {"EtaAboveOne", V100Profile(), Eta(1.5)},
        {"EtaNaN", V100Profile(), Eta(kNaN)},
        {"DeadlineBadNanos", V100Profile(), BadNanosDeadline()},
    }),
    [](const ::testing::TestParamInfo<BadInputCase>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace joule
