// Writes the seed inputs of the fuzz targets whose inputs are binary
// (serialized protobufs, operation sequences, store files):
// job_spec_fuzzer, scheduler_agent_fuzzer and local_store_fuzzer (whose
// files the real LocalStore writes). Run by hand when a format changes; the output is
// checked in:
//
//   bazel run //fuzz:make_seeds -- "$PWD/fuzz/corpus"
//
// The input encodings are those the targets' files document.

#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_support.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/job.pb.h"
#include "joule/v1/node.pb.h"
#include "joule/v1/scheduler.pb.h"
#include "scheduler/store/local_store.h"

namespace {

using namespace joule;  // NOLINT: a generator's few functions.

enum Op : uint8_t {
  kRegister = 0,
  kMessage = 1,
  kSubmit = 2,
  kTick = 3,
  kDisconnect = 4,
  kCancel = 5,
  kLogs = 6,
  kRestart = 7,
  kSetCap = 8,
};

// arg: the stream (0..2) in its low two bits; with kIds, ids are replaced by
// those of the target's (arg >> 3)-th task.
constexpr uint8_t kIds = 4;

class Sequence {
 public:
  Sequence& Add(Op op, uint8_t arg, const std::string& payload = "") {
    out_.push_back(static_cast<char>(op));
    out_.push_back(static_cast<char>(arg));
    out_.push_back(static_cast<char>(payload.size() & 0xff));
    out_.push_back(static_cast<char>((payload.size() >> 8) & 0xff));
    out_ += payload;
    return *this;
  }
  Sequence& Add(Op op, uint8_t arg, const google::protobuf::Message& message) {
    return Add(op, arg, message.SerializeAsString());
  }
  Sequence& Tick(uint16_t seconds) {
    std::string payload;
    payload.push_back(static_cast<char>(seconds & 0xff));
    payload.push_back(static_cast<char>(seconds >> 8));
    return Add(kTick, 0, payload);
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

v1::Register Node(const std::string& name, int gpus) {
  v1::Register message;
  v1::NodeInfo* node = message.mutable_node();
  node->set_name(name);
  node->set_cpus(16);
  node->set_memory_bytes(int64_t{64} << 30);
  node->set_static_power_w(60);
  (*node->mutable_labels())["joule.dev/region"] = "eu-north";
  for (int i = 0; i < gpus; ++i) {
    v1::Device* device = node->add_devices();
    device->set_index(i);
    device->set_kind(v1::DEVICE_KIND_GPU);
    device->set_model("V100");
    device->set_uuid(absl::StrCat("GPU-", name, "-", i));
    device->set_memory_bytes(int64_t{16} << 30);
    device->set_power_limit_min_w(100);
    device->set_power_limit_default_w(250);
    device->set_power_limit_max_w(250);
    device->set_idle_power_w(35);
  }
  v1::Device* cpu = node->add_devices();
  cpu->set_index(0);
  cpu->set_kind(v1::DEVICE_KIND_CPU);
  cpu->set_model("cpu");
  return message;
}

v1::JobSpec Training(int gpus, int replicas) {
  v1::JobSpec spec;
  spec.set_name("train");
  spec.set_command("/usr/bin/train");
  spec.mutable_resources()->set_gpus(gpus);
  spec.set_replicas(replicas);
  spec.set_job_class("mnist");
  spec.mutable_batch_size()->set_min(16);
  spec.mutable_batch_size()->set_max(256);
  spec.set_energy_budget_j(1e6);
  spec.mutable_early_stop()->set_patience(2);
  return spec;
}

v1::JobSpec Inference(int replicas, int shards) {
  v1::JobSpec spec;
  spec.set_name("infer");
  spec.set_type(v1::JOB_TYPE_INFERENCE);
  spec.set_command("/usr/bin/infer");
  spec.mutable_resources()->set_gpus(1);
  spec.set_replicas(replicas);
  spec.set_shard_count(shards);
  spec.set_latency_slo_ms(50);
  return spec;
}

v1::AgentMessage Event(v1::TaskEvent::Kind kind, int exit_code = 0, bool stopped = false) {
  v1::AgentMessage message;
  v1::TaskEvent* event = message.mutable_task_event();
  event->set_task_id("job-1.r0.a1");
  event->set_job_id("job-1");
  event->set_kind(kind);
  event->set_pid(4242);
  event->set_exit_code(exit_code);
  event->set_stopped(stopped);
  event->mutable_time()->set_seconds(1767225600);
  event->mutable_usage()->set_task_id("job-1.r0.a1");
  event->mutable_usage()->mutable_energy()->set_gpu_j(5000);
  event->mutable_usage()->mutable_energy()->set_total_j(5000);
  return message;
}

v1::AgentMessage Telemetry(double gpu_power_w, double temp_c, double task_energy_j) {
  v1::AgentMessage message;
  v1::NodeSample* sample = message.mutable_telemetry();
  sample->mutable_time()->set_seconds(1767225601);
  v1::DeviceSample* gpu = sample->add_devices();
  gpu->set_index(0);
  gpu->set_kind(v1::DEVICE_KIND_GPU);
  gpu->set_power_w(gpu_power_w);
  gpu->set_energy_j(task_energy_j);
  gpu->set_temp_c(temp_c);
  gpu->set_utilization(0.9);
  gpu->set_power_cap_w(250);
  sample->set_node_power_w(gpu_power_w + 60);
  v1::TaskUsage* usage = sample->add_tasks();
  usage->set_task_id("job-1.r0.a1");
  usage->mutable_energy()->set_gpu_j(task_energy_j);
  usage->mutable_energy()->set_total_j(task_energy_j);
  usage->set_samples_done(1000);
  usage->set_steps_done(10);
  usage->set_samples_total(10000);
  usage->set_quality(0.5);
  usage->set_shards_done("0-1");
  usage->set_latency_batch_size(32);
  usage->set_latency_ms(20);
  v1::SourceStatus* source = sample->add_sources();
  source->set_name("nvml");
  source->set_state(v1::SourceStatus::STATE_OK);
  return message;
}

void Write(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = absl::StrCat(dir, "/", name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  if (!out) {
    fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

void SchedulerSeeds(const std::string& dir) {
  v1::AgentMessage heartbeat;
  heartbeat.mutable_heartbeat()->mutable_time()->set_seconds(1767225600);

  // A job's whole life on one node.
  Write(dir, "lifecycle",
        Sequence()
            .Add(kRegister, 0, Node("node-a", 4))
            .Add(kSubmit, 0, Training(1, 1))
            .Tick(1)
            .Add(kMessage, kIds, Event(v1::TaskEvent::KIND_STARTED))
            .Add(kMessage, kIds, Telemetry(200, 60, 1000))
            .Add(kMessage, 0, heartbeat)
            .Tick(5)
            .Add(kMessage, kIds, Telemetry(210, 85, 3000))
            .Add(kMessage, kIds, Event(v1::TaskEvent::KIND_EXITED, 0))
            .Tick(1)
            .bytes());

  // A sharded gang: shards reported, a replica lost when its node goes
  // silent, the node back with its tasks, a scheduler restart.
  v1::Register back = Node("node-a", 4);
  v1::RunningTask* running = back.add_running_tasks();
  running->set_task_id("job-1.r0.a1");
  running->set_job_id("job-1");
  running->set_pid(4242);
  running->mutable_usage()->set_task_id("job-1.r0.a1");
  *back.add_unacked_events() = Event(v1::TaskEvent::KIND_EXITED, 1).task_event();
  Write(dir, "gang_lost_and_back",
        Sequence()
            .Add(kRegister, 0, Node("node-a", 4))
            .Add(kRegister, 1, Node("node-b", 2))
            .Add(kSubmit, 0, Inference(2, 8))
            .Tick(1)
            .Add(kMessage, kIds, Event(v1::TaskEvent::KIND_STARTED))
            .Add(kMessage, kIds | (1 << 3), Event(v1::TaskEvent::KIND_STARTED))
            .Add(kMessage, kIds, Telemetry(150, 50, 500))
            .Add(kDisconnect, 1)
            .Tick(30)
            .Add(kRegister, 1 | kIds, back)
            .Add(kRestart, 0)
            .Add(kRegister, 0 | kIds, back)
            .Tick(1)
            .bytes());

  // Logs, cancel, and a stopped exit.
  v1::GetTaskLogsRequest logs_request;
  logs_request.set_job_id("job-1");
  v1::AgentMessage logs_reply;
  logs_reply.mutable_logs()->set_request_id("1/job-1.r0.a1");
  logs_reply.mutable_logs()->set_task_id("job-1.r0.a1");
  logs_reply.mutable_logs()->set_stdout("hello\n");
  Write(dir, "logs_and_cancel",
        Sequence()
            .Add(kRegister, 0, Node("node-a", 2))
            .Add(kSubmit, 0, Training(2, 1))
            .Tick(1)
            .Add(kMessage, kIds, Event(v1::TaskEvent::KIND_STARTED))
            .Add(kLogs, kIds, logs_request)
            .Add(kMessage, kIds, logs_reply)
            .Add(kCancel, 0)
            .Add(kMessage, kIds, Event(v1::TaskEvent::KIND_EXITED, 143, true))
            .Tick(10)
            .bytes());

  // Impossible telemetry, a second stream for the same node, a cap.
  v1::SetCap cap;
  cap.set_index(0);
  cap.set_power_cap_w(150);
  Write(dir, "impossible_telemetry",
        Sequence()
            .Add(kRegister, 0, Node("node-a", 1))
            .Add(kSubmit, 0, Training(1, 1))
            .Tick(1)
            .Add(kMessage, kIds, Event(v1::TaskEvent::KIND_STARTED))
            .Add(kMessage, kIds, Telemetry(std::nan(""), 1e9, 1e12))
            .Add(kMessage, kIds,
                 Telemetry(std::numeric_limits<double>::infinity(), -300, -5))
            .Add(kRegister, 2, Node("node-a", 1))
            .Add(kMessage, 0, heartbeat)
            .Add(kSetCap, kIds, cap)
            .Add(kMessage, kIds, Event(v1::TaskEvent::KIND_START_FAILED, 127))
            .Tick(60)
            .bytes());

  // Messages before any register, and a register sent twice.
  Write(dir, "unregistered",
        Sequence()
            .Add(kMessage, 0, heartbeat)
            .Add(kMessage, 1, Telemetry(100, 40, 10))
            .Add(kRegister, 0, Node("node-a", 1))
            .Add(kMessage, 0, [] {
              v1::AgentMessage message;
              *message.mutable_register_() = Node("node-a", 1);
              return message;
            }())
            .Add(kMessage, 0, v1::AgentMessage())
            .bytes());
}

void JobSpecSeeds(const std::string& dir) {
  Write(dir, "training", Training(1, 2).SerializeAsString());
  Write(dir, "inference", Inference(4, 16).SerializeAsString());
  v1::JobSpec full = Training(8, 4);
  full.add_args("--epochs");
  full.add_args("3");
  (*full.mutable_env())["LOG_LEVEL"] = "info";
  (*full.mutable_labels())["team"] = "vision";
  full.mutable_resources()->set_cpus(2.5);
  full.mutable_resources()->set_memory_bytes(int64_t{2} << 30);
  full.mutable_resources()->set_gpu_model("A100");
  full.mutable_objective()->set_energy_time_weight(0.5);
  full.set_user("alice");
  full.set_working_dir("/tmp");
  full.mutable_restart_policy()->set_max_retries(3);
  full.mutable_restart_policy()->set_backoff_s(10);
  full.mutable_restart_policy()->set_max_backoff_s(300);
  full.mutable_restart_policy()->add_retry_on(v1::RETRY_ON_LOST);
  full.mutable_restart_policy()->add_retry_on(v1::RETRY_ON_FAILED);
  Write(dir, "full", full.SerializeAsString());
  v1::JobSpec deadline = Training(0, 1);
  deadline.mutable_objective()->mutable_deadline()->set_seconds(1767229200);
  Write(dir, "deadline", deadline.SerializeAsString());
  v1::JobSpec bad = Training(-1, 0);
  (*bad.mutable_env())["JOULE_TASK_ID"] = "x";
  bad.mutable_resources()->set_cpus(std::nan(""));
  bad.mutable_batch_size()->set_min(512);
  Write(dir, "invalid", bad.SerializeAsString());
  Write(dir, "empty", "");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void Check(const absl::Status& status) {
  if (!status.ok()) {
    fprintf(stderr, "%s\n", status.ToString().c_str());
    std::exit(1);
  }
}

// local_store_fuzzer's input: [flags][u16 snapshot length][snapshot][log].
std::string StoreInput(uint8_t flags, const std::string& snapshot, const std::string& log) {
  std::string out;
  out.push_back(static_cast<char>(flags));
  out.push_back(static_cast<char>(snapshot.size() & 0xff));
  out.push_back(static_cast<char>((snapshot.size() >> 8) & 0xff));
  return out + snapshot + log;
}

void LocalStoreSeeds(const std::string& dir) {
  const char* tmpdir = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(tmpdir != nullptr ? tmpdir : "/tmp", "/make_seeds_XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) Check(absl::InternalError("mkdtemp"));
  const std::string data = tmpl;
  // A snapshot: every commit compacts while the threshold is tiny.
  {
    LocalStoreOptions options;
    options.compact_log_bytes = 1;
    absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(data, options);
    Check(store.status());
    Check((*store)->Put("jobs/job-1", "spec-1"));
    Check((*store)->Put("jobs/job-2", "spec-2"));
    Check((*store)->Put("profiles/mnist/V100", std::string(40, 'p')));
  }
  // Then a log over it: puts, an overwrite, a delete, a multi-key commit.
  uint64_t generation = 0;
  {
    absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(data);
    Check(store.status());
    Check((*store)->Put("jobs/job-3", "spec-3"));
    Check((*store)->Put("jobs/job-1", "spec-1b"));
    Check((*store)->Delete("jobs/job-2"));
    Check((*store)->Commit({{StoreMutation::Op::kPut, "a", "1"},
                            {StoreMutation::Op::kPut, "b", ""},
                            {StoreMutation::Op::kDelete, "a", ""}}));
    generation = (*store)->GetStats().log_generation;
  }
  const std::string snapshot = ReadFile(data + "/snapshot");
  const std::string log = ReadFile(absl::StrCat(data, "/wal.", generation));
  fuzz::RemoveTree(data);

  Write(dir, "snapshot_and_log", StoreInput(3, snapshot, log));
  Write(dir, "log_only", StoreInput(2, "", log));
  Write(dir, "snapshot_only", StoreInput(1, snapshot, ""));
  Write(dir, "torn_tail", StoreInput(3, snapshot, log.substr(0, log.size() - 3)));
  std::string flipped = log;
  if (flipped.size() > 12) flipped[12] ^= 0x01;
  Write(dir, "corrupt_record", StoreInput(3, snapshot, flipped));
  std::string bad_snapshot = snapshot;
  if (bad_snapshot.size() > 40) bad_snapshot[40] ^= 0x80;
  Write(dir, "corrupt_snapshot", StoreInput(3, bad_snapshot, log));
  Write(dir, "compaction_leftovers", StoreInput(1 | 2 | 4 | 8, snapshot, log));
  Write(dir, "empty", StoreInput(0, "", ""));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR (fuzz/corpus)\n", argv[0]);
    return 2;
  }
  const std::string corpus = argv[1];
  SchedulerSeeds(corpus + "/scheduler_agent_fuzzer");
  JobSpecSeeds(corpus + "/job_spec_fuzzer");
  LocalStoreSeeds(corpus + "/local_store_fuzzer");
  return 0;
}
