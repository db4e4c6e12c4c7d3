#include "cli/client_config.h"

#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/token.h"
#include "common/sha256.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

std::string Dir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::string Write(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(Dir(), "/", name);
  std::ofstream(path) << text;
  return path;
}

TEST(ClientConfigTest, ReadsEveryKeyAndResolvesRelativePaths) {
  const std::string path = Write("config.yaml",
                                 "scheduler: a:1,b:2\nca: ca.pem\ntoken-file: /abs/token\n"
                                 "cert: c.pem\nkey: k.pem\nserver-name: joule-scheduler\n"
                                 "insecure: false\n");
  absl::StatusOr<ClientConfig> config = LoadClientConfig(path, true);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->scheduler, "a:1,b:2");
  EXPECT_EQ(config->ca_file, Dir() + "/ca.pem");
  EXPECT_EQ(config->token_file, "/abs/token");
  EXPECT_EQ(config->cert_file, Dir() + "/c.pem");
  EXPECT_EQ(config->server_name, "joule-scheduler");
  EXPECT_FALSE(config->insecure);
}

TEST(ClientConfigTest, NamesTheProblem) {
  EXPECT_EQ(LoadClientConfig(Dir() + "/absent.yaml", true).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(LoadClientConfig(Dir() + "/absent.yaml", false).ok());
  absl::StatusOr<ClientConfig> unknown =
      LoadClientConfig(Write("bad1.yaml", "schedular: x:1\n"), true);
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "unknown key \"schedular\""));
  EXPECT_FALSE(LoadClientConfig(Write("bad2.yaml", "insecure: maybe\n"), true).ok());
  EXPECT_FALSE(LoadClientConfig(Write("bad3.yaml", "ca: [a, b]\n"), true).ok());
  EXPECT_FALSE(LoadClientConfig(Write("bad4.yaml", "- a\n"), true).ok());
}

TEST(ClientConfigTest, LaterSourcesWin) {
  ClientConfig file;
  file.scheduler = "file:1";
  file.token_file = "/file/token";
  file.ca_file = "/file/ca";
  ClientConfig env;
  env.token = "from-env";
  file.MergeFrom(env);
  EXPECT_EQ(file.token, "from-env");
  EXPECT_TRUE(file.token_file.empty());
  ClientConfig flags;
  flags.scheduler = "flag:1";
  file.MergeFrom(flags);
  EXPECT_EQ(file.scheduler, "flag:1");
  EXPECT_EQ(file.ca_file, "/file/ca");
}

TEST(ClientConfigTest, ReadsTheTokenFile) {
  ClientConfig config;
  config.token_file = Write("token", "  jt_abc  \nignored\n");
  absl::StatusOr<std::string> token = ResolveToken(config);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(*token, "jt_abc");
  config.token_file = Write("empty-token", "\n");
  EXPECT_FALSE(ResolveToken(config).ok());
  config.token_file = Dir() + "/no-token";
  EXPECT_FALSE(ResolveToken(config).ok());
}

TEST(TokenTest, NewTokensAreRandomAndTheLineHoldsOnlyTheHash) {
  absl::StatusOr<std::string> a = NewApiToken();
  absl::StatusOr<std::string> b = NewApiToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->size(), 3 + 64);
  const std::string line =
      TokenFileLine(*a, "alice", "user", absl::FromUnixSeconds(1893456000));
  EXPECT_EQ(line, absl::StrCat("token sha256:", Sha256Hex(*a),
                               " alice user expires=2030-01-01T00:00:00Z"));
  EXPECT_FALSE(absl::StrContains(line, *a));
}

}  // namespace
}  // namespace joule
