#include "spec/job_validation.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "joule/v1/job.pb.h"

namespace joule {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::joule::v1::JobSpec;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A spec that passes validation, with every field set.
JobSpec ValidSpec() {
  JobSpec spec;
  spec.set_name("mnist-mlp");
  spec.set_type(joule::v1::JOB_TYPE_TRAINING);
  spec.set_command("/opt/jobs/mlp_trainer");
  spec.add_args("--epochs");
  spec.add_args("3");
  (*spec.mutable_env())["LOG_LEVEL"] = "info";
  spec.mutable_resources()->set_gpus(1);
  spec.mutable_resources()->set_cpus(2);
  spec.mutable_resources()->set_memory_bytes(int64_t{2} << 30);
  spec.mutable_resources()->set_gpu_model("V100");
  spec.set_replicas(2);
  spec.mutable_batch_size()->set_default_size(64);
  spec.mutable_batch_size()->set_min(16);
  spec.mutable_batch_size()->set_max(256);
  spec.set_shard_count(16);
  spec.mutable_objective()->set_max_slowdown(1.1);
  (*spec.mutable_labels())["team"] = "vision";
  spec.set_user("alice");
  spec.set_job_class("mnist");
  spec.set_working_dir("/tmp");
  joule::v1::RestartPolicy* restart = spec.mutable_restart_policy();
  restart->set_max_retries(3);
  restart->set_backoff_s(10);
  restart->set_max_backoff_s(300);
  restart->add_retry_on(joule::v1::RETRY_ON_LOST);
  return spec;
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

struct Case {
  std::string name;
  std::function<void(JobSpec*)> mutate;
  // The message must start with this (field path, and usually more).
  std::string want_prefix;
};

TEST(ValidateJobSpecTest, ValidSpecPasses) {
  EXPECT_TRUE(ValidateJobSpec(ValidSpec(), kNow).ok());
}

TEST(ValidateJobSpecTest, MinimalSpecPassesAfterDefaults) {
  JobSpec spec;
  spec.set_name("a");
  spec.set_type(joule::v1::JOB_TYPE_INFERENCE);
  spec.set_command("serve");
  EXPECT_FALSE(ValidateJobSpec(spec, kNow).ok());
  ApplyJobSpecDefaults(&spec);
  EXPECT_TRUE(ValidateJobSpec(spec, kNow).ok()) << ValidateJobSpec(spec, kNow);
}

// Values on the edge of each limit are accepted.
TEST(ValidateJobSpecTest, BoundaryValuesPass) {
  const std::vector<Case> cases = {
      {"name_1_char", [](JobSpec* s) { s->set_name("a"); }, ""},
      {"name_253_chars", [](JobSpec* s) { s->set_name(std::string(253, 'a')); },
       ""},
      {"name_all_chars", [](JobSpec* s) { s->set_name("a0-._z9"); }, ""},
      {"command_4096_bytes",
       [](JobSpec* s) { s->set_command(std::string(4096, 'c')); }, ""},
      {"args_1024",
       [](JobSpec* s) {
         s->clear_args();
         for (int i = 0; i < 1024; ++i) s->add_args("x");
       },
       ""},
      {"arg_32k",
       [](JobSpec* s) { s->set_args(0, std::string(32 * 1024, 'a')); }, ""},
      {"env_1024",
       [](JobSpec* s) {
         for (int i = 0; i < 1023; ++i) {
           (*s->mutable_env())[absl::StrCat("V", i)] = "x";
         }
       },
       ""},
      {"env_underscore_names",
       [](JobSpec* s) {
         (*s->mutable_env())["_"] = "";
         (*s->mutable_env())["_a9"] = "";
         (*s->mutable_env())["JOULE"] = "not the prefix";
       },
       ""},
      {"env_name_256",
       [](JobSpec* s) { (*s->mutable_env())[std::string(256, 'N')] = "v"; },
       ""},
      {"env_value_32k",
       [](JobSpec* s) {
         (*s->mutable_env())["BIG"] = std::string(32 * 1024, 'v');
       },
       ""},
      {"gpus_0", [](JobSpec* s) { s->mutable_resources()->set_gpus(0); }, ""},
      {"gpus_64", [](JobSpec* s) { s->mutable_resources()->set_gpus(64); }, ""},
      {"cpus_fraction",
       [](JobSpec* s) { s->mutable_resources()->set_cpus(0.25); }, ""},
      {"cpus_1024", [](JobSpec* s) { s->mutable_resources()->set_cpus(1024); },
       ""},
      {"memory_1",
       [](JobSpec* s) { s->mutable_resources()->set_memory_bytes(1); }, ""},
      {"memory_64ti",
       [](JobSpec* s) {
         s->mutable_resources()->set_memory_bytes(int64_t{64} << 40);
       },
       ""},
      {"gpu_model_any",
       [](JobSpec* s) { s->mutable_resources()->clear_gpu_model(); }, ""},
      {"gpu_model_chars",
       [](JobSpec* s) {
         s->mutable_resources()->set_gpu_model("A100-SXM4 80GB_v1.0");
       },
       ""},
      {"gpu_model_64",
       [](JobSpec* s) {
         s->mutable_resources()->set_gpu_model(std::string(64, 'A'));
       },
       ""},
      {"replicas_1", [](JobSpec* s) { s->set_replicas(1); }, ""},
      {"replicas_1024",
       [](JobSpec* s) {
         s->set_replicas(1024);
         s->set_shard_count(1024);
       },
       ""},
      {"batch_fixed_1",
       [](JobSpec* s) {
         s->mutable_batch_size()->set_default_size(1);
         s->mutable_batch_size()->set_min(1);
         s->mutable_batch_size()->set_max(1);
       },
       ""},
      {"batch_max_limit",
       [](JobSpec* s) { s->mutable_batch_size()->set_max(1 << 20); }, ""},
      {"batch_default_at_max",
       [](JobSpec* s) { s->mutable_batch_size()->set_default_size(256); }, ""},
      {"shards_0", [](JobSpec* s) { s->set_shard_count(0); }, ""},
      {"shards_equal_replicas", [](JobSpec* s) { s->set_shard_count(2); }, ""},
      {"shards_1m", [](JobSpec* s) { s->set_shard_count(1000000); }, ""},
      {"slowdown_1",
       [](JobSpec* s) { s->mutable_objective()->set_max_slowdown(1.0); }, ""},
      {"slowdown_100",
       [](JobSpec* s) { s->mutable_objective()->set_max_slowdown(100); }, ""},
      {"weight_0",
       [](JobSpec* s) { s->mutable_objective()->set_energy_time_weight(0); },
       ""},
      {"weight_1",
       [](JobSpec* s) { s->mutable_objective()->set_energy_time_weight(1); },
       ""},
      {"deadline_just_after_now",
       [](JobSpec* s) {
         *s->mutable_objective()->mutable_deadline() =
             ToProto(kNow + absl::Seconds(1));
       },
       ""},
      {"labels_64",
       [](JobSpec* s) {
         for (int i = 0; i < 63; ++i) {
           (*s->mutable_labels())[absl::StrCat("k", i)] = "v";
         }
       },
       ""},
      {"label_key_chars",
       [](JobSpec* s) {
         (*s->mutable_labels())["joule.dev/Team_x-1"] = std::string(63, 'v');
       },
       ""},
      {"label_key_63",
       [](JobSpec* s) { (*s->mutable_labels())[std::string(63, 'k')] = ""; },
       ""},
      {"user_empty", [](JobSpec* s) { s->clear_user(); }, ""},
      {"user_253", [](JobSpec* s) { s->set_user(std::string(253, 'u')); }, ""},
      {"job_class_253",
       [](JobSpec* s) { s->set_job_class(std::string(253, 'j')); }, ""},
      {"placement_profile_63",
       [](JobSpec* s) { s->set_placement_profile(std::string(63, 'p')); }, ""},
      {"working_dir_empty", [](JobSpec* s) { s->clear_working_dir(); }, ""},
      {"max_retries_0",
       [](JobSpec* s) { s->mutable_restart_policy()->set_max_retries(0); }, ""},
      {"max_retries_100",
       [](JobSpec* s) { s->mutable_restart_policy()->set_max_retries(100); }, ""},
      {"backoff_0",
       [](JobSpec* s) {
         s->mutable_restart_policy()->set_backoff_s(0);
         s->mutable_restart_policy()->set_max_backoff_s(0);
       },
       ""},
      {"backoff_a_day",
       [](JobSpec* s) {
         s->mutable_restart_policy()->set_backoff_s(86400);
         s->mutable_restart_policy()->set_max_backoff_s(86400);
       },
       ""},
      {"retry_on_both",
       [](JobSpec* s) {
         s->mutable_restart_policy()->add_retry_on(joule::v1::RETRY_ON_FAILED);
       },
       ""},
      {"working_dir_4096",
       [](JobSpec* s) { s->set_working_dir("/" + std::string(4095, 'd')); },
       ""},
  };
  for (const Case& c : cases) {
    JobSpec spec = ValidSpec();
    c.mutate(&spec);
    absl::Status status = ValidateJobSpec(spec, kNow);
    EXPECT_TRUE(status.ok()) << c.name << ": " << status;
  }
}

TEST(ValidateJobSpecTest, EachViolationIsRefusedWithItsFieldPath) {
  const std::vector<Case> cases = {
      // name
      {"name_required", [](JobSpec* s) { s->clear_name(); }, "name: required"},
      {"name_too_long", [](JobSpec* s) { s->set_name(std::string(254, 'a')); },
       "name: 254 characters, at most 253 allowed"},
      {"name_uppercase", [](JobSpec* s) { s->set_name("Mnist"); },
       "name: must consist of lowercase letters"},
      {"name_space", [](JobSpec* s) { s->set_name("a b"); }, "name: must"},
      {"name_slash", [](JobSpec* s) { s->set_name("a/b"); }, "name: must"},
      {"name_starts_with_dash", [](JobSpec* s) { s->set_name("-a"); },
       "name: must"},
      {"name_ends_with_dot", [](JobSpec* s) { s->set_name("a."); },
       "name: must"},
      {"name_starts_with_underscore", [](JobSpec* s) { s->set_name("_a"); },
       "name: must"},
      // type
      {"type_unspecified",
       [](JobSpec* s) { s->set_type(joule::v1::JOB_TYPE_UNSPECIFIED); },
       "type: must be training or inference, got unspecified"},
      {"type_unknown_enum",
       [](JobSpec* s) { s->set_type(static_cast<joule::v1::JobType>(7)); },
       "type: must be training or inference, got 7"},
      // command and args
      {"command_required", [](JobSpec* s) { s->clear_command(); },
       "command: required"},
      {"command_10mb",
       [](JobSpec* s) { s->set_command(std::string(10 << 20, 'c')); },
       "command: 10485760 bytes, at most 4096 allowed"},
      {"command_nul",
       [](JobSpec* s) { s->set_command(std::string("/bin/x\0y", 8)); },
       "command: contains a NUL byte at offset 6"},
      {"args_too_many",
       [](JobSpec* s) {
         for (int i = 0; i < 1023; ++i) s->add_args("x");
       },
       "args: 1025 entries, at most 1024 allowed"},
      {"arg_too_long",
       [](JobSpec* s) { s->set_args(1, std::string(32 * 1024 + 1, 'a')); },
       "args[1]: 32769 bytes, at most 32768 allowed"},
      {"arg_nul", [](JobSpec* s) { s->set_args(0, std::string("a\0", 2)); },
       "args[0]: contains a NUL byte"},
      {"command_line_total",
       [](JobSpec* s) {
         for (int i = 0; i < 8; ++i) s->add_args(std::string(32 * 1024, 'a'));
       },
       "args: command and args total"},
      // env
      {"env_100k_entries",
       [](JobSpec* s) {
         s->clear_env();
         for (int i = 0; i < 100000; ++i) {
           (*s->mutable_env())[absl::StrCat("VAR_", i)] = "x";
         }
       },
       "env: 100000 entries, at most 1024 allowed"},
      {"env_name_empty", [](JobSpec* s) { (*s->mutable_env())[""] = "x"; },
       "env: empty variable name"},
      {"env_name_digit_first",
       [](JobSpec* s) { (*s->mutable_env())["1X"] = "x"; },
       "env: variable name \"1X\" must match [A-Za-z_][A-Za-z0-9_]*"},
      {"env_name_dash", [](JobSpec* s) { (*s->mutable_env())["A-B"] = "x"; },
       "env: variable name \"A-B\" must match"},
      {"env_name_equals", [](JobSpec* s) { (*s->mutable_env())["A=B"] = "x"; },
       "env: variable name \"A=B\" must match"},
      {"env_name_too_long",
       [](JobSpec* s) { (*s->mutable_env())[std::string(257, 'N')] = "x"; },
       "env: variable name of 257 bytes, at most 256 allowed"},
      {"env_reserved_prefix",
       [](JobSpec* s) { (*s->mutable_env())["JOULE_TASK_ID"] = "x"; },
       "env.JOULE_TASK_ID: reserved"},
      {"env_reserved_cuda",
       [](JobSpec* s) { (*s->mutable_env())["CUDA_VISIBLE_DEVICES"] = "0"; },
       "env.CUDA_VISIBLE_DEVICES: reserved"},
      {"env_value_too_long",
       [](JobSpec* s) {
         (*s->mutable_env())["BIG"] = std::string(32 * 1024 + 1, 'v');
       },
       "env.BIG: 32769 bytes, at most 32768 allowed"},
      {"env_value_nul",
       [](JobSpec* s) { (*s->mutable_env())["X"] = std::string("\0", 1); },
       "env.X: contains a NUL byte"},
      {"env_total",
       [](JobSpec* s) {
         for (int i = 0; i < 8; ++i) {
           (*s->mutable_env())[absl::StrCat("V", i)] =
               std::string(32 * 1024, 'v');
         }
       },
       "env: names and values total"},
      // resources
      {"resources_missing", [](JobSpec* s) { s->clear_resources(); },
       "resources: required"},
      {"gpus_unset", [](JobSpec* s) { s->mutable_resources()->clear_gpus(); },
       "resources.gpus: required"},
      {"gpus_negative",
       [](JobSpec* s) { s->mutable_resources()->set_gpus(-1); },
       "resources.gpus: must be >= 0, got -1"},
      {"gpus_too_many",
       [](JobSpec* s) { s->mutable_resources()->set_gpus(65); },
       "resources.gpus: must be <= 64, got 65"},
      {"cpus_unset", [](JobSpec* s) { s->mutable_resources()->clear_cpus(); },
       "resources.cpus: required"},
      {"cpus_zero", [](JobSpec* s) { s->mutable_resources()->set_cpus(0); },
       "resources.cpus: must be > 0, got 0"},
      {"cpus_negative",
       [](JobSpec* s) { s->mutable_resources()->set_cpus(-2); },
       "resources.cpus: must be > 0, got -2"},
      {"cpus_too_many",
       [](JobSpec* s) { s->mutable_resources()->set_cpus(1024.5); },
       "resources.cpus: must be <= 1024, got 1024.5"},
      {"cpus_nan", [](JobSpec* s) { s->mutable_resources()->set_cpus(kNaN); },
       "resources.cpus: must be a finite number, got nan"},
      {"cpus_inf", [](JobSpec* s) { s->mutable_resources()->set_cpus(kInf); },
       "resources.cpus: must be a finite number, got inf"},
      {"memory_unset",
       [](JobSpec* s) { s->mutable_resources()->clear_memory_bytes(); },
       "resources.memory_bytes: required"},
      {"memory_zero",
       [](JobSpec* s) { s->mutable_resources()->set_memory_bytes(0); },
       "resources.memory_bytes: must be > 0, got 0"},
      {"memory_negative",
       [](JobSpec* s) { s->mutable_resources()->set_memory_bytes(-1); },
       "resources.memory_bytes: must be > 0, got -1"},
      {"memory_too_much",
       [](JobSpec* s) {
         s->mutable_resources()->set_memory_bytes((int64_t{64} << 40) + 1);
       },
       "resources.memory_bytes: must be <= 70368744177664"},
      {"gpu_model_too_long",
       [](JobSpec* s) {
         s->mutable_resources()->set_gpu_model(std::string(65, 'A'));
       },
       "resources.gpu_model: 65 characters, at most 64 allowed"},
      {"gpu_model_bad_char",
       [](JobSpec* s) { s->mutable_resources()->set_gpu_model("V100;rm"); },
       "resources.gpu_model: must consist of letters"},
      // replicas
      {"replicas_unset", [](JobSpec* s) { s->clear_replicas(); },
       "replicas: required"},
      {"replicas_zero", [](JobSpec* s) { s->set_replicas(0); },
       "replicas: must be >= 1, got 0"},
      {"replicas_too_many", [](JobSpec* s) { s->set_replicas(1025); },
       "replicas: must be <= 1024, got 1025"},
      // batch_size
      {"batch_default_zero",
       [](JobSpec* s) { s->mutable_batch_size()->set_default_size(0); },
       "batch_size.default_size: must be >= 1, got 0"},
      {"batch_min_negative",
       [](JobSpec* s) { s->mutable_batch_size()->set_min(-1); },
       "batch_size.min: must be >= 1, got -1"},
      {"batch_max_too_big",
       [](JobSpec* s) { s->mutable_batch_size()->set_max((1 << 20) + 1); },
       "batch_size.max: must be <= 1048576, got 1048577"},
      {"batch_min_above_max",
       [](JobSpec* s) {
         s->mutable_batch_size()->set_min(128);
         s->mutable_batch_size()->set_max(64);
         s->mutable_batch_size()->set_default_size(64);
       },
       "batch_size: min (128) must be <= max (64)"},
      {"batch_default_below_min",
       [](JobSpec* s) { s->mutable_batch_size()->set_default_size(8); },
       "batch_size: default_size (8) must be between min (16) and max (256)"},
      {"batch_default_above_max",
       [](JobSpec* s) { s->mutable_batch_size()->set_default_size(512); },
       "batch_size: default_size (512) must be between"},
      // shard_count
      {"shards_negative", [](JobSpec* s) { s->set_shard_count(-1); },
       "shard_count: must be >= 0, got -1"},
      {"shards_too_many", [](JobSpec* s) { s->set_shard_count(1000001); },
       "shard_count: must be <= 1000000, got 1000001"},
      {"shards_fewer_than_replicas", [](JobSpec* s) { s->set_shard_count(1); },
       "shard_count: 1 is less than replicas (2)"},
      // objective
      {"slowdown_below_1",
       [](JobSpec* s) { s->mutable_objective()->set_max_slowdown(0.9); },
       "objective.max_slowdown: must be >= 1, got 0.9"},
      {"slowdown_above_100",
       [](JobSpec* s) { s->mutable_objective()->set_max_slowdown(100.5); },
       "objective.max_slowdown: must be <= 100, got 100.5"},
      {"slowdown_nan",
       [](JobSpec* s) { s->mutable_objective()->set_max_slowdown(kNaN); },
       "objective.max_slowdown: must be a finite number"},
      {"slowdown_inf",
       [](JobSpec* s) { s->mutable_objective()->set_max_slowdown(kInf); },
       "objective.max_slowdown: must be a finite number"},
      {"weight_negative",
       [](JobSpec* s) { s->mutable_objective()->set_energy_time_weight(-0.1); },
       "objective.energy_time_weight: must be >= 0, got -0.1"},
      {"weight_above_1",
       [](JobSpec* s) { s->mutable_objective()->set_energy_time_weight(1.5); },
       "objective.energy_time_weight: must be <= 1, got 1.5"},
      {"weight_nan",
       [](JobSpec* s) {
         s->mutable_objective()->set_energy_time_weight(-kNaN);
       },
       "objective.energy_time_weight: must be a finite number"},
      {"deadline_now",
       [](JobSpec* s) {
         *s->mutable_objective()->mutable_deadline() = ToProto(kNow);
       },
       "objective.deadline: 2027-01-15T08:00:00+00:00 is not after the "
       "submit time 2027-01-15T08:00:00+00:00"},
      {"deadline_past",
       [](JobSpec* s) {
         *s->mutable_objective()->mutable_deadline() =
             ToProto(kNow - absl::Hours(1));
       },
       "objective.deadline: 2027-01-15T07:00:00+00:00 is not after"},
      {"deadline_bad_nanos",
       [](JobSpec* s) {
         google::protobuf::Timestamp* d =
             s->mutable_objective()->mutable_deadline();
         *d = ToProto(kNow + absl::Hours(1));
         d->set_nanos(1000000000);
       },
       "objective.deadline: not a valid timestamp"},
      {"deadline_year_10000",
       [](JobSpec* s) {
         s->mutable_objective()->mutable_deadline()->set_seconds(253402300800);
       },
       "objective.deadline: not a valid timestamp"},
      // labels
      {"labels_too_many",
       [](JobSpec* s) {
         for (int i = 0; i < 64; ++i) {
           (*s->mutable_labels())[absl::StrCat("k", i)] = "v";
         }
       },
       "labels: 65 entries, at most 64 allowed"},
      {"label_key_empty", [](JobSpec* s) { (*s->mutable_labels())[""] = "v"; },
       "labels: empty key"},
      {"label_key_too_long",
       [](JobSpec* s) { (*s->mutable_labels())[std::string(64, 'k')] = "v"; },
       "labels: key of 64 characters, at most 63 allowed"},
      {"label_key_bad_char",
       [](JobSpec* s) { (*s->mutable_labels())["a b"] = "v"; },
       "labels: key \"a b\" must consist of"},
      {"label_value_too_long",
       [](JobSpec* s) {
         (*s->mutable_labels())["team"] = std::string(64, 'v');
       },
       "labels.team: 64 bytes, at most 63 allowed"},
      // user, job_class, working_dir
      {"user_too_long", [](JobSpec* s) { s->set_user(std::string(254, 'u')); },
       "user: 254 bytes, at most 253 allowed"},
      {"job_class_too_long",
       [](JobSpec* s) { s->set_job_class(std::string(254, 'j')); },
       "job_class: 254 bytes, at most 253 allowed"},
      {"placement_profile_too_long",
       [](JobSpec* s) { s->set_placement_profile(std::string(64, 'p')); },
       "placement_profile: 64 bytes, at most 63 allowed"},
      {"working_dir_relative", [](JobSpec* s) { s->set_working_dir("tmp"); },
       "working_dir: must be an absolute path, got \"tmp\""},
      {"working_dir_too_long",
       [](JobSpec* s) { s->set_working_dir("/" + std::string(4096, 'd')); },
       "working_dir: 4097 bytes, at most 4096 allowed"},
      {"working_dir_nul",
       [](JobSpec* s) { s->set_working_dir(std::string("/a\0", 3)); },
       "working_dir: contains a NUL byte"},
      // energy_budget_j, latency_slo_ms, early_stop
      {"budget_negative", [](JobSpec* s) { s->set_energy_budget_j(-1); },
       "energy_budget_j: must be a finite number in [0, 1e+15] joules, got -1"},
      {"budget_nan",
       [](JobSpec* s) { s->set_energy_budget_j(std::nan("")); },
       "energy_budget_j: must be a finite number"},
      {"expected_samples_negative", [](JobSpec* s) { s->set_expected_samples(-1); },
       "expected_samples: must be a finite number in [0, 1e+18], got -1"},
      {"expected_samples_nan", [](JobSpec* s) { s->set_expected_samples(std::nan("")); },
       "expected_samples: must be a finite number"},
      {"slo_negative", [](JobSpec* s) { s->set_latency_slo_ms(-5); },
       "latency_slo_ms: must be a finite number in [0, 3600000], got -5"},
      {"patience_negative",
       [](JobSpec* s) { s->mutable_early_stop()->set_patience(-1); },
       "early_stop.patience: must be in [0, 1000000], got -1"},
      {"min_delta_negative",
       [](JobSpec* s) { s->mutable_early_stop()->set_min_delta(-0.1); },
       "early_stop.min_delta: must be a finite number >= 0, got -0.1"},
      // restart_policy
      {"restart_policy_required", [](JobSpec* s) { s->clear_restart_policy(); },
       "restart_policy: required"},
      {"max_retries_required",
       [](JobSpec* s) { s->mutable_restart_policy()->clear_max_retries(); },
       "restart_policy.max_retries: required"},
      {"max_retries_negative",
       [](JobSpec* s) { s->mutable_restart_policy()->set_max_retries(-1); },
       "restart_policy.max_retries: must be between 0 and 100, got -1"},
      {"max_retries_101",
       [](JobSpec* s) { s->mutable_restart_policy()->set_max_retries(101); },
       "restart_policy.max_retries: must be between 0 and 100, got 101"},
      {"backoff_required",
       [](JobSpec* s) { s->mutable_restart_policy()->clear_backoff_s(); },
       "restart_policy.backoff_s: required"},
      {"backoff_negative",
       [](JobSpec* s) { s->mutable_restart_policy()->set_backoff_s(-1); },
       "restart_policy.backoff_s: must be between 0 and 86400 seconds, got -1"},
      {"backoff_nan",
       [](JobSpec* s) { s->mutable_restart_policy()->set_backoff_s(kNaN); },
       "restart_policy.backoff_s: must be between 0 and 86400 seconds, got nan"},
      {"max_backoff_required",
       [](JobSpec* s) { s->mutable_restart_policy()->clear_max_backoff_s(); },
       "restart_policy.max_backoff_s: required"},
      {"max_backoff_inf",
       [](JobSpec* s) { s->mutable_restart_policy()->set_max_backoff_s(kInf); },
       "restart_policy.max_backoff_s: must be between 0 and 86400 seconds, got inf"},
      {"backoff_above_max",
       [](JobSpec* s) {
         s->mutable_restart_policy()->set_backoff_s(600);
         s->mutable_restart_policy()->set_max_backoff_s(300);
       },
       "restart_policy: backoff_s (600) must be <= max_backoff_s (300)"},
      {"retry_on_required",
       [](JobSpec* s) { s->mutable_restart_policy()->clear_retry_on(); },
       "restart_policy.retry_on: required"},
      {"retry_on_unspecified",
       [](JobSpec* s) {
         s->mutable_restart_policy()->add_retry_on(joule::v1::RETRY_ON_UNSPECIFIED);
       },
       "restart_policy.retry_on[1]: must be lost or failed, got unspecified"},
      {"retry_on_unknown_enum",
       [](JobSpec* s) {
         s->mutable_restart_policy()->set_retry_on(0, static_cast<joule::v1::RetryOn>(9));
       },
       "restart_policy.retry_on[0]: must be lost or failed, got 9"},
      {"retry_on_twice",
       [](JobSpec* s) {
         s->mutable_restart_policy()->add_retry_on(joule::v1::RETRY_ON_FAILED);
         s->mutable_restart_policy()->add_retry_on(joule::v1::RETRY_ON_LOST);
       },
       "restart_policy.retry_on[2]: lost is listed twice"},
  };
  for (const Case& c : cases) {
    JobSpec spec = ValidSpec();
    c.mutate(&spec);
    absl::Status status = ValidateJobSpec(spec, kNow);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << c.name << ": " << status;
    EXPECT_TRUE(absl::StartsWith(status.message(), c.want_prefix))
        << c.name << ": got \"" << status.message() << "\", want prefix \""
        << c.want_prefix << "\"";
  }
}

TEST(ValidateJobSpecTest, ReportsTheFirstErrorInFieldOrder) {
  JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_gpus(-1);
  spec.set_working_dir("relative");
  spec.set_replicas(0);
  EXPECT_TRUE(
      absl::StartsWith(ValidateJobSpec(spec, kNow).message(), "resources."));
  spec.set_command("");
  EXPECT_TRUE(
      absl::StartsWith(ValidateJobSpec(spec, kNow).message(), "command:"));
}

TEST(ValidateJobSpecTest, MapErrorsAreDeterministic) {
  // Whatever the map's iteration order, the smallest bad key is reported.
  for (int round = 0; round < 20; ++round) {
    JobSpec spec = ValidSpec();
    for (int i = 0; i < 50; ++i) {
      (*spec.mutable_env())[absl::StrCat(9 - i % 10, "BAD", i)] = "x";
    }
    EXPECT_EQ(std::string(ValidateJobSpec(spec, kNow).message()),
              "env: variable name \"0BAD19\" must match [A-Za-z_][A-Za-z0-9_]*")
        << ValidateJobSpec(spec, kNow);
  }
}

TEST(ApplyJobSpecDefaultsTest, FillsEveryUnsetField) {
  JobSpec spec;
  spec.set_name("resnet");
  ApplyJobSpecDefaults(&spec);
  ASSERT_TRUE(spec.has_replicas());
  EXPECT_EQ(spec.replicas(), 1);
  ASSERT_TRUE(spec.resources().has_gpus());
  EXPECT_EQ(spec.resources().gpus(), 0);
  ASSERT_TRUE(spec.resources().has_cpus());
  EXPECT_EQ(spec.resources().cpus(), 1.0);
  ASSERT_TRUE(spec.resources().has_memory_bytes());
  EXPECT_EQ(spec.resources().memory_bytes(), 512 * 1024 * 1024);
  EXPECT_EQ(spec.batch_size().default_size(), 32);
  EXPECT_EQ(spec.batch_size().min(), 32);
  EXPECT_EQ(spec.batch_size().max(), 32);
  EXPECT_EQ(spec.job_class(), "resnet");
  // No goal: the cap minimizes the job's whole energy.
  EXPECT_EQ(spec.objective().goal_case(), joule::v1::Objective::GOAL_NOT_SET);
  EXPECT_EQ(spec.type(), joule::v1::JOB_TYPE_TRAINING);
  ASSERT_TRUE(spec.restart_policy().has_max_retries());
  EXPECT_EQ(spec.restart_policy().max_retries(), 3);
  EXPECT_DOUBLE_EQ(spec.restart_policy().backoff_s(), 10);
  EXPECT_DOUBLE_EQ(spec.restart_policy().max_backoff_s(), 300);
  ASSERT_EQ(spec.restart_policy().retry_on_size(), 1);
  EXPECT_EQ(spec.restart_policy().retry_on(0), joule::v1::RETRY_ON_LOST);
  // Fields without a default stay empty.
  EXPECT_EQ(spec.shard_count(), 0);
  EXPECT_TRUE(spec.resources().gpu_model().empty());
}

TEST(ApplyJobSpecDefaultsTest, KeepsExplicitValues) {
  JobSpec spec = ValidSpec();
  spec.mutable_resources()->set_gpus(0);  // explicit zero is not "unset"
  *spec.mutable_objective()->mutable_deadline() =
      ToProto(kNow + absl::Hours(2));
  JobSpec want = spec;
  ApplyJobSpecDefaults(&spec);
  EXPECT_TRUE(MessageDifferencer::Equals(spec, want))
      << spec.DebugString() << "\nvs\n"
      << want.DebugString();
}

TEST(ApplyJobSpecDefaultsTest, IsIdempotent) {
  JobSpec spec;
  spec.set_name("x");
  spec.mutable_batch_size()->set_max(100);
  ApplyJobSpecDefaults(&spec);
  JobSpec once = spec;
  ApplyJobSpecDefaults(&spec);
  EXPECT_TRUE(MessageDifferencer::Equals(spec, once));
}

TEST(ApplyJobSpecDefaultsTest, BatchSize) {
  struct BatchCase {
    int32_t default_size, min, max;  // as given
    int32_t want_default, want_min, want_max;
  };
  const std::vector<BatchCase> cases = {
      {0, 0, 0, 32, 32, 32},
      {64, 0, 0, 64, 64, 64},
      {0, 16, 256, 16, 16, 256},
      {64, 0, 256, 64, 64, 256},
      {64, 16, 0, 64, 16, 64},
      {0, 16, 0, 16, 16, 16},
      {0, 0, 256, 256, 256, 256},
      {64, 16, 256, 64, 16, 256},
      // A negative value counts as set and is left for validation.
      {0, -5, 0, 32, -5, 32},
      {-1, 0, 0, -1, 0, 0},
  };
  for (const BatchCase& c : cases) {
    JobSpec spec;
    spec.mutable_batch_size()->set_default_size(c.default_size);
    spec.mutable_batch_size()->set_min(c.min);
    spec.mutable_batch_size()->set_max(c.max);
    ApplyJobSpecDefaults(&spec);
    const std::string given =
        absl::StrCat(c.default_size, "/", c.min, "/", c.max);
    EXPECT_EQ(spec.batch_size().default_size(), c.want_default) << given;
    EXPECT_EQ(spec.batch_size().min(), c.want_min) << given;
    EXPECT_EQ(spec.batch_size().max(), c.want_max) << given;
  }
}

TEST(ApplyJobSpecDefaultsTest, RestartPolicy) {
  joule::v1::RestartPolicy policy;
  policy.set_max_retries(0);
  ApplyRestartPolicyDefaults(&policy);
  EXPECT_EQ(policy.max_retries(), 0);  // An explicit zero: never retry.
  EXPECT_DOUBLE_EQ(policy.backoff_s(), 10);
  EXPECT_DOUBLE_EQ(policy.max_backoff_s(), 300);

  // A long first wait raises the default ceiling instead of being refused.
  policy.Clear();
  policy.set_backoff_s(900);
  policy.add_retry_on(joule::v1::RETRY_ON_FAILED);
  ApplyRestartPolicyDefaults(&policy);
  EXPECT_EQ(policy.max_retries(), 3);
  EXPECT_DOUBLE_EQ(policy.max_backoff_s(), 900);
  ASSERT_EQ(policy.retry_on_size(), 1);
  EXPECT_EQ(policy.retry_on(0), joule::v1::RETRY_ON_FAILED);

  // An explicit ceiling below the first wait is the user's mistake.
  JobSpec spec = ValidSpec();
  spec.mutable_restart_policy()->set_backoff_s(900);
  ApplyJobSpecDefaults(&spec);
  EXPECT_EQ(std::string(ValidateJobSpec(spec, kNow).message()),
            "restart_policy: backoff_s (900) must be <= max_backoff_s (300)");
}

TEST(ApplyJobSpecDefaultsTest, NegativeBatchMinIsReportedAgainstMin) {
  JobSpec spec = ValidSpec();
  spec.clear_batch_size();
  spec.mutable_batch_size()->set_min(-5);
  ApplyJobSpecDefaults(&spec);
  EXPECT_TRUE(absl::StartsWith(ValidateJobSpec(spec, kNow).message(),
                               "batch_size.min: must be >= 1, got -5"))
      << ValidateJobSpec(spec, kNow);
}

}  // namespace
}  // namespace joule
