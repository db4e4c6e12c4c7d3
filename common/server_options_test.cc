#include "common/server_options.h"

#include <sstream>

#include "gtest/gtest.h"

namespace joule {
namespace {

TEST(CheckListenAddressTest, WantsHostAndPort) {
  for (const char* ok : {"127.0.0.1:7070", "0.0.0.0:0", "[::]:7070", ":7070", "host:65535"}) {
    EXPECT_TRUE(CheckListenAddress(ok, "--listen").ok()) << ok;
  }
  for (const char* bad : {"", "7070", "host:", "host:http", "host:65536", "host:-1",
                          "[::1:7070", "a b:1"}) {
    absl::Status status = CheckListenAddress(bad, "--listen");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(status.message().find("--listen"), std::string::npos) << status;
  }
}

TEST(ReportConfigCheckTest, NamesEveryProblemOrSaysOk) {
  std::ostringstream out, err;
  EXPECT_EQ(ReportConfigCheck("joule-x", {"--a: bad", "--b: worse"}, out, err), 2);
  EXPECT_EQ(err.str(), "joule-x: --a: bad\njoule-x: --b: worse\njoule-x: 2 configuration problems\n");
  EXPECT_EQ(out.str(), "");
  std::ostringstream ok_out, ok_err;
  EXPECT_EQ(ReportConfigCheck("joule-x", {}, ok_out, ok_err), 0);
  EXPECT_EQ(ok_out.str(), "joule-x: configuration OK\n");
  EXPECT_EQ(ok_err.str(), "");
}

TEST(RequireLoopbackTest, AcceptsOnlyLoopbackHosts) {
  for (const char* ok : {"127.0.0.1:7070", "127.3.4.5:0", "[::1]:7070", "localhost:1"}) {
    EXPECT_TRUE(RequireLoopback(ok, "--listen").ok()) << ok;
  }
  for (const char* bad : {"0.0.0.0:7070", "10.0.0.1:7070", "[::]:7070", "example.com:1",
                          ":7070", "128.0.0.1:1"}) {
    absl::Status status = RequireLoopback(bad, "--listen");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(status.message().find("--listen"), std::string::npos);
  }
}

TEST(RequireLoopbackServersTest, ChecksBothAddressesAndNamesTheFlag) {
  EXPECT_TRUE(RequireLoopbackServers("127.0.0.1:0", "").ok());
  EXPECT_TRUE(RequireLoopbackServers("127.0.0.1:0", "localhost:9100").ok());
  absl::Status listen = RequireLoopbackServers("0.0.0.0:0", "127.0.0.1:0");
  EXPECT_NE(listen.message().find("--listen"), std::string::npos) << listen;
  absl::Status metrics = RequireLoopbackServers("127.0.0.1:0", "0.0.0.0:9100");
  EXPECT_EQ(metrics.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(metrics.message().find("--metrics-listen"), std::string::npos) << metrics;
  // A malformed metrics address is the metrics server's to name.
  EXPECT_TRUE(RequireLoopbackServers("127.0.0.1:0", "no-port").ok());
}

}  // namespace
}  // namespace joule
