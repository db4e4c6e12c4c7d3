#include "common/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "common/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"

namespace joule {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

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

TEST(MetricsHttpTest, BeyondLoopbackNeedsAnAuthFile) {
  auto registry = std::make_shared<prometheus::Registry>();
  for (const char* listen : {"0.0.0.0:0", "[::]:0", "10.1.2.3:9100", "node-1:9100"}) {
    absl::StatusOr<std::unique_ptr<prometheus::Exposer>> started =
        StartMetricsServer(listen, registry, nullptr);
    EXPECT_TRUE(absl::IsInvalidArgument(started.status())) << listen;
    EXPECT_THAT(started.status().message(), HasSubstr("--metrics-auth-file")) << listen;
    EXPECT_THAT(started.status().message(), HasSubstr(listen));
  }
  for (const char* listen : {"127.0.0.1:0", "localhost:0", "[::1]:0"}) {
    absl::StatusOr<std::unique_ptr<prometheus::Exposer>> started =
        StartMetricsServer(listen, registry, nullptr);
    EXPECT_FALSE(absl::IsInvalidArgument(started.status()))
        << listen << ": " << started.status();
  }
}

// ---- Slow clients and authentication ----

// A TCP connection to "127.0.0.1:PORT", closed when the object goes.
class Connection {
 public:
  explicit Connection(const std::string& address) {
    const size_t colon = address.rfind(':');
    int port = 0;
    if (!absl::SimpleAtoi(address.substr(colon + 1), &port)) return;
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Connection() {
    if (fd_ >= 0) close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool Send(const std::string& bytes) {
    return fd_ >= 0 && write(fd_, bytes.data(), bytes.size()) ==
                           static_cast<ssize_t>(bytes.size());
  }

  // Everything the server sends until it closes the connection, or what
  // arrived by `deadline` (then `*in_time` is false).
  std::string ReadUntilClosed(absl::Time deadline, bool* in_time) {
    std::string out;
    *in_time = false;
    while (fd_ >= 0) {
      const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (left_ms <= 0) return out;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left_ms)) <= 0) continue;
      char buffer[65536];
      const ssize_t n = read(fd_, buffer, sizeof(buffer));
      if (n <= 0) {
        *in_time = true;
        return out;
      }
      out.append(buffer, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
};

// GET /metrics with these extra header lines, answered within `within`
// (measured against that deadline, not slept): the response, or "" when it
// did not come whole in time.
std::string Scrape(const std::string& address, absl::Duration within,
                   const std::string& headers = "") {
  const absl::Time deadline = absl::Now() + within;
  Connection connection(address);
  if (!connection.Send(absl::StrCat("GET /metrics HTTP/1.1\r\nHost: ", address, "\r\n",
                                    headers, "Connection: close\r\n\r\n"))) {
    return "";
  }
  bool in_time = false;
  std::string response = connection.ReadUntilClosed(deadline, &in_time);
  return in_time ? response : "";
}

std::string BasicAuth(const std::string& user, const std::string& password) {
  return absl::StrCat("Authorization: Basic ", absl::Base64Escape(user + ":" + password),
                      "\r\n");
}

std::shared_ptr<prometheus::Registry> OneCounter() {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("joule_test_events_total")
      .Help("Events seen by the test.")
      .Register(*registry)
      .Add({})
      .Increment(7);
  return registry;
}

TEST(MetricsHttpTest, IdleAndStalledClientsDoNotStarveScrapes) {
  auto registry = OneCounter();
  std::string bound;
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
      StartMetricsServer("127.0.0.1:0", registry, &bound);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  // Idle connections that never send a byte, and one that sends half a
  // request and stalls.
  std::vector<std::unique_ptr<Connection>> idle;
  for (int i = 0; i < 8; ++i) {
    idle.push_back(std::make_unique<Connection>(bound));
    ASSERT_TRUE(idle.back()->connected());
  }
  Connection stalled(bound);
  ASSERT_TRUE(stalled.Send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "));
  const std::string scraped = Scrape(bound, absl::Seconds(2));
  EXPECT_THAT(scraped, HasSubstr("200 OK"));
  EXPECT_THAT(scraped, HasSubstr("joule_test_events_total 7"));
}

TEST(MetricsHttpTest, SlowClientsLoseTheirWorkerAtTheRequestTimeout) {
  auto registry = OneCounter();
  MetricsServerOptions options;
  options.worker_threads = 2;
  options.request_timeout = absl::Milliseconds(300);
  std::string bound;
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
      StartMetricsServer("127.0.0.1:0", registry, &bound, options);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  // More slow clients than workers: each holds one only until the timeout.
  std::vector<std::unique_ptr<Connection>> slow;
  for (int i = 0; i < 4; ++i) {
    slow.push_back(std::make_unique<Connection>(bound));
    ASSERT_TRUE(slow.back()->connected());
    ASSERT_TRUE(slow.back()->Send("GET /metr"));
  }
  // Four timeouts of 0.3 s on two workers, then the scrape; without the
  // timeout this would wait for the clients (civetweb's default is 30 s).
  const std::string scraped = Scrape(bound, absl::Seconds(3));
  EXPECT_THAT(scraped, HasSubstr("200 OK"));
  // The stalled clients were answered and closed, not left hanging.
  bool closed = false;
  slow[0]->ReadUntilClosed(absl::Now() + absl::Seconds(1), &closed);
  EXPECT_TRUE(closed);
}

class MetricsAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auth_file_ = absl::StrCat(::testing::TempDir(), "/metrics-auth-", getpid());
    WriteAuth("prometheus", "s3cret");
    MetricsServerOptions options;
    options.auth_file = auth_file_;
    options.clock = &clock_;
    options.auth_reload_interval = absl::Seconds(2);
    absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
        StartMetricsServer("127.0.0.1:0", registry_, &bound_, options);
    ASSERT_TRUE(exposer.ok()) << exposer.status();
    exposer_ = *std::move(exposer);
  }

  // Replaces the file the way a Kubernetes Secret update does.
  void WriteAuth(const std::string& user, const std::string& password) {
    const std::string tmp = auth_file_ + ".tmp";
    std::ofstream(tmp) << "# scrapers\n" << user << " sha256:" << Sha256Hex(password) << "\n";
    ASSERT_EQ(std::rename(tmp.c_str(), auth_file_.c_str()), 0);
  }

  FakeClock clock_;
  std::shared_ptr<prometheus::Registry> registry_ = OneCounter();
  std::string auth_file_;
  std::string bound_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

TEST_F(MetricsAuthTest, WantsTheFilesCredentials) {
  const std::string none = Scrape(bound_, absl::Seconds(2));
  EXPECT_THAT(none, HasSubstr("401"));
  EXPECT_THAT(none, HasSubstr("WWW-Authenticate: Basic"));
  EXPECT_THAT(none, Not(HasSubstr("joule_test_events_total")));
  const std::string wrong = Scrape(bound_, absl::Seconds(2), BasicAuth("prometheus", "guess"));
  EXPECT_THAT(wrong, HasSubstr("401"));
  EXPECT_THAT(wrong, Not(HasSubstr("joule_test_events_total")));
  EXPECT_THAT(Scrape(bound_, absl::Seconds(2), BasicAuth("root", "s3cret")), HasSubstr("401"));
  const std::string right = Scrape(bound_, absl::Seconds(2), BasicAuth("prometheus", "s3cret"));
  EXPECT_THAT(right, HasSubstr("200 OK"));
  EXPECT_THAT(right, HasSubstr("joule_test_events_total 7"));
}

TEST_F(MetricsAuthTest, AChangedFileIsUsedWithoutARestart) {
  ASSERT_THAT(Scrape(bound_, absl::Seconds(2), BasicAuth("prometheus", "s3cret")),
              HasSubstr("200 OK"));
  WriteAuth("prometheus", "rotated");
  clock_.Advance(absl::Seconds(2));
  EXPECT_THAT(Scrape(bound_, absl::Seconds(2), BasicAuth("prometheus", "rotated")),
              HasSubstr("200 OK"));
  EXPECT_THAT(Scrape(bound_, absl::Seconds(2), BasicAuth("prometheus", "s3cret")),
              HasSubstr("401"));
}

TEST(MetricsHttpTest, AnUnusableAuthFileIsAnError) {
  auto registry = OneCounter();
  MetricsServerOptions options;
  options.auth_file = absl::StrCat(::testing::TempDir(), "/no-such-auth-file");
  const absl::Status status =
      StartMetricsServer("127.0.0.1:0", registry, nullptr, options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("--metrics-auth-file"));
  EXPECT_THAT(status.message(), HasSubstr("no-such-auth-file"));
}

}  // namespace
}  // namespace joule
