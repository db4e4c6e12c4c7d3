#include "common/device_catalog.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace joule {
namespace {

TEST(DeviceCatalogTest, BuiltInModelsAreFoundByLooseNames) {
  for (const char* name : {"V100", "Tesla V100", "v100", "A40", "RTX 6000", "A100", "H100"}) {
    EXPECT_TRUE(FindGpuModel(name).has_value()) << name;
  }
  EXPECT_EQ(FindGpuModel("Quadro RTX-6000")->power_limit_max_w, 260);
  EXPECT_FALSE(FindGpuModel("T4").has_value());
}

TEST(DeviceCatalogTest, OverridesReplaceAndAdd) {
  absl::StatusOr<std::vector<GpuModelSpec>> parsed = ParseGpuCatalog(
      "# a comment\n"
      "V100, 32, 100, 300, 300, 40, 135, 1530, 877, 85\n"
      "\n"
      "T4,16,60,70,70,10,300,1590,5001,85\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  std::vector<GpuModelSpec> catalog = MergeGpuCatalog(*parsed);
  EXPECT_EQ(FindGpuModel(catalog, "V100")->power_limit_max_w, 300);
  EXPECT_EQ(FindGpuModel(catalog, "T4")->throttle_temp_c, 85);
  EXPECT_EQ(FindGpuModel(catalog, "A40")->power_limit_max_w, 300);  // untouched
}

TEST(DeviceCatalogTest, MalformedLinesNameTheLineAndField) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {Case{"V100,16,100,250\n", "line 1: 4 fields"},
                        Case{"\nV100,16,x,250,250,35,135,1380,877,83\n", "line 2: limit_min_w"},
                        Case{"V100,16,300,250,250,35,135,1380,877,83\n", "min <= default"},
                        Case{"V100,16,100,250,250,35,1380,135,877,83\n", "clock"},
                        Case{"V100,16,100,250,250,-1,135,1380,877,83\n", "idle_w"}}) {
    absl::StatusOr<std::vector<GpuModelSpec>> parsed = ParseGpuCatalog(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.message), std::string::npos) << parsed.status();
  }
}

}  // namespace
TEST(DeviceCatalogTest, LoadsAFileOfOverrides) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp != nullptr ? tmp : "/tmp";
  std::ofstream(dir + "/catalog.csv") << "# extra\nB200,192,200,1000,1000,120,400,1965,3996,90\n";
  absl::StatusOr<std::vector<GpuModelSpec>> catalog = LoadGpuCatalogFile(dir + "/catalog.csv");
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EXPECT_TRUE(FindGpuModel(*catalog, "B200").has_value());
  EXPECT_TRUE(FindGpuModel(*catalog, "V100").has_value());
  std::ofstream(dir + "/bad.csv") << "B200,192\n";
  absl::StatusOr<std::vector<GpuModelSpec>> bad = LoadGpuCatalogFile(dir + "/bad.csv");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(bad.status().message()).find(dir + "/bad.csv: "), std::string::npos);
  absl::StatusOr<std::vector<GpuModelSpec>> missing = LoadGpuCatalogFile(dir + "/none.csv");
  EXPECT_NE(std::string(missing.status().message()).find("none.csv: cannot read"),
            std::string::npos);
}

}  // namespace joule
