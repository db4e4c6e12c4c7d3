#include "agent/task_users.h"

#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(ParseTaskUsersTest, ParsesUsersGroupsCommentsAndBlankLines) {
  absl::StatusOr<TaskUserMap> users = ParseTaskUsers(
      "# name uid gid groups\n"
      "alice 60001 60001 60100,60101   # two groups\n"
      "\n"
      "  bob\t60002\t100\n"
      "local 0 0\r\n",
      "users.txt");
  ASSERT_TRUE(users.ok()) << users.status();
  ASSERT_EQ(users->size(), 3u);
  const TaskIdentity& alice = users->at("alice");
  EXPECT_EQ(alice.user, "alice");
  EXPECT_EQ(alice.uid, 60001u);
  EXPECT_EQ(alice.gid, 60001u);
  EXPECT_THAT(alice.groups, ElementsAre(60100u, 60101u));
  EXPECT_EQ(alice.home, "");
  EXPECT_EQ(users->at("bob").gid, 100u);
  EXPECT_THAT(users->at("bob").groups, IsEmpty());
  EXPECT_EQ(users->at("local").uid, 0u);
  EXPECT_TRUE(ParseTaskUsers("", "empty")->empty());
}

TEST(ParseTaskUsersTest, BadLinesNameTheFileAndLine) {
  const struct {
    const char* text;
    const char* why;
  } cases[] = {
      {"alice 60001\n", "2 fields"},
      {"alice 60001 60001 1,2 extra\n", "5 fields"},
      {"alice x 60001\n", "uid \"x\""},
      {"alice -1 60001\n", "uid \"-1\""},
      {"alice +5 60001\n", "uid \"+5\""},
      {"alice 4294967295 1\n", "uid \"4294967295\""},
      {"alice 1 99999999999\n", "gid \"99999999999\""},
      {"alice 1 1 2,,3\n", "group \"\""},
      {"alice 1 1 2,x\n", "group \"x\""},
      {"alice 1 1\nalice 2 2\n", "listed twice"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<TaskUserMap> users = ParseTaskUsers(absl::StrCat("# ok\n", c.text), "map");
    ASSERT_FALSE(users.ok()) << c.text;
    EXPECT_EQ(users.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    const int line = std::string(c.why) == "listed twice" ? 3 : 2;
    EXPECT_THAT(users.status().message(), HasSubstr(absl::StrCat("map:", line, ": ")))
        << c.text;
    EXPECT_THAT(users.status().message(), HasSubstr(c.why)) << c.text;
  }
}

TEST(LoadTaskUsersFileTest, ReadsTheFileOrSaysWhyNot) {
  const std::string path = ::testing::TempDir() + "/task_users";
  std::ofstream(path) << "alice 60001 60001\nbroken\n";
  absl::StatusOr<TaskUserMap> users = LoadTaskUsersFile(path);
  ASSERT_FALSE(users.ok());
  EXPECT_THAT(users.status().message(), HasSubstr(path + ":2: "));
  std::ofstream(path) << "alice 60001 60001\n";
  ASSERT_TRUE(LoadTaskUsersFile(path).ok());
  EXPECT_EQ(LoadTaskUsersFile(path + ".missing").status().code(),
            absl::StatusCode::kNotFound);
}

TaskUserMap Map() {
  return *ParseTaskUsers(
      "alice 60001 60001 60100\n"
      "root-ish 0 0\n"
      "daemon-ish 2 2\n",
      "map");
}

TEST(TaskUsersTest, MapUsersResolveAndTheRestAreRefusedWithTheReason) {
  TaskUsers users(Map(), TaskUserPolicy{});
  absl::StatusOr<TaskIdentity> alice = users.Resolve("alice");
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->uid, 60001u);
  EXPECT_THAT(alice->groups, ElementsAre(60100u));

  absl::StatusOr<TaskIdentity> empty = users.Resolve("");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("no user"));

  // The map is the whole list: "root" is in the system database, not here.
  absl::StatusOr<TaskIdentity> unknown = users.Resolve("root");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("\"root\""));

  absl::StatusOr<TaskIdentity> root = users.Resolve("root-ish");
  EXPECT_EQ(root.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(root.status().message(), HasSubstr("\"root-ish\" (uid 0)"));
  EXPECT_THAT(root.status().message(), HasSubstr("--allow-root-tasks"));

  absl::StatusOr<TaskIdentity> low = users.Resolve("daemon-ish");
  EXPECT_EQ(low.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(low.status().message(), HasSubstr("\"daemon-ish\" (uid 2)"));
  EXPECT_THAT(low.status().message(), HasSubstr("minimum task uid 1000"));
}

TEST(TaskUsersTest, PolicyAllowsRootAndLowUidsOnlyWhenAsked) {
  TaskUserPolicy policy;
  policy.allow_root = true;
  TaskUsers root_ok(Map(), policy);
  EXPECT_TRUE(root_ok.Resolve("root-ish").ok());
  EXPECT_FALSE(root_ok.Resolve("daemon-ish").ok());

  policy = TaskUserPolicy{};
  policy.min_uid = 0;  // No floor; root still needs allow_root.
  TaskUsers no_floor(Map(), policy);
  EXPECT_TRUE(no_floor.Resolve("daemon-ish").ok());
  EXPECT_EQ(no_floor.Resolve("root-ish").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(TaskUsersTest, AnAgentThatIsNotRootRunsTasksOnlyAsItself) {
  TaskUserPolicy policy;
  policy.agent_uid = 60001;
  policy.allow_root = true;
  TaskUsers users(*ParseTaskUsers("alice 60001 60001\nbob 60002 60002\nroot 0 0\n", "m"),
                  policy);
  EXPECT_FALSE(users.switches_user());
  EXPECT_TRUE(users.Resolve("alice").ok());
  for (const char* other : {"bob", "root"}) {
    absl::StatusOr<TaskIdentity> refused = users.Resolve(other);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied) << other;
    EXPECT_THAT(refused.status().message(), HasSubstr("runs as uid 60001, not root"));
  }
  EXPECT_TRUE(TaskUsers(std::nullopt, TaskUserPolicy{}).switches_user());
}

TEST(TaskUsersTest, SystemUserDatabase) {
  // root is in every passwd file.
  absl::StatusOr<TaskIdentity> root = LookupSystemUser("root");
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(root->gid, 0u);
  EXPECT_THAT(root->groups, ::testing::Contains(0u));
  EXPECT_FALSE(root->home.empty());

  TaskUsers users(std::nullopt, TaskUserPolicy{});
  EXPECT_EQ(users.Resolve("root").status().code(), absl::StatusCode::kPermissionDenied);
  absl::StatusOr<TaskIdentity> missing = users.Resolve("no-such-user-joule-test");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("system user database"));
  TaskUserPolicy allow;
  allow.allow_root = true;
  EXPECT_TRUE(TaskUsers(std::nullopt, allow).Resolve("root").ok());
}

}  // namespace
}  // namespace joule
