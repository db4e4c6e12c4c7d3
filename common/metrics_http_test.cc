#include "common/metrics_http.h"

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

// Fetches http://ADDRESS/metrics with a raw HTTP/1.0 request (curl is not
// a dependency).
std::string Scrape(const std::string& address) {
  const std::string command =
      absl::StrCat("exec 3<>/dev/tcp/", address.substr(0, address.rfind(':')), "/",
                   address.substr(address.rfind(':') + 1),
                   "; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
  FILE* pipe = popen(absl::StrCat("bash -c \"", command, "\"").c_str(), "r");
  std::string out;
  char buffer[4096];
  size_t n;
  while (pipe != nullptr && (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    out.append(buffer, n);
  }
  if (pipe != nullptr) pclose(pipe);
  return out;
}

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
  const std::string scraped = Scrape(bound);
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
