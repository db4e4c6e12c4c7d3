#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "scheduler/auth/access_policy.h"
#include "scheduler/auth/identity.h"
#include "scheduler/auth/token_file.h"

namespace joule {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  chmod(path.c_str(), 0600);
}

std::string TokenLine(const std::string& token, const std::string& rest) {
  return absl::StrCat("token sha256:", Sha256Hex(token), " ", rest, "\n");
}

TEST(SpiffeIdTest, ParsesNodesAndUsers) {
  absl::StatusOr<SpiffeName> node = ParseSpiffeId("spiffe://joule/node/gpu-a", "joule");
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->kind, SpiffeName::Kind::kNode);
  EXPECT_EQ(node->name, "gpu-a");
  absl::StatusOr<SpiffeName> user = ParseSpiffeId("spiffe://joule/user/alice", "joule");
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->kind, SpiffeName::Kind::kUser);
}

TEST(SpiffeIdTest, RefusesOtherDomainsKindsAndShapes) {
  for (const char* bad :
       {"spiffe://other/node/gpu-a", "spiffe://joule/pod/x", "spiffe://joule/node/",
        "spiffe://joule/node/a/b", "https://joule/node/a", "spiffe://joule/node"}) {
    EXPECT_FALSE(ParseSpiffeId(bad, "joule").ok()) << bad;
  }
}

TEST(TokenFileTest, ParsesEntriesAndRefusesPlainTokens) {
  absl::StatusOr<TokenFile::Table> table = TokenFile::Parse(
      TokenLine("t1", "alice user") +
          TokenLine("t2", "ops operator expires=2030-01-01T00:00:00Z") +
          "# comment\n\ncert bob admin\n",
      "tokens");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->tokens.size(), 2);
  EXPECT_EQ(table->certs.at("bob"), Role::kAdmin);

  const struct {
    std::string text;
    std::string error;
  } cases[] = {
      {"token t1 alice user\n", "tokens:1: the token must be given as sha256:"},
      {TokenLine("t", "alice root"), "role \"root\""},
      {TokenLine("t", "Alice user"), "user \"Alice\""},
      {TokenLine("t", "alice user when=never"), "expected expires="},
      {"\nkey x y\n", "tokens:2: unknown entry \"key\""},
      {TokenLine("t", "a user") + TokenLine("t", "b user"), "tokens:2: the same token"},
      {"cert bob\n", "expected: cert USER ROLE"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<TokenFile::Table> parsed = TokenFile::Parse(c.text, "tokens");
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_NE(parsed.status().message().find(c.error), std::string::npos)
        << parsed.status() << " lacks " << c.error;
  }
}

TEST(TokenFileTest, LooksUpHashedTokensAndExpiry) {
  const std::string path = TempPath("tokens-expiry");
  WriteFile(path, TokenLine("secret-a", "alice user") +
                      TokenLine("secret-o", "ops operator expires=2030-01-01T00:00:00Z"));
  FakeClock clock(absl::FromUnixSeconds(1893456000 - 10));  // 2029-12-31T23:59:50Z
  absl::StatusOr<std::unique_ptr<TokenFile>> tokens = TokenFile::Load(path, &clock);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  absl::StatusOr<Identity> alice = (*tokens)->Lookup("secret-a");
  ASSERT_TRUE(alice.ok());
  EXPECT_EQ(alice->user, "alice");
  EXPECT_EQ(alice->role, Role::kUser);
  EXPECT_EQ((*tokens)->Lookup("secret-b").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*tokens)->Lookup("").status().code(), absl::StatusCode::kUnauthenticated);
  ASSERT_TRUE((*tokens)->Lookup("secret-o").ok());
  clock.Advance(absl::Seconds(11));
  absl::StatusOr<Identity> expired = (*tokens)->Lookup("secret-o");
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos);
}

TEST(TokenFileTest, ReReadsTheFileAndFailsClosedWhenItBreaks) {
  const std::string path = TempPath("tokens-reload");
  WriteFile(path, TokenLine("old", "alice user"));
  FakeClock clock;
  absl::StatusOr<std::unique_ptr<TokenFile>> tokens =
      TokenFile::Load(path, &clock, absl::Seconds(2));
  ASSERT_TRUE(tokens.ok());
  ASSERT_TRUE((*tokens)->Lookup("old").ok());

  // Revoke "old", add "new": seen after the recheck interval.
  WriteFile(path, TokenLine("new", "alice user") + "cert carol operator\n");
  clock.Advance(absl::Seconds(3));
  EXPECT_FALSE((*tokens)->Lookup("old").ok());
  EXPECT_TRUE((*tokens)->Lookup("new").ok());
  EXPECT_EQ((*tokens)->CertificateRole("carol"), Role::kOperator);
  EXPECT_EQ((*tokens)->CertificateRole("dave"), Role::kUser);

  // A broken file refuses everything, even tokens that were valid.
  WriteFile(path, TokenLine("new", "alice user") + "garbage\n");
  clock.Advance(absl::Seconds(3));
  absl::StatusOr<Identity> refused = (*tokens)->Lookup("new");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(refused.status().message().find(":2:"), std::string::npos) << refused.status();

  WriteFile(path, TokenLine("new", "alice user"));
  clock.Advance(absl::Seconds(3));
  EXPECT_TRUE((*tokens)->Lookup("new").ok());
}

TEST(TokenFileTest, RefusesAWorldWritableFile) {
  const std::string path = TempPath("tokens-open");
  WriteFile(path, TokenLine("t", "alice user"));
  chmod(path.c_str(), 0666);
  FakeClock clock;
  EXPECT_FALSE(TokenFile::Load(path, &clock).ok());
}

Identity Caller(const std::string& user, Role role) {
  Identity identity;
  identity.user = user;
  identity.role = role;
  return identity;
}

v1::Job JobOf(const std::string& user) {
  v1::Job job;
  job.set_id("job-1");
  job.mutable_spec()->set_user(user);
  (*job.mutable_spec()->mutable_env())["SECRET"] = "hunter2";
  return job;
}

TEST(AccessPolicyTest, SubmitOwnsTheJob) {
  v1::JobSpec spec;
  ASSERT_TRUE(AuthorizeSubmit(Caller("alice", Role::kUser), &spec).ok());
  EXPECT_EQ(spec.user(), "alice");
  spec.set_user("bob");
  EXPECT_EQ(AuthorizeSubmit(Caller("alice", Role::kUser), &spec).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(AuthorizeSubmit(Caller("ops", Role::kOperator), &spec).ok());
  EXPECT_EQ(spec.user(), "bob");
  spec.set_user("Not A User");
  EXPECT_FALSE(AuthorizeSubmit(Caller("ops", Role::kOperator), &spec).ok());
}

TEST(AccessPolicyTest, UsersSeeOnlyTheirJobsOperatorsSeeAll) {
  const v1::Job job = JobOf("bob");
  EXPECT_TRUE(AuthorizeJob(Caller("bob", Role::kUser), job, "get").ok());
  EXPECT_EQ(AuthorizeJob(Caller("alice", Role::kUser), job, "cancel").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(AuthorizeJob(Caller("ops", Role::kOperator), job, "cancel").ok());
  EXPECT_TRUE(AuthorizeJob(Caller("root", Role::kAdmin), job, "cancel").ok());
  EXPECT_EQ(AuthorizeOperator(Caller("alice", Role::kUser), "set power caps").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(AuthorizeOperator(Caller("ops", Role::kOperator), "list nodes").ok());
}

TEST(AccessPolicyTest, EnvValuesOnlyForOwnersAndOperators) {
  v1::Job job = JobOf("bob");
  RedactForViewer(Caller("bob", Role::kUser), &job);
  EXPECT_EQ(job.spec().env().at("SECRET"), "hunter2");
  RedactForViewer(Caller("ops", Role::kOperator), &job);
  EXPECT_EQ(job.spec().env().at("SECRET"), "hunter2");
  RedactForViewer(Caller("alice", Role::kUser), &job);
  EXPECT_EQ(job.spec().env().at("SECRET"), "<redacted>");
}

TEST(AccessPolicyTest, RequestIdsArePerUser) {
  EXPECT_NE(ScopedRequestId(Caller("alice", Role::kUser), "r1"),
            ScopedRequestId(Caller("bob", Role::kUser), "r1"));
  EXPECT_EQ(ScopedRequestId(Caller("alice", Role::kUser), ""), "");
}

}  // namespace
}  // namespace joule
