// joule-scheduler: the central scheduler. Serves the client API and the agent
// stream on one address, keeps jobs in the embedded store under --data-dir.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/device_catalog.h"
#include "common/health_service.h"
#include "common/log.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/grpc_services.h"
#include "scheduler/scheduler.h"
#include "scheduler/store/local_store.h"

namespace joule {
namespace {

struct SchedulerFlags {
  std::string listen = "0.0.0.0:7070";
  std::string data_dir = "joule-data";
  double heartbeat_timeout_s = 10;
  double stop_grace_s = 10;
  int tick_ms = 100;
  bool profile_caps = true;
  std::string gpu_catalog;
  double profile_step_w = 25;
  double profile_warmup_s = 5;
  double profile_window_s = 10;
  bool verbose = false;
};

// Both sides of the loopback/any address: gRPC reports the bound port only.
std::string HostOf(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

int Run(const SchedulerFlags& flags) {
  if (flags.verbose) SetMinLogLevel(LogLevel::kDebug);
  // Signals are taken by a dedicated thread through sigwait, so block them
  // before any other thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(flags.data_dir);
  if (!store.ok()) {
    std::cerr << "joule-scheduler: cannot open the store in " << flags.data_dir
              << ": " << store.status() << "\n";
    return 1;
  }
  SchedulerOptions options;
  options.heartbeat_timeout = absl::Seconds(flags.heartbeat_timeout_s);
  options.stop_grace = absl::Seconds(flags.stop_grace_s);
  options.profile_caps = flags.profile_caps;
  if (!flags.gpu_catalog.empty()) {
    std::ifstream in(flags.gpu_catalog);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<std::vector<GpuModelSpec>> overrides = ParseGpuCatalog(text.str());
    if (!in || !overrides.ok()) {
      std::cerr << "joule-scheduler: --gpu-catalog " << flags.gpu_catalog << ": "
                << (in ? overrides.status().message() : "cannot read") << "\n";
      return 2;
    }
    options.gpu_catalog = MergeGpuCatalog(*overrides);
  }
  options.profiler.step_w = flags.profile_step_w;
  options.profiler.warmup = absl::Seconds(flags.profile_warmup_s);
  options.profiler.window = absl::Seconds(flags.profile_window_s);
  options.profiler.max_window = std::max(options.profiler.max_window,
                                         4 * options.profiler.window);
  if (absl::Status valid = ValidateProfilerOptions(options.profiler); !valid.ok()) {
    std::cerr << "joule-scheduler: profiling flags: " << valid.message() << "\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      Scheduler::Create(store->get(), RealClock::Get(), options);
  if (!scheduler.ok()) {
    std::cerr << "joule-scheduler: " << scheduler.status() << "\n";
    return 1;
  }

  SchedulerGrpcService client_service(scheduler->get());
  AgentGrpcService agent_service(scheduler->get());
  HealthService health;
  health.SetStatus("joule.v1.SchedulerService",
                   grpc::health::v1::HealthCheckResponse::SERVING);
  health.SetStatus("joule.v1.AgentService",
                   grpc::health::v1::HealthCheckResponse::SERVING);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(flags.listen, grpc::InsecureServerCredentials(), &port);
  // Large enough that oversized job specs reach validation and get a
  // field-level error instead of a transport error.
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterService(&client_service);
  builder.RegisterService(&agent_service);
  builder.RegisterService(&health);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "joule-scheduler: cannot listen on " << flags.listen << "\n";
    return 1;
  }
  std::cout << "listening on " << HostOf(flags.listen) << ":" << port << std::endl;

  std::atomic<bool> stop{false};
  std::thread loop([&] {
    while (!stop.load()) {
      (*scheduler)->Tick();
      absl::SleepFor(absl::Milliseconds(flags.tick_ms));
    }
  });

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  JLOG(INFO) << "signal " << signal_number << ": shutting down";
  stop = true;
  loop.join();
  server->Shutdown(absl::ToChronoTime(RealClock::Get()->Now() + absl::Seconds(2)));
  return 0;
}

}  // namespace
}  // namespace joule

int main(int argc, char** argv) {
  joule::SchedulerFlags flags;
  CLI::App app{"joule-scheduler: the Joule energy-aware job scheduler"};
  app.add_option("--listen", flags.listen,
                 "HOST:PORT for the client API and agent streams (port 0 picks "
                 "a free port; the address is printed as 'listening on ...')")
      ->capture_default_str();
  app.add_option("--data-dir", flags.data_dir,
                 "Directory of the embedded crash-safe store")
      ->capture_default_str();
  app.add_option("--heartbeat-timeout", flags.heartbeat_timeout_s,
                 "Seconds of agent silence before its node is marked down and "
                 "its tasks lost")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--stop-grace", flags.stop_grace_s,
                 "Seconds between SIGTERM and SIGKILL when stopping a task")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--tick-ms", flags.tick_ms, "Scheduling loop period")
      ->capture_default_str()
      ->check(CLI::Range(1, 60000));
  app.add_option("--gpu-catalog", flags.gpu_catalog,
                 "CSV of GPU models overriding or extending the built-in catalog "
                 "(model,memory_gib,limit_min_w,limit_default_w,limit_max_w,idle_w,"
                 "sm_clock_min_mhz,sm_clock_max_mhz,mem_clock_mhz,throttle_temp_c)");
  app.add_option("--profile-caps", flags.profile_caps,
                 "Profile power caps just in time for job classes not yet profiled "
                 "on a GPU model (false: every task at its GPUs' default limit)")
      ->capture_default_str();
  app.add_option("--profile-step-w", flags.profile_step_w,
                 "Cap step while profiling, W")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1000.0));
  app.add_option("--profile-warmup", flags.profile_warmup_s,
                 "Seconds discarded after each cap change while profiling")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--profile-window", flags.profile_window_s,
                 "Seconds measured at each cap while profiling")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_flag("-v,--verbose", flags.verbose, "Debug logging");
  CLI11_PARSE(app, argc, argv);
  return joule::Run(flags);
}
