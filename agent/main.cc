// joule-agent: the node agent. Discovers (or simulates) devices, registers
// with the scheduler, streams telemetry, runs tasks as child processes.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "agent/agent.h"
#include "agent/rendezvous.h"
#include "agent/cap_journal.h"
#include "agent/devices.h"
#include "agent/hardware.h"
#include "agent/kubelet/pod_gpu_watcher.h"
#include "agent/kubelet/pod_resources.h"
#include "agent/metrics.h"
#include "agent/probe.h"
#include "agent/scheduler_link.h"
#include "agent/task_users.h"
#include "agent/task_workspace.h"
#include "common/clock.h"
#include "common/device_catalog.h"
#include "common/health_service.h"
#include "common/files.h"
#include "common/log.h"
#include "common/metrics_http.h"
#include "common/node_name.h"
#include "common/scheduler_targets.h"
#include "common/server_options.h"
#include "common/tls_credentials.h"
#include "grpcpp/grpcpp.h"
#include "spec/job_yaml.h"

namespace joule {
namespace {

constexpr char kLinkService[] = "joule.v1.AgentService";

struct AgentFlags {
  std::string scheduler = "127.0.0.1:7070";
  std::string listen = "0.0.0.0:7071";
  // Empty: the local address of the route to the scheduler.
  std::string address;
  std::string task_ports = kDefaultTaskPorts;
  // Empty: no metrics endpoint.
  std::string metrics_listen;
  std::string metrics_auth_file;
  std::string node_name;
  std::string simulate;
  std::string sysfs_root = "/sys";
  std::string task_cgroup_root;
  std::string nvml_library = "libnvidia-ml.so.1";
  bool probe = false;
  bool check_config = false;
  double probe_interval_s = 1;
  double telemetry_period_s = 1;
  double heartbeat_period_s = 1;
  std::string work_dir;
  std::string procfs_root = "/proc";
  double cpus = 0;
  std::string memory;
  double static_power_w = 50;
  double cpu_tdp_w = 65;
  double cpu_idle_w = 10;
  std::vector<std::string> labels;
  double stop_grace_s = 10;
  bool verbose = false;
  // Who tasks run as (README, "Security").
  std::string task_users;
  int64_t min_task_uid = 1000;
  bool allow_root_tasks = false;
  // Security (README, "Security"): mutual TLS to the scheduler unless
  // --insecure.
  bool insecure = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  // The kubelet's PodResources socket; empty: pods' GPUs are not watched.
  std::string pod_resources_socket;
  double pod_resources_period_s = 10;
};

// The credentials for the scheduler link: mutual TLS with this node's
// certificate, or plaintext with --insecure (then the agent's own ports
// must be on loopback). An error names the flag.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> LinkCredentials(
    const AgentFlags& flags) {
  if (flags.insecure) {
    if (!flags.tls_ca.empty() || !flags.tls_cert.empty() || !flags.tls_key.empty()) {
      return absl::InvalidArgumentError(
          "--insecure turns TLS off: drop it, or drop --tls-ca/--tls-cert/--tls-key");
    }
    if (absl::Status loopback = RequireLoopbackServers(flags.listen, flags.metrics_listen);
        !loopback.ok()) {
      return loopback;
    }
    JLOG(WARNING) << "--insecure: plaintext to the scheduler; nothing proves this node";
    return grpc::InsecureChannelCredentials();
  }
  TlsFiles files;
  files.ca_file = flags.tls_ca;
  files.cert_file = flags.tls_cert;
  files.key_file = flags.tls_key;
  if (files.ca_file.empty() || files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError(
        "the scheduler link needs --tls-ca (the scheduler's CA), --tls-cert and --tls-key "
        "(this node's certificate, naming spiffe://TRUST-DOMAIN/node/NODE); for plaintext "
        "on one machine, use --insecure");
  }
  if (absl::Status checked = CheckTlsFiles(files, "--tls", true); !checked.ok()) {
    return checked;
  }
  return MakeClientTlsCredentials(files);
}


int64_t MemTotalBytes(const std::string& procfs_root) {
  std::ifstream in(procfs_root + "/meminfo");
  std::string key;
  int64_t kib = 0;
  while (in >> key >> kib) {
    if (key == "MemTotal:") return kib * 1024;
    in.ignore(1 << 10, '\n');
  }
  return int64_t{8} << 30;
}

// --check-config: every problem of the flags and of the files they name
// (certificates, task users, metrics users), found without touching the
// hardware, binding a port or reaching the scheduler. Empty when sound.
std::vector<std::string> CheckConfig(const AgentFlags& flags) {
  std::vector<std::string> problems;
  auto note = [&problems](const absl::Status& status, const std::string& flag = "") {
    if (!status.ok()) problems.push_back(absl::StrCat(flag, status.message()));
  };
  if (!flags.node_name.empty()) note(ValidateNodeName(flags.node_name), "--node-name: ");
  if (SchedulerTargets::SplitAddressList(flags.scheduler).empty()) {
    problems.push_back(absl::StrCat("--scheduler \"", flags.scheduler, "\": no address"));
  }
  for (const std::string& target : SchedulerTargets::SplitAddressList(flags.scheduler)) {
    note(CheckListenAddress(target, "--scheduler"));
  }
  note(CheckListenAddress(flags.listen, "--listen"));
  note(ParsePortRange(flags.task_ports).status(), "--task-ports: ");
  if (!flags.task_users.empty()) note(LoadTaskUsersFile(flags.task_users).status(), "--task-users: ");
  if (!flags.memory.empty()) {
    int64_t bytes = 0;
    note(ParseQuantity(flags.memory, &bytes), "--memory: ");
  }
  for (const std::string& label : flags.labels) {
    if (label.empty() || label[0] == '=' || label.find('=') == std::string::npos) {
      problems.push_back(absl::StrCat("--label: \"", label, "\" is not KEY=VALUE"));
    }
  }
  if (flags.cpu_idle_w > flags.cpu_tdp_w) problems.push_back("--cpu-idle-w must be <= --cpu-tdp-w");
  note(LinkCredentials(flags).status());
  if (!flags.pod_resources_socket.empty()) {
    note(PodResourcesClient::Create(flags.pod_resources_socket).status(),
         "--pod-resources-socket: ");
  }
  if (!flags.metrics_listen.empty()) {
    MetricsServerOptions metrics;
    metrics.auth_file = flags.metrics_auth_file;
    note(CheckMetricsServer(flags.metrics_listen, metrics));
  }
  return problems;
}

int Run(const AgentFlags& flags) {
  if (flags.verbose) SetMinLogLevel(LogLevel::kDebug);
  if (flags.check_config) return ReportConfigCheck("joule-agent", CheckConfig(flags), std::cout, std::cerr);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const Clock* clock = RealClock::Get();
  AgentOptions options;
  options.node_name = flags.node_name;
  if (options.node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    options.node_name = absl::AsciiStrToLower(host);
  }
  if (absl::Status valid = ValidateNodeName(options.node_name); !valid.ok()) {
    std::cerr << "joule-agent: "
              << (flags.node_name.empty() ? "the hostname is not a valid node name (set "
                                            "--node-name): "
                                          : "--node-name: ")
              << valid.message() << "\n";
    return 2;
  }
  options.work_dir = flags.work_dir.empty()
                         ? absl::StrCat("/tmp/joule-agent-", options.node_name)
                         : flags.work_dir;
  options.procfs_root = flags.procfs_root;
  options.task_cgroup_root = flags.task_cgroup_root;
  if (!flags.task_users.empty()) {
    absl::StatusOr<TaskUserMap> users = LoadTaskUsersFile(flags.task_users);
    if (!users.ok()) {
      std::cerr << "joule-agent: --task-users: " << users.status().message() << "\n";
      return 2;
    }
    options.task_users = *std::move(users);
  }
  options.min_task_uid = flags.min_task_uid;
  options.allow_root_tasks = flags.allow_root_tasks;
  options.address = flags.address.empty() ? RouteAddress(flags.scheduler) : flags.address;
  absl::StatusOr<std::pair<int32_t, int32_t>> ports = ParsePortRange(flags.task_ports);
  if (!ports.ok()) {
    std::cerr << "joule-agent: --task-ports: " << ports.status().message() << "\n";
    return 2;
  }
  options.task_port_min = ports->first;
  options.task_port_max = ports->second;
  options.cpus = flags.cpus > 0 ? flags.cpus : std::thread::hardware_concurrency();
  options.memory_bytes = MemTotalBytes(flags.procfs_root);
  if (!flags.memory.empty()) {
    absl::Status parsed = ParseQuantity(flags.memory, &options.memory_bytes);
    if (!parsed.ok()) {
      std::cerr << "joule-agent: --memory: " << parsed.message() << "\n";
      return 2;
    }
  }
  options.static_power_w = flags.static_power_w;
  for (const std::string& label : flags.labels) {
    std::pair<std::string, std::string> kv = absl::StrSplit(label, absl::MaxSplits('=', 1));
    if (kv.first.empty()) {
      std::cerr << "joule-agent: --label: \"" << label << "\" is not KEY=VALUE\n";
      return 2;
    }
    options.labels[kv.first] = kv.second;
  }
  for (const char* name : {"PATH", "HOME", "USER", "LANG", "TZ", "TMPDIR"}) {
    if (const char* value = std::getenv(name)) options.base_env.emplace_back(name, value);
  }

  HardwareOptions hardware_options;
  hardware_options.node_name = options.node_name;
  hardware_options.sysfs_root = flags.sysfs_root;
  hardware_options.procfs_root = flags.procfs_root;
  hardware_options.nvml_library = flags.nvml_library;
  hardware_options.simulate = flags.simulate;
  hardware_options.cpu_tdp_w = flags.cpu_tdp_w;
  hardware_options.cpu_idle_w = flags.cpu_idle_w;
  absl::StatusOr<Hardware> hardware = DiscoverHardware(hardware_options, clock->Now());
  if (!hardware.ok()) {
    std::cerr << "joule-agent: " << hardware.status().message() << "\n";
    return 2;
  }
  if (flags.probe) {
    return RunProbe(*hardware, *clock, 3, absl::Seconds(flags.probe_interval_s),
                    std::cout);
  }
  // --probe never talks to the scheduler, so only a real run needs the link's
  // credentials.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> link_credentials =
      LinkCredentials(flags);
  if (!link_credentials.ok()) {
    std::cerr << "joule-agent: " << link_credentials.status().message() << "\n";
    return 2;
  }
  std::unique_ptr<PodResourcesClient> pod_resources;
  if (!flags.pod_resources_socket.empty()) {
    absl::StatusOr<std::unique_ptr<PodResourcesClient>> client =
        PodResourcesClient::Create(flags.pod_resources_socket);
    if (!client.ok()) {
      std::cerr << "joule-agent: --pod-resources-socket: " << client.status().message()
                << "\n";
      return 2;
    }
    pod_resources = *std::move(client);
  }
  for (const v1::SourceStatus& source : hardware->sources) {
    if (source.state() == v1::SourceStatus::STATE_DEGRADED) {
      JLOG(WARNING) << "source " << source.name() << " degraded: " << source.message();
    } else {
      JLOG(INFO) << "source " << source.name() << ": "
                 << (source.state() == v1::SourceStatus::STATE_OK ? "" : "absent: ")
                 << source.message();
    }
  }
  // The agent's state, owned by it, which no task can write.
  const TaskWorkspace workspace(options.work_dir);
  absl::Status made = workspace.Prepare();
  if (!made.ok()) {
    std::cerr << "joule-agent: --work-dir: " << made.message() << "\n";
    return 1;
  }
  // A journal that cannot be parsed never keeps the agent down: it is kept
  // aside, and every device goes back to its default below.
  std::optional<CapJournal::Reset> journal_reset;
  CapJournal journal =
      CapJournal::OpenOrReset(workspace.JournalPath(), clock->Now(), &journal_reset);
  // Metrics are served from before the agent exists (it fills them in), so
  // that a bad --metrics-listen fails before anything runs.
  std::unique_ptr<AgentMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> metrics_server;
  if (!flags.metrics_listen.empty()) {
    metrics = std::make_unique<AgentMetrics>(options.node_name);
    MetricsServerOptions metrics_options;
    metrics_options.auth_file = flags.metrics_auth_file;
    absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer = StartMetricsServer(
        flags.metrics_listen, metrics->registry(), nullptr, metrics_options);
    if (!exposer.ok()) {
      std::cerr << "joule-agent: " << exposer.status().message() << "\n";
      // A malformed address is a flag error; one that cannot be bound is
      // like --listen's.
      return absl::IsInvalidArgument(exposer.status()) ? 2 : 1;
    }
    metrics_server = *std::move(exposer);
  }

  // The agent's own gRPC server carries the standard health service (for
  // Kubernetes gRPC probes): "" is the process, "joule.v1.AgentService" is
  // SERVING while the stream to the scheduler is up.
  HealthService health;
  health.SetStatus(kLinkService, grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  // Plaintext, health only: the one kind of port that needs no
  // authentication.
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(flags.listen, grpc::InsecureServerCredentials(), &port);
  ApplyServerLimits(&builder, 64 << 10);
  builder.RegisterService(&health);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "joule-agent: cannot listen on " << flags.listen << "\n";
    return 1;
  }
  std::cout << "listening on " << flags.listen.substr(0, flags.listen.rfind(':'))
            << ":" << port << std::endl;

  Agent agent(options, std::move(hardware->gpus), std::move(hardware->cpu), clock,
              &journal, metrics.get());
  agent.SetCpuSettings(std::move(hardware->cpu_settings));
  for (const v1::SourceStatus& source : hardware->sources) {
    if (source.state() == v1::SourceStatus::STATE_ABSENT) {
      agent.SourceAbsent(source.name(), source.message());
    } else if (source.state() == v1::SourceStatus::STATE_DEGRADED) {
      agent.SourceError(source.name(), absl::UnavailableError(source.message()));
    } else {
      agent.SourceOk(source.name());
    }
  }
  // Give the hardware back as we found it before anything else runs.
  if (journal_reset.has_value()) agent.RecoverFromLostJournal(*journal_reset);
  agent.RestoreLeftoverCaps();
  agent.KillLeftoverTasks();
  SchedulerLink link(
      flags.scheduler, clock, [&agent] { return agent.MakeRegister(); },
      [&agent](const v1::SchedulerCommand& command) { agent.HandleCommand(command); });
  link.UseCredentials(*link_credentials, flags.tls_server_name);
  agent.SetSink(&link);
  link.Start();

  std::atomic<bool> stop{false};
  // The kubelet is asked on a thread of its own, so that a slow answer
  // (up to the client's 2 s deadline) holds up neither the agent's lock nor
  // its task loop.
  std::thread pod_loop;
  if (pod_resources != nullptr) {
    const v1::Register described = agent.MakeRegister();
    pod_loop = std::thread([&, devices = std::vector<v1::Device>(
                                   described.node().devices().begin(),
                                   described.node().devices().end())] {
      PodGpuWatcher watcher(pod_resources.get(), devices, &agent, clock,
                            absl::Seconds(flags.pod_resources_period_s));
      JLOG(INFO) << "watching the GPUs of pods through unix://"
                 << pod_resources->socket_path();
      while (!stop.load()) {
        watcher.PollIfDue();
        absl::SleepFor(absl::Milliseconds(100));
      }
    });
  }
  std::thread loop([&] {
    const absl::Duration period = absl::Seconds(flags.telemetry_period_s);
    const absl::Duration heartbeat_period = absl::Seconds(flags.heartbeat_period_s);
    absl::Time next_telemetry = clock->Now();
    absl::Time last_sent = clock->Now();
    bool was_connected = false;
    while (!stop.load()) {
      agent.Tick();
      const bool connected = link.connected();
      if (metrics != nullptr) metrics->ObserveLink(connected, link.reconnects());
      if (connected != was_connected) {
        health.SetStatus(kLinkService,
                         connected ? grpc::health::v1::HealthCheckResponse::SERVING
                                   : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
        was_connected = connected;
      }
      const absl::Time now = clock->Now();
      if (now >= next_telemetry) {
        agent.SendTelemetry();
        next_telemetry = now + period;
        last_sent = now;
      } else if (now - last_sent >= heartbeat_period) {
        // Telemetry slower than the heartbeat: say we are alive anyway.
        agent.SendHeartbeat();
        last_sent = now;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  });

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  JLOG(INFO) << "signal " << signal_number << ": stopping tasks and restoring caps";
  stop = true;
  loop.join();
  if (pod_loop.joinable()) pod_loop.join();
  const absl::Duration grace = absl::Seconds(flags.stop_grace_s);
  agent.StopAllTasks(grace);
  const absl::Time give_up = clock->Now() + grace + absl::Seconds(5);
  while (agent.running_tasks() > 0 && clock->Now() < give_up) {
    agent.Tick();
    absl::SleepFor(absl::Milliseconds(20));
  }
  agent.RestoreDefaultCaps();
  // The node is going down (shutdown, suspend) or the agent is being
  // stopped: the scheduler takes the node out of service now.
  v1::AgentMessage going_down;
  going_down.mutable_going_down()->set_reason(
      absl::StrCat("joule-agent stopped by signal ", signal_number));
  link.Send(going_down);
  // Give the link a moment to deliver the final exit events.
  absl::SleepFor(absl::Milliseconds(300));
  JLOG(DEBUG) << "stopping the scheduler link";
  link.Stop();
  JLOG(DEBUG) << "stopping the gRPC server";
  server->Shutdown(absl::ToChronoTime(clock->Now() + absl::Seconds(1)));
  JLOG(DEBUG) << "stopped";
  return 0;
}

}  // namespace
}  // namespace joule

int main(int argc, char** argv) {
  joule::AgentFlags flags;
  if (const char* env = std::getenv("JOULE_SCHEDULER")) flags.scheduler = env;
  CLI::App app{"joule-agent: the Joule node agent"};
  app.add_option("--scheduler", flags.scheduler,
                 "Scheduler address HOST:PORT, or the comma-separated addresses of "
                 "all replicas (HOST:PORT,HOST:PORT,...): the agent registers with "
                 "the leader, following standbys' redirects (env JOULE_SCHEDULER)")
      ->capture_default_str();
  app.add_option("--address", flags.address,
                 "Address other nodes reach this node's tasks at: a gang's MASTER_ADDR "
                 "when its replica 0 runs here (default: the local address of the "
                 "route to --scheduler; on Kubernetes, the pod IP)");
  app.add_option("--task-ports", flags.task_ports,
                 "LOW-HIGH: ports handed to gangs whose replica 0 runs here, for their "
                 "rendezvous (MASTER_PORT); none: no ports")
      ->capture_default_str();
  app.add_option("--listen", flags.listen,
                 "HOST:PORT of the agent's gRPC server (health service); port 0 "
                 "picks a free port, printed as 'listening on ...'")
      ->capture_default_str();
  app.add_option("--metrics-listen", flags.metrics_listen,
                 "HOST:PORT to serve Prometheus metrics on at /metrics (default: "
                 "off); port 0 picks a free port, printed as 'metrics on ...'");
  app.add_option("--metrics-auth-file", flags.metrics_auth_file,
                 "Require HTTP basic auth on /metrics: lines 'USER sha256:HEX' (HEX: "
                 "sha256sum of the password), re-read when the file changes");
  app.add_option("--node-name", flags.node_name,
                 "Node name, a DNS-1123 subdomain as Kubernetes node names are "
                 "(default: the hostname, lower-cased)");
  app.add_option("--simulate", flags.simulate,
                 "Simulated GPUs instead of NVML, MODEL:COUNT[,MODEL:COUNT...] "
                 "(e.g. V100:4); models: V100, A40, RTX6000, A100, H100");
  app.add_option("--heartbeat-period", flags.heartbeat_period_s,
                 "Seconds between heartbeats when no telemetry is due (keep it "
                 "well below the scheduler's --heartbeat-timeout)")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 600.0));
  app.add_option("--telemetry-period", flags.telemetry_period_s,
                 "Seconds between telemetry samples")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 600.0));
  app.add_option("--work-dir", flags.work_dir,
                 "Directory for task logs and files (default /tmp/joule-agent-NODE)");
  app.add_option("--procfs-root", flags.procfs_root, "Root of the proc filesystem")
      ->capture_default_str();
  app.add_option("--sysfs-root", flags.sysfs_root,
                 "Root of the sys filesystem (RAPL, hwmon, thermal, cpufreq)")
      ->capture_default_str();
  app.add_option("--task-cgroup-root", flags.task_cgroup_root,
                 "A cgroup v2 directory delegated to the agent (e.g. "
                 "/sys/fs/cgroup/joule): each task gets its own cgroup there and is "
                 "metered by its cpu.stat; default: by process group");
  app.add_option("--nvml-library", flags.nvml_library,
                 "NVML library to dlopen (a name on the loader path, or a path)")
      ->capture_default_str();
  app.add_flag("--check-config", flags.check_config,
               "Check the flags and every file they name (certificates, task users, metrics "
               "users), print every problem, and exit (0: sound, 2: not) without starting");
  app.add_flag("--probe", flags.probe,
               "Print the discovered devices, their sources and three samples, "
               "change nothing, and exit");
  app.add_option("--probe-interval", flags.probe_interval_s,
                 "Seconds between --probe samples")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 60.0));
  app.add_option("--cpus", flags.cpus, "Schedulable CPUs (default: all)")
      ->check(CLI::Range(0.0, 100000.0));
  app.add_option("--memory", flags.memory,
                 "Schedulable memory, e.g. 64Gi (default: MemTotal)");
  app.add_option("--static-power-w", flags.static_power_w,
                 "Node power outside GPUs and CPU (fans, memory, board), W")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100000.0));
  app.add_option("--cpu-tdp-w", flags.cpu_tdp_w,
                 "CPU package power at full load, for the estimate without RAPL")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10000.0));
  app.add_option("--cpu-idle-w", flags.cpu_idle_w, "CPU package idle power, W")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10000.0));
  app.add_option("--label", flags.labels, "Node label KEY=VALUE (repeatable)");
  app.add_option("--task-users", flags.task_users,
                 "Users tasks may run as, one a line: 'NAME UID GID [GID,GID...]' ('#' "
                 "comments); only these users then (default: the system user database)");
  app.add_option("--min-task-uid", flags.min_task_uid,
                 "Refuse tasks whose user has a smaller uid (0: no floor; uid 0 still "
                 "needs --allow-root-tasks)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{4294967294}));
  app.add_flag("--allow-root-tasks", flags.allow_root_tasks,
               "Let tasks run as uid 0 (refused by default)");
  app.add_option("--stop-grace", flags.stop_grace_s,
                 "Seconds between SIGTERM and SIGKILL for tasks at agent shutdown")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_flag("-v,--verbose", flags.verbose, "Debug logging");
  app.add_flag("--insecure", flags.insecure,
               "Plaintext to the scheduler with no node identity, for one machine: "
               "--listen and --metrics-listen must be loopback addresses");
  app.add_option("--tls-ca", flags.tls_ca, "PEM CA that verifies the scheduler's certificate");
  app.add_option("--tls-cert", flags.tls_cert,
                 "PEM certificate of this node (URI SAN spiffe://TRUST-DOMAIN/node/NODE; "
                 "re-read when the file changes)");
  app.add_option("--tls-key", flags.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-server-name", flags.tls_server_name,
                 "Name to expect in the scheduler's certificate (default: the host of "
                 "--scheduler)");
  app.add_option("--pod-resources-socket", flags.pod_resources_socket,
                 "The kubelet's PodResources socket (e.g. " +
                     std::string(joule::kDefaultPodResourcesSocket) +
                     "): GPUs Kubernetes pods hold outside Joule get their energy "
                     "attributed to the pod and are reported busy (default: off)");
  app.add_option("--pod-resources-period", flags.pod_resources_period_s,
                 "Seconds between PodResources lists")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 3600.0));
  CLI11_PARSE(app, argc, argv);
  if (flags.cpu_idle_w > flags.cpu_tdp_w && !flags.check_config) {
    std::cerr << "joule-agent: --cpu-idle-w must be <= --cpu-tdp-w\n";
    return 2;
  }
  return joule::Run(flags);
}
