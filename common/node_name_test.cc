#include "common/node_name.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

TEST(NodeNameTest, AcceptsDns1123Subdomains) {
  const std::vector<std::string> good = {
      "a",
      "0",
      "gpu-a",
      "node-01.rack-3.example.com",
      "ip-10-0-0-1.ec2.internal",
      std::string(63, 'a'),
      // 253 characters: four labels of 63 and the dots.
      absl::StrCat(std::string(63, 'a'), ".", std::string(63, 'b'), ".",
                   std::string(63, 'c'), ".", std::string(61, 'd')),
  };
  for (const std::string& name : good) {
    EXPECT_TRUE(ValidateNodeName(name).ok()) << name << ": " << ValidateNodeName(name);
  }
}

struct BadName {
  std::string name;
  // In the message, besides the name and the rule.
  std::string why;
};

TEST(NodeNameTest, RefusesAnythingElseNamingTheNameAndTheRule) {
  const std::vector<BadName> bad = {
      {"", "empty"},
      {"Gpu-A", "upper-case 'G' at 0"},
      {"gpu_a", "'_' at 3"},
      {"gpu a", "' ' at 3"},
      {"gpu/a", "'/' at 3"},
      {"gpu:a", "':' at 3"},
      {std::string("gpu\x1b[2Ja"), "'\\x1b' at 3"},
      {std::string("gpu\0a", 5), "'\\x00' at 3"},
      {"gpü", "at 2 is not allowed"},
      {"-gpu", "must start and end"},
      {"gpu-", "must start and end"},
      {"gpu.-a", "label \"-a\""},
      {".gpu", "empty label"},
      {"gpu.", "empty label"},
      {"gpu..a", "empty label"},
      {std::string(64, 'a'), "has 64 characters"},
      {absl::StrCat("x.", std::string(64, 'a'), ".y"), "has 64 characters"},
      {absl::StrCat(std::string(63, 'a'), ".", std::string(63, 'b'), ".",
                    std::string(63, 'c'), ".", std::string(62, 'd')),
       "254 characters"},
  };
  for (const BadName& c : bad) {
    SCOPED_TRACE(c.name);
    const absl::Status status = ValidateNodeName(c.name);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr(c.why));
    EXPECT_THAT(status.message(), HasSubstr("DNS-1123 subdomain"));
  }
}

TEST(NodeNameTest, MessagesEscapeAndShortenTheName) {
  const absl::Status control = ValidateNodeName("a\x1b]0;owned\x07");
  EXPECT_THAT(control.message(), HasSubstr("\"a\\x1b]0;owned\\x07\""));
  EXPECT_THAT(control.message(), ::testing::Not(HasSubstr("\x1b")));

  const absl::Status huge = ValidateNodeName(std::string(1 << 20, 'a'));
  EXPECT_THAT(huge.message(), HasSubstr("(1048576 characters)"));
  EXPECT_LT(huge.message().size(), 1000u);
}

}  // namespace
}  // namespace joule
