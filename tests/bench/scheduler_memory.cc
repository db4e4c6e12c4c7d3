// Scheduler memory at scale: the real scheduler core (in this process, on a
// fake clock and the in-memory store) with `nodes` registered nodes of 8
// GPUs, each with one telemetry sample, and `jobs` jobs, some finished, some
// running and the rest queued. Prints the process's RSS (VmRSS from
// /proc/self/status) before the scheduler exists (the baseline: this binary
// and its libraries) and after each step, and what the scheduler added.
//
//   bazel run -c opt //tests/bench:scheduler_memory -- --nodes=10000 --jobs=100000
//
// Target (issue 15): the scheduler's RSS at 10,000 nodes + 100,000 jobs at
// most 1 GB; exits 1 when it is over.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "joule/v1/agent.pb.h"
#include "scheduler/scheduler.h"
#include "scheduler/store/memory_store.h"

namespace joule {
namespace {

// A /proc/self/status size field (VmRSS: resident now; VmHWM: the peak)
// in MiB.
double StatusMib(const std::string& field = "VmRSS:") {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) != 0) continue;
    int64_t kib = 0;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits.push_back(c);
    }
    if (absl::SimpleAtoi(digits, &kib)) return kib / 1024.0;
  }
  return -1;
}

// Takes the scheduler's commands and drops them (no agent behind it).
class NullLink : public AgentLink {
 public:
  void Send(const v1::SchedulerCommand&) override {}
};

v1::Register Registration(const std::string& name) {
  v1::Register message;
  v1::NodeInfo* node = message.mutable_node();
  node->set_name(name);
  node->set_cpus(96);
  node->set_memory_bytes(int64_t{1} << 40);
  node->set_static_power_w(300);
  node->set_agent_version("joule-agent bench");
  for (int i = 0; i < 8; ++i) {
    v1::Device* device = node->add_devices();
    device->set_index(i);
    device->set_kind(v1::DEVICE_KIND_GPU);
    device->set_model(i < 4 || name.back() % 2 == 0 ? "A100" : "V100");
    device->set_uuid(absl::StrCat("GPU-", name, "-", i));
    device->set_memory_bytes(int64_t{80} << 30);
    device->set_power_limit_min_w(100);
    device->set_power_limit_default_w(400);
    device->set_power_limit_max_w(400);
    device->set_idle_power_w(50);
    device->set_source("nvml");
  }
  return message;
}

v1::AgentMessage Sample(absl::Time now) {
  v1::AgentMessage message;
  v1::NodeSample* sample = message.mutable_telemetry();
  *sample->mutable_time() = ToProtoTime(now);
  sample->set_node_power_w(1500);
  for (int i = 0; i < 8; ++i) {
    v1::DeviceSample* device = sample->add_devices();
    device->set_kind(v1::DEVICE_KIND_GPU);
    device->set_index(i);
    device->set_power_w(150);
    device->set_temp_c(45);
    device->set_utilization(0.5);
  }
  return message;
}

v1::JobSpec Spec(int j) {
  v1::JobSpec spec;
  spec.set_name(absl::StrCat("train-", j % 50));
  spec.set_command("/usr/bin/python3");
  spec.add_args("train.py");
  spec.add_args(absl::StrCat("--run=", j));
  spec.mutable_resources()->set_gpus(1 << (j % 4));
  spec.mutable_resources()->set_cpus(4);
  spec.mutable_resources()->set_memory_bytes(int64_t{8} << 30);
  (*spec.mutable_env())["DATA"] = "/datasets/imagenet";
  return spec;
}

int Main(int argc, char** argv) {
  int nodes = 10'000;
  int jobs = 100'000;
  CLI::App app("Scheduler RSS at scale: nodes with telemetry, jobs finished, running and queued");
  app.add_option("--nodes", nodes, "nodes of 8 GPUs")->check(CLI::Range(1, 1'000'000));
  app.add_option("--jobs", jobs, "jobs submitted")->check(CLI::Range(1, 10'000'000));
  CLI11_PARSE(app, argc, argv);

  SetMinLogLevel(LogLevel::kWarning);  // one line per node and job otherwise
  const double baseline = StatusMib();
  std::printf("RSS before the scheduler exists (baseline): %.1f MiB\n", baseline);
  FakeClock clock;
  MemoryStore store;
  SchedulerOptions options;
  options.store_writes.inline_commits = true;
  absl::StatusOr<std::unique_ptr<Scheduler>> created = Scheduler::Create(&store, &clock, options);
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 2;
  }
  Scheduler& scheduler = **created;
  std::vector<std::unique_ptr<NullLink>> links;
  for (int n = 0; n < nodes; ++n) {
    links.push_back(std::make_unique<NullLink>());
    absl::Status registered =
        scheduler.OnAgentRegister(links.back().get(), Registration(absl::StrFormat("node-%05d", n)));
    if (registered.ok()) registered = scheduler.OnAgentMessage(links.back().get(), Sample(clock.Now()));
    if (!registered.ok()) {
      std::fprintf(stderr, "node %d: %s\n", n, registered.ToString().c_str());
      return 2;
    }
  }
  const double with_nodes = StatusMib();
  std::printf("%d nodes registered, one telemetry sample each: %.1f MiB\n", nodes, with_nodes);

  for (int j = 0; j < jobs; ++j) {
    absl::StatusOr<v1::Job> job = scheduler.SubmitJob(Spec(j), absl::StrCat("request-", j));
    if (!job.ok()) {
      std::fprintf(stderr, "job %d: %s\n", j, job.status().ToString().c_str());
      return 2;
    }
  }
  clock.Advance(absl::Seconds(1));
  scheduler.Tick();
  // Half of the placed tasks start and exit: their jobs are finished.
  int finished = 0;
  int running = 0;
  for (const v1::Job& job : scheduler.ListJobs({v1::JOB_STATE_RUNNING})) {
    const v1::Task& task = job.tasks(0);
    const bool ends = (finished + running) % 2 == 0;
    for (int kind : {v1::TaskEvent::KIND_STARTED, v1::TaskEvent::KIND_EXITED}) {
      if (kind == v1::TaskEvent::KIND_EXITED && !ends) break;
      v1::AgentMessage message;
      v1::TaskEvent* event = message.mutable_task_event();
      event->set_task_id(task.task_id());
      event->set_job_id(job.id());
      event->set_kind(static_cast<v1::TaskEvent::Kind>(kind));
      *event->mutable_time() = ToProtoTime(clock.Now());
      event->set_pid(1000 + finished + running);
      int node = 0;
      if (!absl::SimpleAtoi(absl::string_view(task.node()).substr(5), &node) || node < 0 ||
          node >= nodes) {
        std::fprintf(stderr, "unexpected node %s\n", task.node().c_str());
        return 2;
      }
      absl::Status sent = scheduler.OnAgentMessage(links[node].get(), message);
      if (!sent.ok()) {
        std::fprintf(stderr, "%s: %s\n", task.task_id().c_str(), sent.ToString().c_str());
        return 2;
      }
    }
    ++(ends ? finished : running);
  }
  clock.Advance(absl::Seconds(1));
  scheduler.Tick();
  const double with_jobs = StatusMib();
  std::printf("%d jobs (%zu pending, %zu running, %zu succeeded): %.1f MiB (peak %.1f MiB)\n",
              jobs, scheduler.ListJobs({v1::JOB_STATE_PENDING}).size(),
              scheduler.ListJobs({v1::JOB_STATE_RUNNING}).size(),
              scheduler.ListJobs({v1::JOB_STATE_SUCCEEDED}).size(), with_jobs,
              StatusMib("VmHWM:"));
  const bool ok = with_jobs - baseline <= 1024;
  std::printf("\nscheduler RSS: %.1f MiB above the baseline (target <= 1 GB = 1024 MiB: %s); "
              "%.1f KiB per node, %.1f KiB per job\n",
              with_jobs - baseline, ok ? "PASS" : "FAIL", (with_nodes - baseline) * 1024 / nodes,
              (with_jobs - with_nodes) * 1024 / jobs);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace joule

int main(int argc, char** argv) { return joule::Main(argc, argv); }
