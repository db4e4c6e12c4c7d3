#include "agent/rendezvous.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

TEST(ParsePortRangeTest, RangesAndNone) {
  EXPECT_EQ(*ParsePortRange("29500-29999"), std::make_pair(29500, 29999));
  EXPECT_EQ(*ParsePortRange("30000-30000"), std::make_pair(30000, 30000));
  EXPECT_EQ(*ParsePortRange(""), std::make_pair(0, 0));
  EXPECT_EQ(*ParsePortRange("none"), std::make_pair(0, 0));
  struct Bad {
    const char* text;
    const char* message;
  };
  for (const Bad& bad : {Bad{"29500", "not LOW-HIGH"}, Bad{"a-b", "not LOW-HIGH"},
                         Bad{"100-200", "1024 <= LOW"}, Bad{"30000-29000", "LOW <= HIGH"},
                         Bad{"60000-70000", "HIGH <= 65535"}}) {
    absl::StatusOr<std::pair<int32_t, int32_t>> parsed = ParsePortRange(bad.text);
    ASSERT_FALSE(parsed.ok()) << bad.text;
    EXPECT_THAT(parsed.status().message(), HasSubstr(bad.message)) << bad.text;
  }
}

TEST(RouteAddressTest, LoopbackTargetsRouteFromLoopback) {
  EXPECT_EQ(RouteAddress("127.0.0.1:7070"), "127.0.0.1");
  EXPECT_EQ(RouteAddress("127.0.0.1:7070,127.0.0.2:7070"), "127.0.0.1");
  EXPECT_EQ(RouteAddress("dns:///127.0.0.1:7070"), "127.0.0.1");
  // Unresolvable or malformed: loopback, the single-machine default.
  EXPECT_EQ(RouteAddress("no-such-host.invalid:7070"), "127.0.0.1");
  EXPECT_EQ(RouteAddress("no port"), "127.0.0.1");
}

TEST(CheckPortFreeTest, ABoundListenerMakesThePortBusy) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const int port = ntohs(address.sin_port);
  const absl::Status busy = CheckPortFree(port);
  EXPECT_TRUE(absl::IsUnavailable(busy)) << busy;
  EXPECT_THAT(busy.message(), HasSubstr("in use on this node"));
  close(fd);
  EXPECT_TRUE(CheckPortFree(port).ok());
}

}  // namespace
}  // namespace joule
