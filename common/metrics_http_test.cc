#include "common/metrics_http.h"

#include <memory>
#include <string>

#include "common/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

TEST(MetricsHttpTest, ServesTheRegistryOnAPickedPort) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("joule_test_events_total")
      .Help("Events seen by the test.")
      .Register(*registry)
      .Add({{"kind", "a"}})
      .Increment(3);
  std::string bound;
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
      StartMetricsServer("127.0.0.1:0", registry, &bound);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  EXPECT_THAT(bound, ::testing::StartsWith("127.0.0.1:"));
  EXPECT_NE(bound, "127.0.0.1:0");
  const std::string scraped = HttpGet(bound, "/metrics");
  EXPECT_THAT(scraped, HasSubstr("200 OK"));
  EXPECT_THAT(scraped, HasSubstr("joule_test_events_total{kind=\"a\"} 3"));
  EXPECT_THAT(RenderMetrics(*registry), HasSubstr("# TYPE joule_test_events_total counter"));
}

TEST(MetricsHttpTest, BadAddressesAreNamed) {
  auto registry = std::make_shared<prometheus::Registry>();
  EXPECT_THAT(StartMetricsServer("no-port", registry, nullptr).status().message(),
              HasSubstr("no-port"));
  // A port already taken.
  std::string bound;
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> first =
      StartMetricsServer("127.0.0.1:0", registry, &bound);
  ASSERT_TRUE(first.ok());
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> second =
      StartMetricsServer(bound, registry, nullptr);
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr(bound));
}

}  // namespace
}  // namespace joule
