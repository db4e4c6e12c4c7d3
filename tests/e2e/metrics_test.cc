// Metrics end to end: Debian's real Prometheus, on loopback, scrapes a real
// scheduler and two real agents while a real job runs. The series the README
// documents exist with sane values, a finished job's energy counter equals
// what `joulectl get` reports, both endpoints pass `promtool check metrics`,
// and every PromQL expression of the Grafana dashboard returns data (the
// alert rules' expressions parse and every series they read exists).


#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/process/task_process.h"
#include "common/test_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/e2e/test_cluster.h"
#include "tests/etcd/etcd_server.h"

namespace joule {
namespace {

using ::testing::HasSubstr;

std::string UrlEncode(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::StrFormat("%02X", c));
    }
  }
  return out;
}

// The result of an instant query: (labels, value) per series, or an error
// with Prometheus's message.
struct Sample {
  std::map<std::string, std::string> labels;
  double value = 0;
};
absl::StatusOr<std::vector<Sample>> Query(const std::string& prometheus,
                                          const std::string& expr) {
  const std::string body =
      HttpBody(HttpGet(prometheus, absl::StrCat("/api/v1/query?query=", UrlEncode(expr))));
  google::protobuf::Struct json;
  if (body.empty() || !google::protobuf::util::JsonStringToMessage(body, &json).ok()) {
    return absl::UnavailableError(absl::StrCat("no JSON answer for ", expr, ": ", body));
  }
  const auto& fields = json.fields();
  if (fields.at("status").string_value() != "success") {
    return absl::InvalidArgumentError(absl::StrCat(
        expr, ": ", fields.count("error") ? fields.at("error").string_value() : body));
  }
  const google::protobuf::Struct& data = fields.at("data").struct_value();
  std::vector<Sample> samples;
  const std::string type = data.fields().at("resultType").string_value();
  const google::protobuf::Value& result = data.fields().at("result");
  if (type == "scalar") {
    Sample sample;
    absl::SimpleAtod(result.list_value().values(1).string_value(), &sample.value);
    samples.push_back(sample);
    return samples;
  }
  for (const google::protobuf::Value& series : result.list_value().values()) {
    Sample sample;
    for (const auto& [name, value] : series.struct_value().fields().at("metric").struct_value().fields()) {
      sample.labels[name] = value.string_value();
    }
    absl::SimpleAtod(
        series.struct_value().fields().at("value").list_value().values(1).string_value(),
        &sample.value);
    samples.push_back(sample);
  }
  return samples;
}

// One value of a query that must return exactly one series.
double One(const std::string& prometheus, const std::string& expr) {
  absl::StatusOr<std::vector<Sample>> samples = Query(prometheus, expr);
  EXPECT_TRUE(samples.ok()) << samples.status();
  if (!samples.ok()) return NAN;
  EXPECT_EQ(samples->size(), 1u) << expr;
  return samples->empty() ? NAN : samples->front().value;
}

// (source, expression) pairs of the dashboard or the alert rules ("dashboard"
// or "alerts"), from tests/metrics/dashboard_exprs.py, with Grafana's
// $__ variables already filled in.
std::vector<std::pair<std::string, std::string>> Expressions(const std::string& kind) {
  absl::StatusOr<std::string> out = etcd::RunProgram(
      {"python3", RunfilePath("tests/metrics/dashboard_exprs.py"), "--only", kind,
       "--dashboard", RunfilePath("deploy/grafana/dashboards/joule.json"), "--rules",
       RunfilePath("deploy/prometheus/alerts.yml")});
  EXPECT_TRUE(out.ok()) << out.status();
  std::vector<std::pair<std::string, std::string>> exprs;
  if (!out.ok()) return exprs;
  for (absl::string_view line : absl::StrSplit(*out, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> pair = absl::StrSplit(line, absl::MaxSplits('\t', 1));
    exprs.push_back(pair);
  }
  return exprs;
}

// Grafana's variables as a dashboard load would fill them.
std::string Substitute(std::string expr) {
  expr = absl::StrReplaceAll(expr, {{"$__rate_interval", "1m"},
                                    {"$__interval", "15s"},
                                    {"$__range", "5m"}});
  // Any other $variable: every value (template variables are regex-matched).
  return std::regex_replace(expr, std::regex(R"(\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)"), ".*");
}

TEST(MetricsEndToEndTest, PrometheusScrapesBothBinariesAndEveryPanelHasData) {
  TestCluster cluster("metrics");
  const std::string carbon = cluster.WriteFile(
      "carbon.yaml",
      "currency: EUR\ndefault: {intensity_g_per_kwh: 400, price_per_kwh: 0.25}\n");
  cluster.StartScheduler("127.0.0.1:0",
                         {"--metrics-listen=127.0.0.1:0", "--profile-step-w=50",
                          "--profile-warmup=0.5", "--profile-window=1",
                          absl::StrCat("--carbon-config=", carbon)});
  cluster.SetAgentFlags({"--metrics-listen=127.0.0.1:0", "--telemetry-period=0.25"});
  cluster.StartAgent("gpu-a", "V100:1");
  cluster.StartAgent("gpu-b", "A40:1");
  const std::string scheduler_metrics = cluster.WaitForLine("scheduler.out", "metrics on ");
  const std::string agent_a = cluster.WaitForLine("agent-gpu-a.out", "metrics on ");
  const std::string agent_b = cluster.WaitForLine("agent-gpu-b.out", "metrics on ");
  ASSERT_FALSE(scheduler_metrics.empty());
  ASSERT_FALSE(agent_a.empty());
  ASSERT_FALSE(agent_b.empty());

  // Both exporters pass promtool's lint.
  for (const auto& [name, address] :
       std::vector<std::pair<std::string, std::string>>{
           {"scheduler", scheduler_metrics}, {"agent", agent_a}}) {
    const std::string text = HttpBody(HttpGet(address, "/metrics"));
    ASSERT_THAT(text, HasSubstr("# TYPE joule_")) << name;
    const absl::Status promtool = PromtoolCheckMetrics(text);
    EXPECT_TRUE(promtool.ok()) << name << ": " << promtool;
  }

  // Prometheus scrapes all three every second and evaluates the alert rules.
  absl::StatusOr<int> port = etcd::PickUnusedLoopbackPort();
  ASSERT_TRUE(port.ok());
  const std::string prometheus = absl::StrCat("127.0.0.1:", *port);
  const std::string config = cluster.WriteFile(
      "prometheus.yml",
      absl::StrCat("global: {scrape_interval: 1s, evaluation_interval: 1s}\n",
                   "rule_files: ['", RunfilePath("deploy/prometheus/alerts.yml"), "']\n",
                   "scrape_configs:\n",
                   // As deploy/prometheus/prometheus.yml: Joule's `job` label
                   // (the job id) is kept, not renamed to exported_job.
                   "  - job_name: joule-scheduler\n    honor_labels: true\n",
                   "    static_configs: [{targets: ['", scheduler_metrics, "']}]\n",
                   "  - job_name: joule-agent\n    honor_labels: true\n",
                   "    static_configs: [{targets: ['", agent_a, "', '", agent_b, "']}]\n"));
  absl::StatusOr<std::string> binary = etcd::FindOnPath("prometheus");
  ASSERT_TRUE(binary.ok()) << "prometheus not found on PATH; run scripts/setup.sh";
  SpawnOptions options;
  options.path = *binary;
  options.args = {absl::StrCat("--config.file=", config),
                  absl::StrCat("--storage.tsdb.path=", cluster.dir(), "/tsdb"),
                  absl::StrCat("--web.listen-address=", prometheus)};
  options.stdout_path = cluster.dir() + "/prometheus.out";
  options.stderr_path = cluster.dir() + "/prometheus.err";
  absl::StatusOr<std::unique_ptr<TaskProcess>> server = TaskProcess::Spawn(options);
  ASSERT_TRUE(server.ok()) << server.status();
  struct Reaper {
    TaskProcess* process;
    ~Reaper() {
      process->KillGroup();
      WaitFor([&] { return process->Poll().has_value(); }, absl::Seconds(10));
    }
  } reaper{server->get()};
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::vector<Sample>> up = Query(prometheus, "up == 1");
        return up.ok() && up->size() == 3;
      },
      absl::Seconds(30)))
      << ReadAll(cluster.dir() + "/prometheus.err");

  // A training job, profiled (a saving), with a budget it stays within.
  const std::string job_file = cluster.WriteFile(
      "train.yaml",
      absl::StrCat("name: train\ncommand: ", RunfilePath("examples/mlp_trainer"),
                   "\nargs: [\"--epochs\", \"12\", \"--samples-per-shard\", \"256\", "
                   "\"--sim-step-ms\", \"100\"]\n",
                   "resources: {gpus: 1, gpu_model: V100}\nshard_count: 2\nuser: alice\n",
                   "energy_budget_j: 1000000000\n"));
  CtlResult submit = cluster.Ctl({"submit", "-q", "-f", job_file});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  const std::string id(absl::StripAsciiWhitespace(submit.out));
  CtlResult watch = cluster.Ctl({"watch", id});
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  absl::StatusOr<v1::Job> job = cluster.GetJob(id);
  ASSERT_TRUE(job.ok());
  ASSERT_GT(job->energy().total_j(), 0);

  // The finished job's counters reach Prometheus and match `joulectl get`.
  const std::string energy_expr =
      absl::StrCat("sum(joule_job_energy_joules_total{job=\"", id, "\"})");
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::vector<Sample>> energy = Query(prometheus, energy_expr);
        return energy.ok() && energy->size() == 1 &&
               std::abs(energy->front().value - job->energy().total_j()) <=
                   1e-6 * job->energy().total_j() + 0.01;
      },
      absl::Seconds(15)))
      << "Prometheus: " << One(prometheus, energy_expr)
      << " J, joulectl get: " << job->energy().total_j() << " J";
  EXPECT_NEAR(One(prometheus, absl::StrCat("joule_job_co2e_grams_total{job=\"", id, "\"}")),
              job->footprint().co2e_g(), 1e-6 * job->footprint().co2e_g() + 1e-3);
  EXPECT_NEAR(job->footprint().co2e_g(), job->energy().total_j() / 3.6e6 * 400,
              1e-6 * job->footprint().co2e_g() + 1e-3);
  EXPECT_NEAR(One(prometheus, absl::StrCat("joule_job_cost_total{job=\"", id, "\"}")),
              job->footprint().cost(), 1e-6 * job->footprint().cost() + 1e-6);

  // Sane values.
  EXPECT_GT(One(prometheus, "joule_cluster_power_watts"), 0);
  EXPECT_EQ(One(prometheus, "joule_jobs{state=\"succeeded\"}"), 1);
  EXPECT_EQ(One(prometheus, "joule_leader"), 1);
  const double power = One(prometheus, "joule_device_power_watts{node=\"gpu-a\",kind=\"gpu\"}");
  EXPECT_GT(power, 0);
  EXPECT_LT(power, 400);
  const double temperature =
      One(prometheus, "joule_device_temperature_celsius{node=\"gpu-b\",kind=\"gpu\"}");
  EXPECT_GT(temperature, 10);
  EXPECT_LT(temperature, 120);
  EXPECT_GT(One(prometheus, "joule_device_energy_joules_total{node=\"gpu-a\",kind=\"gpu\"}"), 0);
  EXPECT_GT(One(prometheus, "sum(joule_cap_changes_total{reason=\"profiling\"})"), 0);
  EXPECT_EQ(One(prometheus, "joule_cost_currency_info{currency=\"EUR\"}"), 1);

  // Every dashboard panel has data.
  const std::vector<std::pair<std::string, std::string>> panels = Expressions("dashboard");
  EXPECT_GE(panels.size(), 6u);
  for (const auto& [panel, expr] : panels) {
    absl::StatusOr<std::vector<Sample>> result = Query(prometheus, Substitute(expr));
    ASSERT_TRUE(result.ok()) << "panel \"" << panel << "\": " << result.status();
    EXPECT_FALSE(result->empty()) << "panel \"" << panel << "\" has no data: " << expr;
  }
  // Every alert expression parses and evaluates, and every series it reads
  // exists (the alerts themselves are quiet in a healthy cluster).
  const std::vector<std::pair<std::string, std::string>> alerts = Expressions("alerts");
  EXPECT_GE(alerts.size(), 4u);
  const std::regex metric_name(R"(\b(joule_[a-z_]+|up)\b)");
  for (const auto& [alert, expr] : alerts) {
    absl::StatusOr<std::vector<Sample>> result = Query(prometheus, expr);
    EXPECT_TRUE(result.ok()) << "alert " << alert << ": " << result.status();
    for (std::sregex_iterator it(expr.begin(), expr.end(), metric_name), end; it != end;
         ++it) {
      absl::StatusOr<std::vector<Sample>> series =
          Query(prometheus, absl::StrCat("count(", it->str(), ")"));
      ASSERT_TRUE(series.ok()) << series.status();
      EXPECT_FALSE(series->empty()) << "alert " << alert << " reads " << it->str()
                                    << ", which has no series";
    }
  }
}

}  // namespace
}  // namespace joule
