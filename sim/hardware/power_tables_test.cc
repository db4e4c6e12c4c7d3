#include "sim/hardware/power_tables.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::sim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kPowerHeader[] =
    "dataset,network,batch_size,optimizer,power_limit,time_per_epoch,"
    "average_power\n";
constexpr char kTrainHeader[] =
    "dataset,network,batch_size,optimizer,learning_rate,run,target_metric,"
    "target_epoch\n";

// Made-up rows in the trace's format. ds/net: adam has 4 V100 rows + 1 A40
// row, sgd 1, so adam is kept.
constexpr char kV100[] =
    "ds,net,32,adam,100,10,80\n"
    "ds,net,32,adam,200,6,150\n"
    "ds,net,128,adam,100,4,90\n"
    "ds,net,128,adam,200,2,170\n"
    "ds,net,32,sgd,100,99,99\n"
    "other,m,8,sgd,150,5,120\n";
constexpr char kA40[] = "ds,net,32,adam,150,7,140\n";
constexpr char kTrain[] =
    "ds,net,32,adam,1e-3,1,0.5,2\n"
    "ds,net,32,adam,1e-3,2,0.5,4\n"
    "ds,net,32,adam,1e-2,1,0.5,6\n"
    "ds,net,32,adam,1e-2,2,0.5,nan\n"
    "ds,net,32,sgd,1e-1,1,0.5,100\n"
    "ds,net,128,adam,1e-3,1,0.5,10\n"
    "ds,net,32,adam,1e-3,1,0.6,5\n"
    "ds,net,32,adam,1e-3,1,0.7,nan\n";

// Writes fixture files into a fresh directory under TempDir.
class FixtureDir {
 public:
  explicit FixtureDir(const std::string& name)
      : dir_(absl::StrCat(::testing::TempDir(), "/power_tables_", name)) {
    ::mkdir(dir_.c_str(), 0755);
  }
  FixtureDir& File(const std::string& file, const std::string& content) {
    std::ofstream(absl::StrCat(dir_, "/", file)) << content;
    return *this;
  }
  FixtureDir& Valid() {
    return File("summary_power_v100.csv", std::string(kPowerHeader) + kV100)
        .File("summary_power_a40.csv", std::string(kPowerHeader) + kA40)
        .File("summary_train.csv", std::string(kTrainHeader) + kTrain);
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

const Workload kDs{"ds", "net"};

PowerTables LoadValid(const std::string& name) {
  FixtureDir fixture(name);
  fixture.Valid();
  absl::StatusOr<PowerTables> tables = PowerTables::Load(fixture.dir());
  EXPECT_TRUE(tables.ok()) << tables.status();
  return *std::move(tables);
}

TEST(PowerTablesTest, ListsKeysAndGrid) {
  PowerTables t = LoadValid("lists");
  EXPECT_THAT(t.Gpus(), ElementsAre("A40", "V100"));
  EXPECT_THAT(t.Workloads(), ElementsAre("ds/net", "other/m"));
  EXPECT_THAT(t.PowerLimits(kDs, "V100"), ElementsAre(100, 200));
  EXPECT_THAT(t.BatchSizes(kDs, "V100"), ElementsAre(32, 128));
  EXPECT_TRUE(t.PowerLimits(kDs, "RTX6000").empty());
  EXPECT_EQ(*t.Optimizer(kDs), "adam");
  EXPECT_EQ(*t.Optimizer(Workload{"other", "m"}), "sgd");
}

struct EpochCase {
  const char* name;
  double limit_w;
  int batch;
  double seconds;
  double power_w;
  bool extrapolated;
};

TEST(PowerTablesTest, EpochInterpolatesAndClamps) {
  PowerTables t = LoadValid("epoch");
  const EpochCase cases[] = {
      {"exact", 200, 32, 6, 150, false},
      {"exact_other_corner", 100, 128, 4, 90, false},
      // Halfway in power: (10+6)/2, (80+150)/2.
      {"power", 150, 32, 8, 115, false},
      // A quarter of the way: 10 + 0.25*(6-10), 80 + 0.25*70.
      {"power_quarter", 125, 32, 9, 97.5, false},
      // log2(64) is halfway between log2(32) and log2(128).
      {"batch", 100, 64, 7, 85, false},
      // Batch 32 at 150 W: 8 s, 115 W; batch 128: 3 s, 130 W; halfway.
      {"bilinear", 150, 64, 5.5, 122.5, false},
      {"clamp_power_high", 300, 32, 6, 150, true},
      {"clamp_batch_low", 150, 8, 8, 115, true},
      {"clamp_both", 50, 1024, 4, 90, true},
  };
  for (const EpochCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<EpochCost> cost = t.Epoch(kDs, "V100", c.limit_w, c.batch);
    ASSERT_TRUE(cost.ok()) << cost.status();
    EXPECT_DOUBLE_EQ(cost->seconds, c.seconds);
    EXPECT_DOUBLE_EQ(cost->average_power_w, c.power_w);
    EXPECT_EQ(cost->extrapolated, c.extrapolated);
  }
}

TEST(PowerTablesTest, MinorityOptimizerIgnored) {
  PowerTables t = LoadValid("optimizer");
  // The sgd row (99 s at 100 W, batch 32) must not leak into adam's grid.
  EXPECT_DOUBLE_EQ(t.Epoch(kDs, "V100", 100, 32)->seconds, 10);
}

TEST(PowerTablesTest, UnknownKeysAndBadQueries) {
  PowerTables t = LoadValid("unknown");
  EXPECT_EQ(t.Epoch(Workload{"nope", "net"}, "V100", 150, 32).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(t.Epoch(kDs, "H100", 150, 32).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(t.Epoch(kDs, "RTX6000", 150, 32).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(t.Epoch(kDs, "V100", 150, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Epoch(kDs, "V100", -1, 32).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::mt19937 gen(1);
  EXPECT_EQ(t.EpochsToTarget(Workload{"nope", "x"}, 32, gen).status().code(),
            absl::StatusCode::kNotFound);
  // Only a "nan" run recorded for 0.7; nothing at all for 0.9.
  EXPECT_EQ(t.EpochsToTarget(kDs, 32, 0.7, gen).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(t.EpochsToTarget(kDs, 32, 0.9, gen).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(t.EpochsToTarget(Workload{"other", "m"}, 8, gen).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(PowerTablesTest, EpochsToTargetDefaultTargetAndNearestBatch) {
  PowerTables t = LoadValid("target");
  // Distinct targets 0.5, 0.6, 0.7: lower median is 0.6.
  EXPECT_DOUBLE_EQ(*t.DefaultTargetMetric(kDs), 0.6);
  std::mt19937 gen(7);
  EXPECT_DOUBLE_EQ(*t.EpochsToTarget(kDs, 32, gen), 5);
  // 100 is nearer 128 than 32 in log2; 64 is nearer 32; 1024 clamps to 128.
  EXPECT_DOUBLE_EQ(*t.EpochsToTarget(kDs, 100, 0.5, gen), 10);
  EXPECT_DOUBLE_EQ(*t.EpochsToTarget(kDs, 1024, 0.5, gen), 10);
  for (int i = 0; i < 20; ++i) {
    const double e = *t.EpochsToTarget(kDs, 64, 0.5, gen);
    EXPECT_TRUE(e == 2 || e == 4 || e == 6) << e;
  }
}

TEST(PowerTablesTest, EpochsToTargetDeterministicAndUniform) {
  PowerTables t = LoadValid("uniform");
  std::mt19937 a(42), b(42);
  std::vector<double> first, second;
  for (int i = 0; i < 50; ++i) {
    first.push_back(*t.EpochsToTarget(kDs, 32, 0.5, a));
    second.push_back(*t.EpochsToTarget(kDs, 32, 0.5, b));
  }
  EXPECT_EQ(first, second);

  // Three successful adam runs (2, 4, 6); the nan run and the sgd run (100)
  // are never drawn.
  std::map<double, int> counts;
  const int kDraws = 3000;
  for (int i = 0; i < kDraws; ++i) ++counts[*t.EpochsToTarget(kDs, 32, 0.5, a)];
  ASSERT_EQ(counts.size(), 3u);
  for (double e : {2.0, 4.0, 6.0}) {
    EXPECT_NEAR(counts[e], kDraws / 3, 150) << e;
  }
}

struct MalformedCase {
  const char* name;
  const char* file;
  std::string content;
  absl::StatusCode code;
  const char* where;  // "file:line[:column]" expected in the message.
};

TEST(PowerTablesTest, MalformedFilesNameFileAndLine) {
  const std::string power_ok = std::string(kPowerHeader) + kV100;
  const MalformedCase cases[] = {
      {"missing_column", "summary_power_v100.csv",
       "dataset,network,batch_size,optimizer,power_limit,time_per_epoch\n"
       "ds,net,32,adam,100,10\n",
       absl::StatusCode::kInvalidArgument, "summary_power_v100.csv:1"},
      {"non_numeric", "summary_power_v100.csv",
       std::string(kPowerHeader) + "ds,net,32,adam,100,10,80\n" +
           "ds,net,32,adam,200,abc,150\n",
       absl::StatusCode::kInvalidArgument, "summary_power_v100.csv:3:6"},
      {"negative", "summary_power_v100.csv",
       std::string(kPowerHeader) + "ds,net,32,adam,-100,10,80\n",
       absl::StatusCode::kInvalidArgument, "summary_power_v100.csv:2:5"},
      {"empty", "summary_power_v100.csv", "",
       absl::StatusCode::kDataLoss, "summary_power_v100.csv:1"},
      {"header_only", "summary_power_v100.csv", kPowerHeader,
       absl::StatusCode::kDataLoss, "summary_power_v100.csv:2"},
      {"short_row", "summary_power_v100.csv",
       std::string(kPowerHeader) + "ds,net,32,adam,100\n",
       absl::StatusCode::kDataLoss, "summary_power_v100.csv:2"},
      {"train_non_numeric", "summary_train.csv",
       std::string(kTrainHeader) + "ds,net,32,adam,1e-3,1,0.5,2\n" +
           "ds,net,32,adam,1e-3,1,0.6,x\n",
       absl::StatusCode::kInvalidArgument, "summary_train.csv:3:8"},
      {"train_missing_column", "summary_train.csv",
       "dataset,network,batch_size,optimizer\nds,net,32,adam\n",
       absl::StatusCode::kInvalidArgument, "summary_train.csv:1"},
  };
  for (const MalformedCase& c : cases) {
    SCOPED_TRACE(c.name);
    FixtureDir fixture(absl::StrCat("malformed_", c.name));
    fixture.Valid().File(c.file, c.content);
    absl::StatusOr<PowerTables> t = PowerTables::Load(fixture.dir());
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), c.code) << t.status();
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.where));
  }
}

TEST(PowerTablesTest, MissingFilesAreNotFound) {
  FixtureDir empty("missing_all");
  EXPECT_EQ(PowerTables::Load(empty.dir()).status().code(),
            absl::StatusCode::kNotFound);
  FixtureDir no_train("missing_train");
  no_train.File("summary_power_v100.csv", std::string(kPowerHeader) + kV100);
  absl::StatusOr<PowerTables> t = PowerTables::Load(no_train.dir());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()),
              HasSubstr("summary_train.csv"));
}

// Any GPU model the catalog describes can have tables; a file for a model it
// does not describe is refused, not skipped.
TEST(PowerTablesTest, GpuModelsComeFromTheCatalog) {
  FixtureDir fixture("catalog");
  fixture.Valid().File("summary_power_b200.csv", std::string(kPowerHeader) + kV100);
  absl::StatusOr<PowerTables> refused = PowerTables::Load(fixture.dir());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("summary_power_b200.csv: GPU model 'b200' is not in the GPU catalog"));
  absl::StatusOr<std::vector<GpuModelSpec>> b200 =
      ParseGpuCatalog("B200,192,200,1000,1000,120,400,1965,3996,90\n");
  ASSERT_TRUE(b200.ok()) << b200.status();
  absl::StatusOr<PowerTables> loaded = PowerTables::Load(fixture.dir(), MergeGpuCatalog(*b200));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const std::vector<std::string> gpus = loaded->Gpus();
  EXPECT_NE(std::find(gpus.begin(), gpus.end(), "B200"), gpus.end());
}

// Loads the real Zeus trace (Zeus, NSDI 2023, ml-energy/zeus trace) when
// JOULE_DATA_DIR points at it, e.g.
//   bazel test --test_env=JOULE_DATA_DIR=$PWD/../shared/data/gpu-power ...
TEST(PowerTablesTest, RealDataSanity) {
  const char* dir = std::getenv("JOULE_DATA_DIR");
  if (dir == nullptr || *dir == '\0') GTEST_SKIP() << "JOULE_DATA_DIR unset";
  absl::StatusOr<PowerTables> t = PowerTables::Load(dir);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->Gpus(), ElementsAre("A40", "RTX6000", "V100"));
  ASSERT_EQ(t->Workloads().size(), 6u);
  std::mt19937 gen(3);
  for (const std::string& key : t->Workloads()) {
    const Workload w{key.substr(0, key.find('/')),
                     key.substr(key.find('/') + 1)};
    for (const std::string& gpu : t->Gpus()) {
      SCOPED_TRACE(key + " on " + gpu);
      const std::vector<double> limits = t->PowerLimits(w, gpu);
      const std::vector<int> batches = t->BatchSizes(w, gpu);
      ASSERT_FALSE(limits.empty());
      ASSERT_FALSE(batches.empty());
      for (int b : batches) {
        for (double l : limits) {
          absl::StatusOr<EpochCost> c = t->Epoch(w, gpu, l, b);
          ASSERT_TRUE(c.ok()) << c.status();
          EXPECT_GT(c->seconds, 0);
          EXPECT_GT(c->average_power_w, 0);
        }
      }
    }
    absl::StatusOr<double> epochs = t->EpochsToTarget(
        w, t->BatchSizes(w, t->Gpus().front()).front(), gen);
    ASSERT_TRUE(epochs.ok()) << key << ": " << epochs.status();
    EXPECT_GT(*epochs, 0);
  }
}

}  // namespace
}  // namespace joule::sim
