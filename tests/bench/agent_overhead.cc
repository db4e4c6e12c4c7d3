// agent_overhead: what joule-agent costs the node it runs on. Runs a real
// agent sampling 8 GPUs (the fake libnvidia-ml.so.1) and 2 RAPL packages (a
// fixture sysfs tree) at 1 Hz against a real joule-scheduler, and next to it,
// in the same run, a baseline agent with no GPUs and no RAPL (the CPU-power
// estimate only), and prints for each the CPU time per sample, the CPU % of
// one core and the peak RSS, the ratio of the two, and PASS/FAIL against the
// targets (at most 0.5 % of one core, at most 30 MiB peak RSS).
//
//   bazel run //tests/bench:agent_overhead -- --duration-s=60
//
// Method:
//   1. Writes a temporary directory: the fake NVML state file (8 V100s), a
//      sysfs tree with two RAPL packages and their DRAM subzones, and an
//      empty sysfs tree for the baseline.
//   2. Starts a background thread that moves the GPU and RAPL energy
//      counters every second, as real hardware would.
//   3. Runs `joule-agent --probe` once with each agent's flags and checks
//      that the measured agent sees 8 NVML GPUs and RAPL, and the baseline
//      neither (it falls back to the estimate).
//   4. Starts the scheduler, then both agents concurrently (on 2 cores this
//      is fine: both are idle between samples), and waits until both report
//      their scheduler stream up on their health service.
//   5. After a warm-up, reads each agent's utime+stime (/proc/PID/stat),
//      VmRSS and VmHWM (/proc/PID/status) at the start, every --window-s,
//      and at the end of --duration-s.
//   6. Checks both agents are still alive and connected, stops everything
//      (SIGTERM to the agents, then the scheduler), removes the directory and
//      prints the figures.
//
// Exit status: 0 when the measured agent meets both targets, 1 when it
// misses one, 2 when the benchmark could not run.
//
// Threading: main() and one counter thread (CounterTicker); nothing else is
// shared between them but the files they write.

#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/process/task_process.h"
#include "common/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/load/proc_stats.h"

namespace joule {
namespace {

constexpr char kWorkspace[] = "joule";
constexpr char kAgentService[] = "joule.v1.AgentService";
constexpr int kGpus = 8;
constexpr int kRaplPackages = 2;
// The counter range Linux reports for most Intel packages (a 32-bit counter
// of 61 µJ units).
constexpr uint64_t kRaplRangeUj = 262143328850;
// What the simulated hardware draws, for the counter thread.
constexpr uint64_t kGpuPowerMw = 65000;
constexpr uint64_t kPackagePowerUw = 35000000;
constexpr uint64_t kDramPowerUw = 4000000;

struct BenchFlags {
  double duration_s = 60;
  double warmup_s = 5;
  double window_s = 10;
  double telemetry_period_s = 1;
  double cpu_target_percent = 0.5;
  double rss_target_mib = 30;
  bool keep_dir = false;
};

// Set by SIGINT/SIGTERM: stop measuring and clean up.
std::atomic<bool> g_interrupted{false};

void OnSignal(int) { g_interrupted.store(true); }

absl::Time Now() { return RealClock::Get()->Now(); }

// Sleeps until `deadline` in short steps; false when interrupted.
bool SleepUntil(absl::Time deadline) {
  while (!g_interrupted.load()) {
    const absl::Duration left = deadline - Now();
    if (left <= absl::ZeroDuration()) return true;
    absl::SleepFor(std::min(left, absl::Milliseconds(100)));
  }
  return false;
}

// Polls `condition` every 20 ms until it holds, `timeout` passes or the run is
// interrupted.
template <typename Condition>
bool WaitFor(Condition condition, absl::Duration timeout) {
  const absl::Time deadline = Now() + timeout;
  while (!g_interrupted.load()) {
    if (condition()) return true;
    if (Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string Absolute(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[4096] = {};
  if (getcwd(cwd, sizeof(cwd) - 1) == nullptr) return path;
  return absl::StrCat(cwd, "/", path);
}

// Where Bazel put `relative` (a workspace path such as "agent/joule-agent")
// among this binary's runfiles. Tries $RUNFILES_DIR, then
// $TEST_SRCDIR/$TEST_WORKSPACE (bazel test), then <argv[0]>.runfiles and
// <this executable>.runfiles (bazel run, or bazel-bin/... by hand), then the
// working directory (bazel run starts the binary in its runfiles tree).
absl::StatusOr<std::string> FindRunfile(const std::string& argv0,
                                        const std::string& relative) {
  std::vector<std::string> roots;
  if (const char* dir = std::getenv("RUNFILES_DIR")) {
    roots.push_back(absl::StrCat(dir, "/", kWorkspace));
  }
  if (const char* srcdir = std::getenv("TEST_SRCDIR")) {
    const char* workspace = std::getenv("TEST_WORKSPACE");
    roots.push_back(absl::StrCat(srcdir, "/", workspace ? workspace : kWorkspace));
  }
  roots.push_back(absl::StrCat(argv0, ".runfiles/", kWorkspace));
  char self[4096] = {};
  if (readlink("/proc/self/exe", self, sizeof(self) - 1) > 0) {
    roots.push_back(absl::StrCat(self, ".runfiles/", kWorkspace));
  }
  roots.push_back(".");
  for (const std::string& root : roots) {
    const std::string path = absl::StrCat(root, "/", relative);
    if (access(path.c_str(), F_OK) == 0) return Absolute(path);
  }
  return absl::NotFoundError(absl::StrCat(
      relative, " not found in the runfiles (tried ", roots.front(), " and ",
      roots.size() - 1, " more); run with `bazel run //tests/bench:agent_overhead`"));
}

// Writes `contents` to `path` through a temporary file and a rename, so a
// reader never sees half a file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents,
                                 const std::string& temp_path) {
  {
    std::ofstream out(temp_path, std::ios::binary | std::ios::trunc);
    out << contents;
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", temp_path));
  }
  if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("rename ", temp_path, " to ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// The fake NVML state (format at the top of fake_nvml.c) after `seconds` of
// drawing kGpuPowerMw: 8 Tesla V100-PCIE-16GB.
std::string NvmlState(int64_t seconds) {
  std::string text = "# joule agent_overhead benchmark: 8 V100s\n";
  for (int i = 0; i < kGpus; ++i) {
    const uint64_t energy_mj = 1000000 * (i + 1) + kGpuPowerMw * seconds;
    absl::StrAppend(&text, "device ", i, " name=\"Tesla V100-PCIE-16GB\" uuid=GPU-bench-",
                    i, " memory_mib=16160 power_mw=", kGpuPowerMw + 1000 * i,
                    " energy_mj=", energy_mj, " energy_supported=1 temp_c=", 40 + i,
                    " util_gpu=", 10 * i, " util_mem=", 5 * i,
                    " sm_mhz=1245 mem_mhz=877 max_sm_mhz=1380 max_mem_mhz=877"
                    " limit_min_mw=100000 limit_max_mw=250000 limit_default_mw=250000"
                    " limit_mw=250000 throttle=0\n");
  }
  return text;
}

std::string PowercapDir(const std::string& sys_root, const std::string& entry) {
  return absl::StrCat(sys_root, "/class/powercap/", entry);
}

uint64_t RaplEnergyUj(uint64_t start_uj, uint64_t power_uw, int64_t seconds) {
  // The counter wraps to 0 after kRaplRangeUj, as the kernel's does.
  return (start_uj + power_uw * static_cast<uint64_t>(seconds)) % (kRaplRangeUj + 1);
}

// Writes `contents` plus a newline to every (relative path, contents) pair
// under `dir`, creating `dir`.
absl::Status WriteFiles(const std::string& dir,
                        const std::vector<std::pair<std::string, std::string>>& files) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", ec.message()));
  for (const auto& [name, contents] : files) {
    std::ofstream out(absl::StrCat(dir, "/", name), std::ios::trunc);
    out << contents << "\n";
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", dir, "/", name));
  }
  return absl::OkStatus();
}

// A sysfs tree with `kRaplPackages` RAPL packages (intel-rapl:N, package-N,
// one long-term constraint) each with a DRAM subzone (intel-rapl:N:0), laid
// out as agent/cpu/README.md describes, and nothing else.
absl::Status WriteRaplTree(const std::string& sys_root) {
  for (int p = 0; p < kRaplPackages; ++p) {
    absl::Status status = WriteFiles(
        PowercapDir(sys_root, absl::StrCat("intel-rapl:", p)),
        {{"name", absl::StrCat("package-", p)},
         {"energy_uj", absl::StrCat(RaplEnergyUj(1000000000ull * (p + 1), 0, 0))},
         {"max_energy_range_uj", absl::StrCat(kRaplRangeUj)},
         {"constraint_0_name", "long_term"},
         {"constraint_0_power_limit_uw", "125000000"},
         {"constraint_0_time_window_us", "999424"}});
    if (!status.ok()) return status;
    status = WriteFiles(PowercapDir(sys_root, absl::StrCat("intel-rapl:", p, ":0")),
                        {{"name", "dram"},
                         {"energy_uj", absl::StrCat(100000000ull * (p + 1))},
                         {"max_energy_range_uj", absl::StrCat(kRaplRangeUj)}});
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// Moves the fake GPUs' and RAPL domains' energy counters once a second, as
// the hardware would, so every sample the agent takes sees new values.
// Every file is replaced atomically (temporary file + rename).
//
// Threading: Start and Stop from one thread; the worker thread touches only
// files and `stop_`.
class CounterTicker {
 public:
  CounterTicker(std::string nvml_state_path, std::string sys_root, std::string temp_dir)
      : nvml_state_path_(std::move(nvml_state_path)),
        sys_root_(std::move(sys_root)),
        temp_dir_(std::move(temp_dir)) {}
  ~CounterTicker() { Stop(); }

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }

  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  // Writes the counters as they are `seconds` after the start.
  absl::Status Write(int64_t seconds) const {
    absl::Status status = WriteFileAtomically(nvml_state_path_, NvmlState(seconds),
                                              temp_dir_ + "/nvml_state.bench-tmp");
    for (int p = 0; p < kRaplPackages && status.ok(); ++p) {
      status = WriteFileAtomically(
          PowercapDir(sys_root_, absl::StrCat("intel-rapl:", p, "/energy_uj")),
          absl::StrCat(RaplEnergyUj(1000000000ull * (p + 1), kPackagePowerUw, seconds),
                       "\n"),
          temp_dir_ + "/energy_uj.bench-tmp");
      if (!status.ok()) break;
      status = WriteFileAtomically(
          PowercapDir(sys_root_, absl::StrCat("intel-rapl:", p, ":0/energy_uj")),
          absl::StrCat(RaplEnergyUj(100000000ull * (p + 1), kDramPowerUw, seconds), "\n"),
          temp_dir_ + "/energy_uj.bench-tmp");
    }
    return status;
  }

 private:
  void Loop() {
    const absl::Time start = Now();
    for (int64_t second = 1; !stop_.load(); ++second) {
      const absl::Time due = start + absl::Seconds(second);
      while (!stop_.load() && Now() < due) absl::SleepFor(absl::Milliseconds(50));
      if (stop_.load()) break;
      absl::Status status = Write(second);
      if (!status.ok()) std::cerr << "agent_overhead: counters: " << status << "\n";
    }
  }

  const std::string nvml_state_path_;
  const std::string sys_root_;
  const std::string temp_dir_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A fresh directory under $TEST_TMPDIR, $TMPDIR or /tmp, removed (with
// everything in it) when this goes away unless kept.
class TempDir {
 public:
  static absl::StatusOr<std::unique_ptr<TempDir>> Create(bool keep) {
    const char* base = std::getenv("TEST_TMPDIR");
    if (base == nullptr) base = std::getenv("TMPDIR");
    std::string templ = absl::StrCat(base ? base : "/tmp", "/joule-agent-overhead.XXXXXX");
    if (mkdtemp(templ.data()) == nullptr) {
      return absl::InternalError(
          absl::StrCat("mkdtemp ", templ, ": ", std::strerror(errno)));
    }
    return std::unique_ptr<TempDir>(new TempDir(templ, keep));
  }
  ~TempDir() {
    if (keep_) {
      std::cout << "kept " << path_ << "\n";
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    if (ec) std::cerr << "agent_overhead: remove " << path_ << ": " << ec.message() << "\n";
  }
  const std::string& path() const { return path_; }

 private:
  TempDir(std::string path, bool keep) : path_(std::move(path)), keep_(keep) {}
  const std::string path_;
  const bool keep_;
};

// A process the benchmark started (scheduler or agent), with stdout and
// stderr in <log_prefix>.out/.err. Stopped with SIGTERM (then SIGKILL of its
// group) and reaped at the latest when this goes away.
//
// Threading: not thread-safe; used from main() only.
class Child {
 public:
  static absl::StatusOr<std::unique_ptr<Child>> Start(
      std::string name, const std::string& binary, std::vector<std::string> args,
      std::vector<std::pair<std::string, std::string>> env, const std::string& log_prefix) {
    SpawnOptions options;
    options.path = binary;
    options.args = std::move(args);
    options.env = std::move(env);
    options.stdout_path = log_prefix + ".out";
    options.stderr_path = log_prefix + ".err";
    absl::StatusOr<std::unique_ptr<TaskProcess>> process = TaskProcess::Spawn(options);
    if (!process.ok()) return process.status();
    return std::unique_ptr<Child>(
        new Child(std::move(name), *std::move(process), log_prefix));
  }
  ~Child() { Stop(absl::Seconds(15)); }

  const std::string& name() const { return name_; }
  pid_t pid() const { return process_->pid(); }
  std::string out() const { return ReadAll(log_prefix_ + ".out"); }
  std::string err() const { return ReadAll(log_prefix_ + ".err"); }
  bool Running() { return !process_->Poll().has_value(); }

  // Waits up to `timeout` for the process to exit by itself.
  std::optional<ExitStatus> Wait(absl::Duration timeout) {
    std::optional<ExitStatus> exit;
    WaitFor([&] { return (exit = process_->Poll()).has_value(); }, timeout);
    return exit;
  }

  // The HOST:PORT of the "listening on HOST:PORT" line on stdout, once it is
  // there; empty after `timeout` or if the process exits first.
  std::string WaitForListening(absl::Duration timeout) {
    std::string address;
    WaitFor(
        [&] {
          const std::string text = out();
          const size_t pos = text.find("listening on ");
          const size_t end = pos == std::string::npos ? pos : text.find('\n', pos);
          if (end != std::string::npos) {
            address = text.substr(pos + 13, end - pos - 13);
            return true;
          }
          return !Running();
        },
        timeout);
    return address;
  }

  // SIGTERM to the group; SIGKILL after `grace`; reaps. The exit status, or
  // nullopt when it could not be reaped.
  std::optional<ExitStatus> Stop(absl::Duration grace) {
    if (!process_->Poll().has_value()) {
      process_->Terminate(Now(), grace);
      const absl::Time give_up = Now() + grace + absl::Seconds(5);
      while (!process_->Poll().has_value() && Now() < give_up) {
        process_->Tick(Now());
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
    std::optional<ExitStatus> exit = process_->Poll();
    // Whatever it started goes with it.
    if (exit.has_value()) process_->KillGroup();
    return exit;
  }

 private:
  Child(std::string name, std::unique_ptr<TaskProcess> process, std::string log_prefix)
      : name_(std::move(name)),
        process_(std::move(process)),
        log_prefix_(std::move(log_prefix)) {}

  const std::string name_;
  const std::unique_ptr<TaskProcess> process_;
  const std::string log_prefix_;
};

// Whether the agent at `address` reports its scheduler stream up: the
// standard health service's "joule.v1.AgentService" is SERVING exactly then.
bool AgentLinkServing(const std::string& address) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(Now() + absl::Seconds(2)));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(kAgentService);
  grpc::health::v1::HealthCheckResponse response;
  return stub->Check(&context, request, &response).ok() &&
         response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

// What `joule-agent --probe` printed, by section.
struct ProbeReport {
  // Source name -> (state, message).
  std::vector<std::pair<std::string, std::pair<std::string, std::string>>> sources;
  int gpus = 0;
  int cpu_packages = 0;
  int dram = 0;
  int sample_errors = 0;
};

// Parses the probe's output (agent/probe.cc): "sources:" rows
// "  NAME STATE MESSAGE", "devices:" rows "  KIND INDEX ...", then samples.
ProbeReport ParseProbe(const std::string& text) {
  ProbeReport report;
  std::string section;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, " ")) {
      section = std::string(absl::StripSuffix(line, ":"));
      if (absl::StartsWith(section, "sample")) section = "sample";
      continue;
    }
    std::vector<absl::string_view> words =
        absl::StrSplit(absl::StripAsciiWhitespace(line), ' ', absl::SkipEmpty());
    if (words.empty()) continue;
    if (section == "sources" && words.size() >= 2) {
      // The message is what follows the state word.
      const size_t state_at = line.find(words[1], line.find(words[0]) + words[0].size());
      report.sources.push_back(
          {std::string(words[0]),
           {std::string(words[1]), std::string(absl::StripAsciiWhitespace(
                                       line.substr(state_at + words[1].size())))}});
    } else if (section == "devices") {
      report.gpus += words[0] == "GPU";
      report.cpu_packages += words[0] == "CPU";
      report.dram += words[0] == "DRAM";
    } else if (section == "sample") {
      report.sample_errors += absl::StrContains(line, "error:");
    }
  }
  return report;
}

std::string SourceState(const ProbeReport& report, const std::string& name) {
  for (const auto& [source, state] : report.sources) {
    if (source == name) return state.first;
  }
  return "missing";
}

// One reading of a process's usage.
struct Usage {
  absl::Time at;
  double cpu_s = 0;
  int64_t rss_kib = 0;
  int64_t hwm_kib = 0;
  int64_t threads = 0;
};

// The number after `field` ("VmHWM:") in /proc/PID/status text, in kB.
std::optional<int64_t> StatusField(absl::string_view status, absl::string_view field) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, field)) continue;
    std::vector<absl::string_view> words =
        absl::StrSplit(absl::StripAsciiWhitespace(line), ' ', absl::SkipEmpty());
    int64_t value = 0;
    if (!words.empty() && absl::SimpleAtoi(words[0], &value)) return value;
  }
  return std::nullopt;
}

absl::StatusOr<Usage> ReadUsage(pid_t pid) {
  Usage usage;
  usage.at = Now();
  absl::StatusOr<ProcStats> stats = ReadProcStats(pid);
  if (!stats.ok()) return stats.status();
  std::optional<int64_t> hwm =
      StatusField(ReadAll(absl::StrCat("/proc/", pid, "/status")), "VmHWM:");
  if (!hwm.has_value()) {
    return absl::NotFoundError(absl::StrCat("no VmHWM in /proc/", pid, "/status"));
  }
  usage.cpu_s = stats->cpu_seconds;
  usage.rss_kib = stats->rss_kib;
  usage.threads = stats->threads;
  usage.hwm_kib = *hwm;
  return usage;
}

// An agent under measurement and its readings.
struct MeasuredAgent {
  std::string label;
  std::unique_ptr<Child> child;
  std::string address;
  std::vector<Usage> readings;
};

// The figures of one agent over the measured interval.
struct Figures {
  double elapsed_s = 0;
  double samples = 0;
  double cpu_s = 0;
  double cpu_ms_per_sample = 0;
  double cpu_percent = 0;
  double median_window_percent = 0;
  std::vector<double> window_percents;
  double hwm_mib = 0;
  double rss_start_mib = 0;
  double rss_end_mib = 0;
  int64_t threads = 0;
};

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

Figures Summarize(const std::vector<Usage>& readings, double telemetry_period_s) {
  Figures f;
  if (readings.size() < 2) return f;
  const Usage& first = readings.front();
  const Usage& last = readings.back();
  f.elapsed_s = absl::ToDoubleSeconds(last.at - first.at);
  f.samples = std::floor(f.elapsed_s / telemetry_period_s + 0.5);
  f.cpu_s = last.cpu_s - first.cpu_s;
  f.cpu_ms_per_sample = f.samples > 0 ? 1000 * f.cpu_s / f.samples : 0;
  f.cpu_percent = f.elapsed_s > 0 ? 100 * f.cpu_s / f.elapsed_s : 0;
  for (size_t i = 1; i < readings.size(); ++i) {
    const double wall = absl::ToDoubleSeconds(readings[i].at - readings[i - 1].at);
    if (wall > 0) {
      f.window_percents.push_back(100 * (readings[i].cpu_s - readings[i - 1].cpu_s) / wall);
    }
  }
  f.median_window_percent = Median(f.window_percents);
  for (const Usage& u : readings) f.hwm_mib = std::max(f.hwm_mib, u.hwm_kib / 1024.0);
  f.rss_start_mib = first.rss_kib / 1024.0;
  f.rss_end_mib = last.rss_kib / 1024.0;
  f.threads = last.threads;
  return f;
}

std::string Ratio(double measured, double baseline) {
  if (baseline <= 0) return "n/a";
  return absl::StrFormat("x%.2f", measured / baseline);
}

std::vector<std::pair<std::string, std::string>> ChildEnv() {
  std::vector<std::pair<std::string, std::string>> env;
  for (const char* name : {"PATH", "HOME"}) {
    if (const char* value = std::getenv(name)) env.emplace_back(name, value);
  }
  return env;
}

// Runs `joule-agent --probe` with `flags` and checks what it found; prints
// its output.
absl::Status Probe(const std::string& agent_binary, const std::string& label,
                   std::vector<std::string> flags,
                   const std::vector<std::pair<std::string, std::string>>& env,
                   const std::string& log_prefix, bool want_hardware) {
  flags.push_back("--probe");
  absl::StatusOr<std::unique_ptr<Child>> probe =
      Child::Start(label + " probe", agent_binary, flags, env, log_prefix);
  if (!probe.ok()) return probe.status();
  std::optional<ExitStatus> exit = (*probe)->Wait(absl::Seconds(30));
  const std::string out = (*probe)->out();
  std::cout << "--- joule-agent --probe (" << label << ") ---\n" << out;
  if (!exit.has_value() || exit->exit_code != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(label, " probe ",
                     exit.has_value() ? absl::StrCat("exited ", exit->exit_code)
                                      : std::string("did not finish"),
                     ": ", (*probe)->err()));
  }
  const ProbeReport report = ParseProbe(out);
  const std::string nvml = SourceState(report, "nvml");
  const std::string rapl = SourceState(report, "rapl");
  const std::string estimated = SourceState(report, "estimated");
  if (want_hardware) {
    if (nvml != "ok" || report.gpus != kGpus || rapl != "ok" ||
        report.cpu_packages != kRaplPackages || report.dram != kRaplPackages ||
        report.sample_errors != 0) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s probe: want nvml ok with %d GPUs and rapl ok with %d packages and %d "
          "DRAM, no sample errors; got nvml %s, %d GPUs, rapl %s, %d packages, %d "
          "DRAM, %d sample errors",
          label, kGpus, kRaplPackages, kRaplPackages, nvml, report.gpus, rapl,
          report.cpu_packages, report.dram, report.sample_errors));
    }
  } else if (nvml != "absent" || report.gpus != 0 || rapl != "absent" ||
             estimated != "ok") {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s probe: want nvml absent, no GPUs, rapl absent, estimated ok; got nvml "
        "%s, %d GPUs, rapl %s, estimated %s",
        label, nvml, report.gpus, rapl, estimated));
  }
  return absl::OkStatus();
}

void PrintTail(const std::string& what, const std::string& text) {
  const size_t keep = 2000;
  std::cerr << "--- " << what << " (last " << keep << " bytes) ---\n"
            << (text.size() > keep ? text.substr(text.size() - keep) : text) << "\n";
}

int Run(const BenchFlags& flags, const std::string& argv0) {
  absl::StatusOr<std::string> agent_binary = FindRunfile(argv0, "agent/joule-agent");
  absl::StatusOr<std::string> scheduler_binary =
      FindRunfile(argv0, "scheduler/joule-scheduler");
  absl::StatusOr<std::string> fake_nvml =
      FindRunfile(argv0, "tests/fakes/fake_nvml/libnvidia-ml.so.1");
  for (const auto* found : {&agent_binary, &scheduler_binary, &fake_nvml}) {
    if (!found->ok()) {
      std::cerr << "agent_overhead: " << found->status().message() << "\n";
      return 2;
    }
  }

  absl::StatusOr<std::unique_ptr<TempDir>> temp = TempDir::Create(flags.keep_dir);
  if (!temp.ok()) {
    std::cerr << "agent_overhead: " << temp.status().message() << "\n";
    return 2;
  }
  const std::string dir = (*temp)->path();
  const std::string nvml_state = dir + "/nvml_state";
  const std::string sys = dir + "/sys";
  const std::string sys_empty = dir + "/sys-baseline";
  CounterTicker ticker(nvml_state, sys, dir);
  absl::Status written = WriteRaplTree(sys);
  if (written.ok()) written = ticker.Write(0);
  if (written.ok()) written = WriteFiles(sys_empty, {});
  if (!written.ok()) {
    std::cerr << "agent_overhead: " << written.message() << "\n";
    return 2;
  }

  const std::string period = absl::StrCat("--telemetry-period=", flags.telemetry_period_s);
  std::vector<std::pair<std::string, std::string>> measured_env = ChildEnv();
  measured_env.emplace_back("FAKE_NVML_STATE", nvml_state);
  const std::vector<std::pair<std::string, std::string>> baseline_env = ChildEnv();
  auto measured_flags = [&](const std::string& scheduler) {
    return std::vector<std::string>{absl::StrCat("--scheduler=", scheduler),
                                    "--node-name=bench",
                                    "--listen=127.0.0.1:0", "--insecure",
                                    absl::StrCat("--work-dir=", dir, "/agent"),
                                    period,
                                    absl::StrCat("--sysfs-root=", sys),
                                    absl::StrCat("--nvml-library=", *fake_nvml)};
  };
  auto baseline_flags = [&](const std::string& scheduler) {
    return std::vector<std::string>{
        absl::StrCat("--scheduler=", scheduler),
        "--node-name=bench-baseline",
        "--listen=127.0.0.1:0", "--insecure",
        absl::StrCat("--work-dir=", dir, "/agent-baseline"),
        period,
        absl::StrCat("--sysfs-root=", sys_empty),
        absl::StrCat("--nvml-library=", dir, "/no-such-libnvidia-ml.so.1")};
  };

  // 2-3. The counters move from now on, so the probe's samples show it; then
  // what each agent will see.
  ticker.Start();
  // The probe only reads the hardware; it never contacts the scheduler.
  absl::Status probed = Probe(*agent_binary, "measured", measured_flags("127.0.0.1:1"),
                              measured_env, dir + "/probe", /*want_hardware=*/true);
  if (probed.ok()) {
    probed = Probe(*agent_binary, "baseline", baseline_flags("127.0.0.1:1"), baseline_env,
                   dir + "/probe-baseline", /*want_hardware=*/false);
  }
  if (!probed.ok()) {
    std::cerr << "agent_overhead: " << probed.message() << "\n";
    return 2;
  }

  // 3-4. Scheduler, agents (the counters already move).
  absl::StatusOr<std::unique_ptr<Child>> scheduler =
      Child::Start("joule-scheduler", *scheduler_binary,
                   {"--listen=127.0.0.1:0", "--insecure",
                    absl::StrCat("--data-dir=", dir, "/scheduler")},
                   ChildEnv(), dir + "/scheduler");
  if (!scheduler.ok()) {
    std::cerr << "agent_overhead: " << scheduler.status().message() << "\n";
    return 2;
  }
  const std::string scheduler_address = (*scheduler)->WaitForListening(absl::Seconds(30));
  if (scheduler_address.empty()) {
    std::cerr << "agent_overhead: the scheduler did not start\n";
    PrintTail("scheduler stderr", (*scheduler)->err());
    return 2;
  }

  std::vector<MeasuredAgent> agents(2);
  agents[0].label = "measured: 8 GPU + 2 RAPL";
  agents[1].label = "baseline: no GPU, estimate";
  const std::vector<std::string> args[] = {measured_flags(scheduler_address),
                                           baseline_flags(scheduler_address)};
  const std::vector<std::pair<std::string, std::string>>* envs[] = {&measured_env,
                                                                    &baseline_env};
  const char* logs[] = {"/agent", "/agent-baseline"};
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::unique_ptr<Child>> child =
        Child::Start(agents[i].label, *agent_binary, args[i], *envs[i], dir + logs[i]);
    if (!child.ok()) {
      std::cerr << "agent_overhead: " << child.status().message() << "\n";
      return 2;
    }
    agents[i].child = *std::move(child);
  }
  for (MeasuredAgent& agent : agents) {
    agent.address = agent.child->WaitForListening(absl::Seconds(30));
    if (agent.address.empty() ||
        !WaitFor([&] { return AgentLinkServing(agent.address); }, absl::Seconds(30))) {
      std::cerr << "agent_overhead: agent " << agent.label
                << " did not start or did not connect to the scheduler\n";
      PrintTail("agent stderr", agent.child->err());
      return 2;
    }
  }

  // 5. Warm-up, then readings at the start, every window and at the end.
  std::cout << absl::StrFormat(
      "\nagents up (pids %d, %d); warm-up %.0f s, then measuring %.0f s in %.0f s "
      "windows...\n",
      agents[0].child->pid(), agents[1].child->pid(), flags.warmup_s, flags.duration_s,
      flags.window_s);
  std::cout.flush();
  bool ok = SleepUntil(Now() + absl::Seconds(flags.warmup_s));
  const absl::Time start = Now();
  const absl::Time end = start + absl::Seconds(flags.duration_s);
  std::string failure;
  for (absl::Time next = start; ok;
       next = std::min(next + absl::Seconds(flags.window_s), end)) {
    ok = SleepUntil(next);
    if (!ok) break;
    for (MeasuredAgent& agent : agents) {
      absl::StatusOr<Usage> usage = ReadUsage(agent.child->pid());
      if (!usage.ok()) {
        failure = absl::StrCat(agent.label, ": ", usage.status().message());
        ok = false;
        break;
      }
      agent.readings.push_back(*usage);
    }
    if (next >= end) break;
  }
  if (g_interrupted.load()) failure = "interrupted";

  // 6. Still alive and connected?
  for (MeasuredAgent& agent : agents) {
    if (!failure.empty()) break;
    if (!agent.child->Running()) {
      failure = absl::StrCat("agent ", agent.label, " exited during the run");
      PrintTail("agent stderr", agent.child->err());
    } else if (!AgentLinkServing(agent.address)) {
      failure = absl::StrCat("agent ", agent.label, " lost its scheduler stream");
    }
  }
  ticker.Stop();
  for (MeasuredAgent& agent : agents) {
    std::optional<ExitStatus> exit = agent.child->Stop(absl::Seconds(15));
    if (failure.empty() && (!exit.has_value() || exit->exit_code != 0)) {
      failure = absl::StrCat("agent ", agent.label, " did not stop cleanly on SIGTERM");
      PrintTail("agent stderr", agent.child->err());
    }
  }
  (*scheduler)->Stop(absl::Seconds(15));
  if (!failure.empty()) {
    std::cerr << "agent_overhead: " << failure << "\n";
    return 2;
  }

  // The figures.
  const Figures measured = Summarize(agents[0].readings, flags.telemetry_period_s);
  const Figures baseline = Summarize(agents[1].readings, flags.telemetry_period_s);
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  std::cout << absl::StrFormat(
      "\njoule-agent overhead: telemetry every %.3g s for %.1f s after %.0f s warm-up, "
      "both agents concurrently\n"
      "CPU = utime+stime from /proc/PID/stat (resolution %.0f ms, i.e. %.2f %% of a core "
      "per %.0f s window); RSS from /proc/PID/status (VmHWM = peak)\n\n",
      flags.telemetry_period_s, measured.elapsed_s, flags.warmup_s,
      1000.0 / ticks_per_second, 100.0 / ticks_per_second / flags.window_s, flags.window_s);
  const char* kRow = "%-28s %8s %8s %10s %13s %13s %13s %16s %8s\n";
  std::cout << absl::StrFormat(kRow, "agent", "samples", "CPU s", "CPU ms/", "CPU % median",
                               "CPU % overall", "peak RSS MiB", "RSS MiB start", "threads");
  std::cout << absl::StrFormat(kRow, "", "(period)", "", "sample", "of windows", "",
                               "(VmHWM)", "-> end", "");
  for (const auto& [label, f] : {std::make_pair(agents[0].label, measured),
                                 std::make_pair(agents[1].label, baseline)}) {
    std::cout << absl::StrFormat(
        kRow, label, absl::StrFormat("%.0f", f.samples), absl::StrFormat("%.2f", f.cpu_s),
        absl::StrFormat("%.3f", f.cpu_ms_per_sample),
        absl::StrFormat("%.3f", f.median_window_percent),
        absl::StrFormat("%.3f", f.cpu_percent), absl::StrFormat("%.1f", f.hwm_mib),
        absl::StrFormat("%.1f -> %.1f", f.rss_start_mib, f.rss_end_mib),
        absl::StrCat(f.threads));
  }
  std::cout << absl::StrFormat(
      kRow, "measured / baseline", "", Ratio(measured.cpu_s, baseline.cpu_s),
      Ratio(measured.cpu_ms_per_sample, baseline.cpu_ms_per_sample),
      Ratio(measured.median_window_percent, baseline.median_window_percent),
      Ratio(measured.cpu_percent, baseline.cpu_percent),
      Ratio(measured.hwm_mib, baseline.hwm_mib), "", "");
  std::cout << absl::StrFormat(
      kRow, "measured - baseline", "",
      absl::StrFormat("%+.2f", measured.cpu_s - baseline.cpu_s),
      absl::StrFormat("%+.3f", measured.cpu_ms_per_sample - baseline.cpu_ms_per_sample),
      absl::StrFormat("%+.3f",
                      measured.median_window_percent - baseline.median_window_percent),
      absl::StrFormat("%+.3f", measured.cpu_percent - baseline.cpu_percent),
      absl::StrFormat("%+.1f", measured.hwm_mib - baseline.hwm_mib), "", "");
  for (const auto& [label, f] : {std::make_pair(agents[0].label, measured),
                                 std::make_pair(agents[1].label, baseline)}) {
    std::cout << absl::StrFormat("\nCPU %% per %.0f s window, %s:", flags.window_s, label);
    for (double percent : f.window_percents) std::cout << absl::StrFormat(" %.2f", percent);
  }
  std::cout << "\n";

  const bool cpu_ok = measured.cpu_percent <= flags.cpu_target_percent;
  const bool rss_ok = measured.hwm_mib <= flags.rss_target_mib;
  std::cout << absl::StrFormat(
      "\ntargets (measured agent):\n"
      "  CPU %% of one core (overall) <= %.2f: %.3f (median of windows %.3f)  %s\n"
      "  peak RSS (VmHWM) <= %.0f MiB:       %.1f MiB  %s\n",
      flags.cpu_target_percent, measured.cpu_percent, measured.median_window_percent,
      cpu_ok ? "PASS" : "FAIL", flags.rss_target_mib, measured.hwm_mib,
      rss_ok ? "PASS" : "FAIL");
  return cpu_ok && rss_ok ? 0 : 1;
}

}  // namespace
}  // namespace joule

int main(int argc, char** argv) {
  joule::BenchFlags flags;
  CLI::App app{
      "agent_overhead: CPU and memory of joule-agent sampling 8 fake GPUs and 2 RAPL "
      "packages, next to a minimal agent measured in the same run"};
  app.add_option("--duration-s", flags.duration_s, "Seconds measured after the warm-up")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--warmup-s", flags.warmup_s,
                 "Seconds after both agents connect before measuring")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--window-s", flags.window_s, "Seconds per CPU window (median reported)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 3600.0));
  app.add_option("--telemetry-period", flags.telemetry_period_s,
                 "Both agents' --telemetry-period, seconds")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 600.0));
  app.add_option("--cpu-target-percent", flags.cpu_target_percent,
                 "Target: CPU % of one core, at most")
      ->capture_default_str();
  app.add_option("--rss-target-mib", flags.rss_target_mib, "Target: peak RSS, MiB, at most")
      ->capture_default_str();
  app.add_flag("--keep-dir", flags.keep_dir,
               "Keep the temporary directory (state files, logs) and print its path");
  CLI11_PARSE(app, argc, argv);
  signal(SIGINT, joule::OnSignal);
  signal(SIGTERM, joule::OnSignal);
  return joule::Run(flags, argv[0]);
}
