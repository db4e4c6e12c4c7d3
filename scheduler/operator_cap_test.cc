#include "scheduler/operator_cap.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/node.pb.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

// Gpu(0).Power(200).MaxFrequency(1200).Build().
class CapBuilder {
 public:
  CapBuilder(v1::DeviceKind kind, int32_t index) {
    cap_.set_kind(kind);
    cap_.set_index(index);
  }
  CapBuilder& Power(double watts) {
    cap_.set_power_cap_w(watts);
    return *this;
  }
  CapBuilder& MaxFrequency(int32_t mhz) {
    cap_.set_max_frequency_mhz(mhz);
    return *this;
  }
  CapBuilder& MinFrequency(int32_t mhz) {
    cap_.set_min_frequency_mhz(mhz);
    return *this;
  }
  v1::SetCap Build() const { return cap_; }

 private:
  v1::SetCap cap_;
};

CapBuilder Gpu(int32_t index) { return CapBuilder(v1::DEVICE_KIND_GPU, index); }
CapBuilder CpuPackage(int32_t index) { return CapBuilder(v1::DEVICE_KIND_CPU, index); }

void AddDevice(v1::NodeInfo& node, v1::DeviceKind kind, int32_t index, double min_w, double max_w,
               const std::string& source) {
  v1::Device* device = node.add_devices();
  device->set_kind(kind);
  device->set_index(index);
  device->set_power_limit_min_w(min_w);
  device->set_power_limit_max_w(max_w);
  device->set_source(source);
}

// node-a: GPU 0 capped in [100, 250] W; GPU 1 with no known range; CPU
// package 0 on RAPL in [10, 150] W; CPU package 2 without RAPL, in
// [0, 200] W. GPU 2 and CPU package 1 do not exist, though a device of the
// other kind has that index.
v1::NodeInfo TestNode() {
  v1::NodeInfo node;
  node.set_name("node-a");
  AddDevice(node, v1::DEVICE_KIND_GPU, 0, 100, 250, "nvml");
  AddDevice(node, v1::DEVICE_KIND_GPU, 1, 0, 0, "nvml");
  AddDevice(node, v1::DEVICE_KIND_CPU, 0, 10, 150, "rapl");
  AddDevice(node, v1::DEVICE_KIND_CPU, 2, 0, 200, "estimated");
  return node;
}

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

struct RejectCase {
  const char* name;
  v1::SetCap cap;
  absl::StatusCode code;
  // A part of the message.
  std::string message;
};

struct AcceptCase {
  const char* name;
  v1::SetCap cap;
};

TEST(CheckOperatorCapTest, Rejects) {
  const RejectCase cases[] = {
      {"memory kind", CapBuilder(v1::DEVICE_KIND_MEMORY, 0).Power(100).Build(),
       absl::StatusCode::kInvalidArgument, "cap.kind"},
      {"unknown kind", CapBuilder(static_cast<v1::DeviceKind>(42), 0).Power(200).Build(),
       absl::StatusCode::kInvalidArgument, "cap.kind"},
      {"NaN power", Gpu(0).Power(kNaN).Build(), absl::StatusCode::kInvalidArgument,
       "cap.power_cap_w"},
      {"infinite power", Gpu(0).Power(kInf).Build(), absl::StatusCode::kInvalidArgument,
       "cap.power_cap_w"},
      {"negative power", Gpu(0).Power(-1).Build(), absl::StatusCode::kInvalidArgument,
       "cap.power_cap_w"},
      {"negative max frequency", Gpu(0).MaxFrequency(-1).Build(),
       absl::StatusCode::kInvalidArgument, "frequencies must be >= 0"},
      {"negative min frequency", Gpu(0).MinFrequency(-1).MaxFrequency(1000).Build(),
       absl::StatusCode::kInvalidArgument, "frequencies must be >= 0"},
      {"negative CPU frequency", CpuPackage(0).MaxFrequency(-5).Build(),
       absl::StatusCode::kInvalidArgument, "frequencies must be >= 0"},
      {"CPU with a min frequency", CpuPackage(0).MinFrequency(800).MaxFrequency(2000).Build(),
       absl::StatusCode::kInvalidArgument, "cap.min_frequency_mhz"},
      {"GPU min above max", Gpu(0).MinFrequency(1500).MaxFrequency(1000).Build(),
       absl::StatusCode::kInvalidArgument,
       "min_frequency_mhz (1500) must be <= max_frequency_mhz (1000)"},
      // 0 leaves the maximum alone: a minimum alone is above it.
      {"GPU min frequency without a max", Gpu(0).Power(200).MinFrequency(800).Build(),
       absl::StatusCode::kInvalidArgument,
       "min_frequency_mhz (800) must be <= max_frequency_mhz (0)"},
      {"GPU nothing to set", Gpu(0).Build(), absl::StatusCode::kInvalidArgument,
       "give power_cap_w or max_frequency_mhz"},
      {"CPU nothing to set", CpuPackage(0).Build(), absl::StatusCode::kInvalidArgument,
       "give power_cap_w or max_frequency_mhz"},
      {"no such GPU", Gpu(2).Power(200).Build(), absl::StatusCode::kNotFound,
       "node node-a has no GPU 2"},
      {"no such CPU package", CpuPackage(1).Power(100).Build(), absl::StatusCode::kNotFound,
       "node node-a has no CPU package 1"},
      {"no such GPU, frequency only", Gpu(7).MaxFrequency(1000).Build(),
       absl::StatusCode::kNotFound, "has no GPU 7"},
      {"GPU power below the range", Gpu(0).Power(99).Build(), absl::StatusCode::kOutOfRange,
       "[100, 250] W"},
      {"GPU power above the range", Gpu(0).Power(251).Build(), absl::StatusCode::kOutOfRange,
       "GPU 0's allowed range [100, 250] W"},
      {"CPU power above the range", CpuPackage(0).Power(151).Build(), absl::StatusCode::kOutOfRange,
       "CPU package 0's allowed range [10, 150] W"},
      {"CPU power cap without RAPL", CpuPackage(2).Power(100).Build(),
       absl::StatusCode::kFailedPrecondition, "no RAPL power limit"},
  };
  const v1::NodeInfo node = TestNode();
  for (const RejectCase& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::Status status = CheckOperatorCap(node, c.cap);
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
}

TEST(CheckOperatorCapTest, Accepts) {
  const AcceptCase cases[] = {
      {"GPU power in range", Gpu(0).Power(200).Build()},
      {"GPU power at the minimum", Gpu(0).Power(100).Build()},
      {"GPU power at the maximum", Gpu(0).Power(250).Build()},
      {"unspecified kind is a GPU", CapBuilder(v1::DEVICE_KIND_UNSPECIFIED, 0).Power(200).Build()},
      {"GPU frequency only", Gpu(0).MinFrequency(800).MaxFrequency(1200).Build()},
      {"GPU max frequency only", Gpu(0).MaxFrequency(1200).Build()},
      {"GPU power and frequency", Gpu(0).Power(200).MaxFrequency(1200).Build()},
      {"GPU without a known range takes any power", Gpu(1).Power(5000).Build()},
      {"CPU power cap on RAPL", CpuPackage(0).Power(100).Build()},
      {"CPU frequency without RAPL", CpuPackage(2).MaxFrequency(2000).Build()},
  };
  const v1::NodeInfo node = TestNode();
  for (const AcceptCase& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(CheckOperatorCap(node, c.cap), absl::OkStatus());
  }
}

}  // namespace
}  // namespace joule
