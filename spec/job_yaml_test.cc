#include "spec/job_yaml.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "joule/v1/job.pb.h"
#include "spec/job_validation.h"

namespace joule {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::joule::v1::JobSpec;

constexpr char kExample[] = R"yaml(# The README's example job.
name: mnist-mlp
type: training            # training | inference
command: /opt/jobs/mlp_trainer
args: ["--epochs", "3"]
env: {LOG_LEVEL: info}
resources:
  gpus: 1
  cpus: 2
  memory: 2Gi
  gpu_model: V100
replicas: 2
batch_size: {default: 64, min: 16, max: 256}
shard_count: 16
objective: {max_slowdown: 1.1}
labels: {team: vision}
user: alice
job_class: mnist
working_dir: /tmp
expected_samples: 3e6
placement_profile: first-fit
)yaml";

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

TEST(ParseJobYamlTest, FullExample) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml(kExample);
  ASSERT_TRUE(spec.ok()) << spec.status();

  JobSpec want;
  want.set_name("mnist-mlp");
  want.set_type(joule::v1::JOB_TYPE_TRAINING);
  want.set_command("/opt/jobs/mlp_trainer");
  want.add_args("--epochs");
  want.add_args("3");
  (*want.mutable_env())["LOG_LEVEL"] = "info";
  want.mutable_resources()->set_gpus(1);
  want.mutable_resources()->set_cpus(2);
  want.mutable_resources()->set_memory_bytes(int64_t{2} << 30);
  want.mutable_resources()->set_gpu_model("V100");
  want.set_replicas(2);
  want.mutable_batch_size()->set_default_size(64);
  want.mutable_batch_size()->set_min(16);
  want.mutable_batch_size()->set_max(256);
  want.set_shard_count(16);
  want.mutable_objective()->set_max_slowdown(1.1);
  (*want.mutable_labels())["team"] = "vision";
  want.set_user("alice");
  want.set_job_class("mnist");
  want.set_working_dir("/tmp");
  want.set_expected_samples(3e6);
  want.set_placement_profile("first-fit");
  EXPECT_TRUE(MessageDifferencer::Equals(*spec, want))
      << spec->DebugString() << "\nwant:\n"
      << want.DebugString();

  // What the client parses, the server accepts.
  JobSpec defaulted = *spec;
  ApplyJobSpecDefaults(&defaulted);
  EXPECT_TRUE(
      ValidateJobSpec(defaulted, absl::FromUnixSeconds(1800000000)).ok());
}

TEST(ParseJobYamlTest, AlternativeSpellings) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml(R"yaml(
type: Inference
resources: {memory_bytes: 1000, cpus: 0.5}
batch_size: {default_size: 8}
objective: {deadline: "2026-12-01T10:00:00Z"}
args: [--port, 8080, true]
env: {N: 1}
)yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->type(), joule::v1::JOB_TYPE_INFERENCE);
  EXPECT_EQ(spec->resources().memory_bytes(), 1000);
  EXPECT_EQ(spec->resources().cpus(), 0.5);
  EXPECT_EQ(spec->batch_size().default_size(), 8);
  ASSERT_TRUE(spec->objective().has_deadline());
  EXPECT_EQ(spec->objective().deadline().seconds(), 1796119200);
  EXPECT_EQ(spec->objective().deadline().nanos(), 0);
  ASSERT_EQ(spec->args_size(), 3);
  EXPECT_EQ(spec->args(1), "8080");
  EXPECT_EQ(spec->args(2), "true");
  EXPECT_EQ(spec->env().at("N"), "1");
}

TEST(ParseJobYamlTest, Deadlines) {
  struct DeadlineCase {
    std::string text;
    int64_t seconds;
    int32_t nanos;
  };
  const std::vector<DeadlineCase> cases = {
      {"2026-12-01T10:00:00Z", 1796119200, 0},
      {"2026-12-01T10:00:00.25+02:00", 1796119200 - 7200, 250000000},
      {"2026-12-01t10:00:00z", 1796119200, 0},
      // Before the epoch, nanos still count forward from `seconds`.
      {"1969-12-31T23:59:59.5Z", -1, 500000000},
  };
  for (const DeadlineCase& c : cases) {
    absl::StatusOr<JobSpec> spec =
        ParseJobYaml(absl::StrCat("objective:\n  deadline: ", c.text, "\n"));
    ASSERT_TRUE(spec.ok()) << c.text << ": " << spec.status();
    EXPECT_EQ(spec->objective().deadline().seconds(), c.seconds) << c.text;
    EXPECT_EQ(spec->objective().deadline().nanos(), c.nanos) << c.text;
  }
}

TEST(ParseJobYamlTest, PresenceFollowsTheFile) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml("name: a\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(spec->has_resources());
  EXPECT_FALSE(spec->has_replicas());
  EXPECT_FALSE(spec->has_objective());

  spec = ParseJobYaml("resources: {gpus: 0}\nreplicas: 0\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->resources().has_gpus());
  EXPECT_EQ(spec->resources().gpus(), 0);
  EXPECT_FALSE(spec->resources().has_cpus());
  EXPECT_FALSE(spec->resources().has_memory_bytes());
  EXPECT_TRUE(spec->has_replicas());
  EXPECT_EQ(spec->replicas(), 0);

  // A null value is the same as a missing key.
  spec = ParseJobYaml("resources:\n  gpus:\n  cpus: ~\nreplicas: null\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(spec->resources().has_gpus());
  EXPECT_FALSE(spec->resources().has_cpus());
  EXPECT_FALSE(spec->has_replicas());

  // Defaults then fill only what is missing.
  spec = ParseJobYaml("name: a\nresources: {gpus: 0, memory: 1Gi}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ApplyJobSpecDefaults(&*spec);
  EXPECT_EQ(spec->resources().gpus(), 0);
  EXPECT_EQ(spec->resources().cpus(), kDefaultCpus);
  EXPECT_EQ(spec->resources().memory_bytes(), int64_t{1} << 30);
}

TEST(ParseJobYamlTest, NegativeAndNonFiniteNumbersPassThrough) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml(R"yaml(
resources: {gpus: -1, cpus: -2.5, memory: -1Gi}
replicas: -3
shard_count: -4
batch_size: {min: -5}
objective: {max_slowdown: .nan}
)yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->resources().gpus(), -1);
  EXPECT_EQ(spec->resources().cpus(), -2.5);
  EXPECT_EQ(spec->resources().memory_bytes(), -(int64_t{1} << 30));
  EXPECT_EQ(spec->replicas(), -3);
  EXPECT_EQ(spec->shard_count(), -4);
  EXPECT_EQ(spec->batch_size().min(), -5);
  EXPECT_TRUE(std::isnan(spec->objective().max_slowdown()));

  spec = ParseJobYaml(
      "resources: {cpus: .inf}\nobjective:\n"
      "  energy_time_weight: -.Inf\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->resources().cpus(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(spec->objective().energy_time_weight(),
            -std::numeric_limits<double>::infinity());
}

TEST(ParseJobYamlTest, QuotedNumbersAreAccepted) {
  absl::StatusOr<JobSpec> spec =
      ParseJobYaml("resources: {gpus: \"2\", memory: '3Gi'}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->resources().gpus(), 2);
  EXPECT_EQ(spec->resources().memory_bytes(), int64_t{3} << 30);
}

struct ErrorCase {
  std::string name;
  std::string yaml;
  // The whole message, or (with prefix_only) how it starts.
  std::string want;
  bool prefix_only = false;
};

TEST(ParseJobYamlTest, Errors) {
  const std::string kAllowedJobFields =
      "allowed: name, type, command, args, env, resources, replicas, "
      "batch_size, shard_count, objective, labels, user, job_class, "
      "working_dir, pin_max_cap, energy_budget_j, early_stop, latency_slo_ms, "
      "restart_policy, expected_samples, placement_profile";
  const std::vector<ErrorCase> cases = {
      {"not_an_integer", "name: a\ncommand: x\nresources:\n  gpus: two\n",
       "line 4, column 9: resources.gpus: expected an integer, got \"two\""},
      {"float_for_integer", "shard_count: 1.5\n",
       "line 1, column 14: shard_count: expected an integer, got \"1.5\""},
      {"int32_overflow", "replicas: 2147483648\n",
       "line 1, column 11: replicas: \"2147483648\" is out of range for a "
       "32-bit integer [-2147483648, 2147483647]"},
      {"int32_underflow", "batch_size:\n  max: -2147483649\n",
       "line 2, column 8: batch_size.max: \"-2147483649\" is out of range",
       true},
      {"int64_overflow", "resources:\n  memory_bytes: 9223372036854775808\n",
       "line 2, column 17: resources.memory_bytes: \"9223372036854775808\" is "
       "out of range for a 64-bit integer"},
      {"not_a_number", "resources: {cpus: lots}\n",
       "line 1, column 19: resources.cpus: expected a number, got \"lots\""},
      {"hex_is_not_a_number", "objective: {max_slowdown: 0x10}\n",
       "line 1, column 27: objective.max_slowdown: expected a number, got "
       "\"0x10\""},
      {"unknown_field", "name: a\ntype: training\ncomand: x\n",
       "line 3, column 1: unknown field \"comand\"; " + kAllowedJobFields},
      {"unknown_nested_field", "resources:\n  gpu: 1\n",
       "line 2, column 3: resources: unknown field \"gpu\"; allowed: gpus, "
       "cpus, memory, memory_bytes, gpu_model"},
      {"unknown_batch_field", "batch_size: {mid: 3}\n",
       "line 1, column 14: batch_size: unknown field \"mid\"; allowed: "
       "default, default_size, min, max"},
      {"unknown_objective_field", "objective:\n  min_energy: 1\n",
       "line 2, column 3: objective: unknown field \"min_energy\"; allowed: "
       "max_slowdown, deadline, energy_time_weight"},
      {"duplicate_field", "name: a\ncommand: x\nname: b\n",
       "line 3, column 1: duplicate field \"name\""},
      {"duplicate_null_field", "replicas:\nreplicas: 2\n",
       "line 2, column 1: duplicate field \"replicas\""},
      {"duplicate_nested_field", "resources:\n  gpus: 1\n  gpus: 2\n",
       "line 3, column 3: resources: duplicate field \"gpus\""},
      {"duplicate_env_key", "env:\n  A: 1\n  B: 2\n  A: 3\n",
       "line 4, column 3: env: duplicate key \"A\""},
      {"duplicate_label_key", "labels: {a: x, a: y}\n",
       "line 1, column 16: labels: duplicate key \"a\""},
      {"syntax_unclosed_list", "name: a\nargs: [1, 2\n", "line ", true},
      {"syntax_bad_mapping", "name: a\ncommand: x: y\n",
       "line 2, column 11: invalid YAML: illegal map value"},
      {"syntax_tab_indent", "name: a\n\tcommand: x\n",
       "line 2, column 1: invalid YAML: illegal tab when looking for "
       "indentation"},
      {"syntax_undefined_alias", "name: *who\n",
       "line 1, column 7: invalid YAML: the referenced anchor is not defined"},
      {"empty_document", "",
       "empty document; expected a mapping of job fields"},
      {"only_comments", "# nothing here\n\n",
       "empty document; expected a mapping of job fields"},
      {"only_separator", "---\n",
       "empty document; expected a mapping of job fields"},
      {"two_documents", "name: a\n---\nname: b\n",
       "line 3, column 1: more than one YAML document; a job file holds "
       "exactly one job"},
      {"top_level_list", "- name: a\n",
       "line 1, column 1: expected a mapping of job fields, got a list"},
      {"top_level_scalar", "hello\n",
       "line 1, column 1: expected a mapping of job fields, got \"hello\""},
      {"list_for_mapping", "resources: [1, 2]\n",
       "line 1, column 12: resources: expected a mapping, got a list"},
      {"scalar_for_mapping", "objective: 1.1\n",
       "line 1, column 12: objective: expected a mapping, got \"1.1\""},
      {"mapping_for_list", "args: {a: b}\n",
       "line 1, column 7: args: expected a list of strings, got a mapping"},
      {"scalar_for_list", "args: --epochs\n",
       "line 1, column 7: args: expected a list of strings, got \"--epochs\""},
      {"mapping_in_list", "args:\n  - ok\n  - {a: b}\n",
       "line 3, column 5: args[1]: expected a string, got a mapping"},
      {"null_in_list", "args: [a, ~]\n",
       "line 1, column 11: args[1]: expected a string, got null"},
      {"list_for_string", "name: [a]\n",
       "line 1, column 7: name: expected a string, got a list"},
      {"list_for_env_value", "env: {A: [1]}\n",
       "line 1, column 10: env.A: expected a string, got a list"},
      {"null_env_value", "env: {A: ~}\n",
       "line 1, column 10: env.A: expected a string, got null"},
      {"non_string_key", "{[a]: b}\n",
       "line 1, column 2: expected a string key, got a list"},
      {"bad_type", "type: batch\n",
       "line 1, column 7: type: must be training or inference, got \"batch\""},
      {"bad_quantity_suffix", "resources:\n  memory: 2GB\n",
       "line 2, column 11: resources.memory: bad quantity \"2GB\": unknown "
       "suffix \"GB\"; allowed: Ki, Mi, Gi, Ti (1024-based), k, M, G, T "
       "(1000-based), or none for bytes"},
      {"quantity_not_whole", "resources: {memory: 0.1Ki}\n",
       "line 1, column 21: resources.memory: bad quantity \"0.1Ki\": not a "
       "whole number of bytes"},
      {"quantity_list", "resources: {memory: [1]}\n",
       "line 1, column 21: resources.memory: expected a quantity such as "
       "2Gi, got a list"},
      {"memory_twice", "resources:\n  memory: 1Gi\n  memory_bytes: 5\n",
       "line 3, column 3: resources: set either memory or memory_bytes, not "
       "both"},
      {"batch_default_twice", "batch_size: {default: 1, default_size: 2}\n",
       "line 1, column 26: batch_size: default and default_size are the same "
       "field; set only one"},
      {"two_goals",
       "objective:\n  max_slowdown: 1.2\n  energy_time_weight: 0.5\n",
       "line 3, column 3: objective: at most one of max_slowdown, deadline, "
       "energy_time_weight; got max_slowdown and energy_time_weight"},
      {"bad_deadline", "objective: {deadline: tomorrow}\n",
       "line 1, column 23: objective.deadline: expected an RFC 3339 time such "
       "as \"2026-12-01T10:00:00Z\", got \"tomorrow\""},
      {"deadline_without_zone", "objective: {deadline: 2026-12-01T10:00:00}\n",
       "line 1, column 23: objective.deadline: expected an RFC 3339 time",
       true},
      {"deadline_out_of_range", "objective: {deadline: infinite-future}\n",
       "line 1, column 23: objective.deadline: \"infinite-future\" is out of "
       "range; allowed: years 0001 to 9999"},
      {"invalid_utf8_value", "name: a\xff\n",
       "line 1, column 7: name: not valid UTF-8"},
      {"invalid_utf8_key", "env: {a\xfe: x}\n",
       "line 1, column 7: env: key \"a\\xfe\" is not valid UTF-8"},
      {"unknown_restart_policy_field", "restart_policy: {retries: 3}\n",
       "line 1, column 18: restart_policy: unknown field \"retries\"; allowed: "
       "max_retries, backoff_s, max_backoff_s, retry_on"},
      {"max_retries_not_an_integer", "restart_policy: {max_retries: many}\n",
       "line 1, column 31: restart_policy.max_retries: expected an integer, got "
       "\"many\""},
      {"backoff_not_a_number", "restart_policy:\n  backoff_s: 10s\n",
       "line 2, column 14: restart_policy.backoff_s: expected a number, got "
       "\"10s\""},
      {"retry_on_scalar", "restart_policy: {retry_on: lost}\n",
       "line 1, column 28: restart_policy.retry_on: expected a list of lost "
       "and/or failed, got \"lost\""},
      {"retry_on_empty", "restart_policy: {retry_on: []}\n",
       "line 1, column 28: restart_policy.retry_on: empty; list lost and/or "
       "failed (max_retries: 0 never retries)"},
      {"retry_on_unknown", "restart_policy:\n  retry_on: [lost, oom]\n",
       "line 2, column 20: restart_policy.retry_on[1]: must be lost or failed, "
       "got \"oom\""},
      {"restart_policy_scalar", "restart_policy: always\n",
       "line 1, column 17: restart_policy: expected a mapping, got \"always\""},
      {"too_large", std::string(kMaxJobYamlBytes + 1, '#'),
       "job file is 16777217 bytes, at most 16777216 allowed"},
  };
  for (const ErrorCase& c : cases) {
    absl::StatusOr<JobSpec> spec = ParseJobYaml(c.yaml);
    ASSERT_FALSE(spec.ok())
        << c.name << ": parsed as " << spec->ShortDebugString();
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name << ": " << spec.status();
    if (c.prefix_only) {
      EXPECT_TRUE(absl::StartsWith(spec.status().message(), c.want))
          << c.name << ": got \"" << spec.status().message()
          << "\", want prefix \"" << c.want << "\"";
    } else {
      EXPECT_EQ(std::string(spec.status().message()), c.want) << c.name;
    }
  }
}

TEST(ParseJobYamlTest, DeepNestingIsRefused) {
  for (const std::string& yaml :
       {"args: " + std::string(10000, '['),
        "args: " + std::string(10000, '[') + std::string(10000, ']')}) {
    absl::StatusOr<JobSpec> spec = ParseJobYaml(yaml);
    ASSERT_FALSE(spec.ok());
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(spec.status().message(),
                                  "invalid YAML: nested too deeply"))
        << spec.status();
  }
}

TEST(ParseJobYamlTest, SyntaxErrorsCarryPosition) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml("name: a\nargs: [1, 2\n");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(std::string(spec.status().message()),
            "line 3, column 1: invalid YAML: end of sequence flow not found");
}

TEST(ParseQuantityTest, Valid) {
  const std::vector<std::pair<std::string, int64_t>> cases = {
      {"0", 0},
      {"1", 1},
      {"512", 512},
      {"+7", 7},
      {"1Ki", 1024},
      {"512Mi", int64_t{512} << 20},
      {"2Gi", int64_t{2} << 30},
      {"1Ti", int64_t{1} << 40},
      {"64Ti", int64_t{64} << 40},
      {"1k", 1000},
      {"3M", 3000000},
      {"4G", 4000000000},
      {"2T", 2000000000000},
      {"1.5Gi", 1610612736},
      {"0.5Ki", 512},
      {".5Ki", 512},
      {"5.Ki", 5120},
      {"1.000", 1},
      {"0.001k", 1},
      {"007Mi", int64_t{7} << 20},
      {"-1Gi", -(int64_t{1} << 30)},
      {"9223372036854775807", std::numeric_limits<int64_t>::max()},
      {"-9223372036854775808", std::numeric_limits<int64_t>::min()},
      {"-8388608Ti", std::numeric_limits<int64_t>::min()},
  };
  for (const auto& [text, want] : cases) {
    int64_t bytes = -42;
    absl::Status status = ParseQuantity(text, &bytes);
    EXPECT_TRUE(status.ok()) << text << ": " << status;
    EXPECT_EQ(bytes, want) << text;
  }
}

TEST(ParseQuantityTest, Invalid) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "bad quantity \"\": expected a number"},
      {"Gi", "bad quantity \"Gi\": expected a number"},
      {"-", "bad quantity \"-\": expected a number"},
      {".", "bad quantity \".\": expected a number"},
      {"2GB", "bad quantity \"2GB\": unknown suffix \"GB\""},
      {"2gi", "bad quantity \"2gi\": unknown suffix \"gi\""},
      {"2K", "bad quantity \"2K\": unknown suffix \"K\""},
      {"2 Gi", "bad quantity \"2 Gi\": unknown suffix \" Gi\""},
      {"1e9", "bad quantity \"1e9\": unknown suffix \"e9\""},
      {"0x10", "bad quantity \"0x10\": unknown suffix \"x10\""},
      {"--1", "bad quantity \"--1\": expected a number"},
      {"1..5", "bad quantity \"1..5\": unknown suffix \".5\""},
      {"1.5", "bad quantity \"1.5\": not a whole number of bytes"},
      {"0.1Ki", "bad quantity \"0.1Ki\": not a whole number of bytes"},
      {"9223372036854775808",
       "bad quantity \"9223372036854775808\": out of range"},
      {"8388608Ti", "bad quantity \"8388608Ti\": out of range"},
      {"99999999999999999999", "bad quantity \"99999999999999999999\": out"},
      {"1.0000000000000000001",
       "bad quantity \"1.0000000000000000001\": too "
       "many decimal places"},
  };
  for (const auto& [text, want] : cases) {
    int64_t bytes = -42;
    absl::Status status = ParseQuantity(text, &bytes);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_TRUE(absl::StartsWith(status.message(), want))
        << text << ": got \"" << status.message() << "\", want prefix \""
        << want << "\"";
    EXPECT_EQ(bytes, -42) << text << ": output changed on error";
  }
}

TEST(ParseJobYamlFileTest, ReadsAFile) {
  const std::string path = TempDir() + "/job.yaml";
  {
    std::ofstream out(path);
    out << kExample;
  }
  absl::StatusOr<JobSpec> spec = ParseJobYamlFile(path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "mnist-mlp");
  EXPECT_EQ(spec->resources().memory_bytes(), int64_t{2} << 30);
}

TEST(ParseJobYamlFileTest, ErrorsNameTheFile) {
  const std::string path = TempDir() + "/bad.yaml";
  {
    std::ofstream out(path);
    out << "name: a\nresources:\n  gpus: two\n";
  }
  absl::StatusOr<JobSpec> spec = ParseJobYamlFile(path);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(spec.status().message()),
            path +
                ": line 3, column 9: resources.gpus: expected an integer, "
                "got \"two\"");
}

TEST(ParseJobYamlFileTest, MissingFile) {
  const std::string path = TempDir() + "/no-such-job.yaml";
  absl::StatusOr<JobSpec> spec = ParseJobYamlFile(path);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StartsWith(spec.status().message(), path + ": "))
      << spec.status();
}

TEST(ParseJobYamlFileTest, Directory) {
  absl::StatusOr<JobSpec> spec = ParseJobYamlFile(TempDir());
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseJobYamlFileTest, RefusesLargeFileBeforeReading) {
  const std::string path = TempDir() + "/huge.yaml";
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  // Sparse: costs no disk, and would take a while to parse if it were read.
  ASSERT_EQ(ftruncate(fd, kMaxJobYamlBytes + 1), 0);
  close(fd);
  absl::StatusOr<JobSpec> spec = ParseJobYamlFile(path);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(spec.status().message()),
            path + ": job file is 16777217 bytes, at most 16777216 allowed");
}

TEST(ParseJobYamlFileTest, AcceptsFileAtTheLimit) {
  const std::string path = TempDir() + "/limit.yaml";
  {
    std::ofstream out(path);
    std::string content = "name: a\n";
    content.resize(kMaxJobYamlBytes - 1, ' ');
    content += "\n";
    out << content;
  }
  absl::StatusOr<JobSpec> spec = ParseJobYamlFile(path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "a");
}


TEST(ParseJobYamlTest, RestartPolicy) {
  absl::StatusOr<JobSpec> spec = ParseJobYaml(
      "restart_policy:\n"
      "  max_retries: 5\n"
      "  backoff_s: 2.5\n"
      "  max_backoff_s: 60\n"
      "  retry_on: [lost, Failed]\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const joule::v1::RestartPolicy& policy = spec->restart_policy();
  ASSERT_TRUE(policy.has_max_retries());
  EXPECT_EQ(policy.max_retries(), 5);
  EXPECT_DOUBLE_EQ(policy.backoff_s(), 2.5);
  EXPECT_DOUBLE_EQ(policy.max_backoff_s(), 60);
  ASSERT_EQ(policy.retry_on_size(), 2);
  EXPECT_EQ(policy.retry_on(0), joule::v1::RETRY_ON_LOST);
  EXPECT_EQ(policy.retry_on(1), joule::v1::RETRY_ON_FAILED);

  // An explicit zero is kept (never retry); missing keys take the defaults.
  spec = ParseJobYaml("restart_policy: {max_retries: 0, backoff_s: ~}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(spec->restart_policy().has_max_retries());
  EXPECT_EQ(spec->restart_policy().max_retries(), 0);
  EXPECT_FALSE(spec->restart_policy().has_backoff_s());
  ApplyJobSpecDefaults(&*spec);
  EXPECT_EQ(spec->restart_policy().max_retries(), 0);
  EXPECT_DOUBLE_EQ(spec->restart_policy().backoff_s(), 10);
  EXPECT_DOUBLE_EQ(spec->restart_policy().max_backoff_s(), 300);
  ASSERT_EQ(spec->restart_policy().retry_on_size(), 1);
  EXPECT_EQ(spec->restart_policy().retry_on(0), joule::v1::RETRY_ON_LOST);

  // Limits are the scheduler's: parsed, then refused by validation.
  spec = ParseJobYaml(
      "name: a\ncommand: x\nrestart_policy: {max_retries: 101, retry_on: [lost, lost]}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ApplyJobSpecDefaults(&*spec);
  EXPECT_EQ(std::string(ValidateJobSpec(*spec, absl::FromUnixSeconds(1800000000)).message()),
            "restart_policy.max_retries: must be between 0 and 100, got 101");
}

TEST(JobYamlPinTest, PinMaxCapIsABoolean) {
  absl::StatusOr<joule::v1::JobSpec> spec =
      ParseJobYaml("name: a\ncommand: /bin/true\npin_max_cap: true\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->pin_max_cap());
  absl::StatusOr<joule::v1::JobSpec> bad =
      ParseJobYaml("name: a\ncommand: /bin/true\npin_max_cap: maybe\n");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 3, column 14"), std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace joule
