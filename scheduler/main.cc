// joule-scheduler: the central scheduler. Serves the client API and the agent
// stream on one address. Keeps its state in the embedded store under
// --data-dir, or in etcd (--store=etcd://...), where several replicas elect
// one leader and the others stand by.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/etcd/etcd_client.h"
#include "common/device_catalog.h"
#include "common/health_service.h"
#include "common/leader_redirect.h"
#include "common/log.h"
#include "common/periodic_timer.h"
#include "common/metrics_http.h"
#include "common/server_options.h"
#include "common/tls_credentials.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/auth/authenticator.h"
#include "scheduler/auth/token_file.h"
#include "scheduler/carbon.h"
#include "scheduler/grpc_services.h"
#include "scheduler/metrics.h"
#include "scheduler/power/program_power_control.h"
#include "scheduler/placement/profile.h"
#include "scheduler/scheduler.h"
#include "scheduler/replica.h"
#include "scheduler/store/etcd_store.h"
#include "scheduler/store/local_store.h"
#include "scheduler/store/local_store_repair.h"

namespace joule {
namespace {

struct SchedulerFlags {
  std::string listen = "0.0.0.0:7070";
  std::string data_dir = "joule-data";
  double heartbeat_timeout_s = 10;
  double starvation_guard_s = 3600;
  double stop_grace_s = 10;
  int tick_ms = 100;
  bool profile_caps = true;
  std::string gpu_catalog;
  double profile_step_w = 25;
  double profile_warmup_s = 5;
  double profile_window_s = 10;
  bool verbose = false;
  std::string store = "local";
  std::string etcd_ca;
  std::string etcd_cert;
  std::string etcd_key;
  std::string etcd_user;
  std::string etcd_password_file;
  std::string advertise;
  double leader_lease_s = 5;
  std::string carbon_config;
  std::string placement_config;
  std::string metrics_listen;
  std::string metrics_auth_file;
  double metrics_job_retention_s = 3600;
  // Security (README, "Security").
  bool insecure = false;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  std::string tokens_file;
  std::string trust_domain = "joule";
  double register_timeout_s = 5;
  bool repair_store = false;
  bool check_config = false;
  // Empty: no plaintext health port.
  std::string health_listen;
  // Idle power management (README, "Idle power").
  std::string suspend_program;
  std::string resume_program;
  double suspend_after_s = 0;
  double resume_timeout_s = 600;
  int keep_idle_gpus = 0;
};

// How the scheduler proves itself and checks its callers, from the flags.
struct Security {
  bool insecure = false;
  TlsFiles tls;
  std::unique_ptr<TokenFile> tokens;
  std::string trust_domain;
};

// Checks the security flags and loads the token file; an error names the
// flag. TLS is the default: plaintext needs --insecure and a loopback
// --listen.
absl::StatusOr<Security> LoadSecurity(const SchedulerFlags& flags) {
  Security security;
  security.insecure = flags.insecure;
  security.trust_domain = flags.trust_domain;
  if (flags.insecure) {
    if (!flags.tls_cert.empty() || !flags.tls_key.empty() || !flags.tls_ca.empty() ||
        !flags.tokens_file.empty()) {
      return absl::InvalidArgumentError(
          "--insecure turns TLS and tokens off: drop it, or drop --tls-* and --tokens-file");
    }
    if (absl::Status loopback = RequireLoopbackServers(flags.listen, flags.metrics_listen);
        !loopback.ok()) {
      return loopback;
    }
    JLOG(WARNING) << "--insecure: plaintext on loopback; every client is the admin \"local\" "
                     "and any agent may speak for any node";
    return security;
  }
  if (flags.tls_cert.empty() || flags.tls_key.empty() || flags.tls_ca.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs --tls-cert, --tls-key (the scheduler's certificate) and --tls-ca (the CA "
        "of agents' and users' certificates); for plaintext on one machine, use --insecure "
        "with a loopback --listen");
  }
  security.tls.cert_file = flags.tls_cert;
  security.tls.key_file = flags.tls_key;
  security.tls.ca_file = flags.tls_ca;
  if (absl::Status files = CheckTlsFiles(security.tls, "--tls", true); !files.ok()) {
    return files;
  }
  if (!flags.tokens_file.empty()) {
    absl::StatusOr<std::unique_ptr<TokenFile>> tokens =
        TokenFile::Load(flags.tokens_file, RealClock::Get());
    if (!tokens.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--tokens-file: ", tokens.status().message()));
    }
    security.tokens = *std::move(tokens);
  }
  return security;
}

// Both sides of the loopback/any address: gRPC reports the bound port only.
std::string HostOf(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

// The scheduler options from the flags; an error names the bad flag.
absl::StatusOr<SchedulerOptions> MakeOptions(const SchedulerFlags& flags) {
  SchedulerOptions options;
  options.heartbeat_timeout = absl::Seconds(flags.heartbeat_timeout_s);
  options.starvation_guard = absl::Seconds(flags.starvation_guard_s);
  options.stop_grace = absl::Seconds(flags.stop_grace_s);
  options.profile_caps = flags.profile_caps;
  if (!flags.gpu_catalog.empty()) {
    absl::StatusOr<std::vector<GpuModelSpec>> catalog = LoadGpuCatalogFile(flags.gpu_catalog);
    if (!catalog.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gpu-catalog ", catalog.status().message()));
    }
    options.gpu_catalog = *std::move(catalog);
  }
  if (flags.suspend_after_s > 0) {
    for (const auto& [flag, program] : {std::pair<const char*, const std::string&>(
                                            "--suspend-program", flags.suspend_program),
                                        {"--resume-program", flags.resume_program}}) {
      if (program.empty() || program[0] != '/' || access(program.c_str(), X_OK) != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--suspend-after needs ", flag, " to be an executable file by absolute path, got \"",
            program, "\""));
      }
    }
    options.node_power.suspend_after = absl::Seconds(flags.suspend_after_s);
    options.node_power.resume_timeout = absl::Seconds(flags.resume_timeout_s);
    options.node_power.keep_idle_gpus = flags.keep_idle_gpus;
  }
  options.profiler.step_w = flags.profile_step_w;
  options.profiler.warmup = absl::Seconds(flags.profile_warmup_s);
  options.profiler.window = absl::Seconds(flags.profile_window_s);
  options.profiler.max_window = std::max(options.profiler.max_window,
                                         4 * options.profiler.window);
  if (absl::Status valid = ValidateProfilerOptions(options.profiler); !valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("profiling flags: ", valid.message()));
  }
  if (flags.carbon_config.empty()) {
    JLOG(INFO) << "carbon intensity and electricity price not configured "
                  "(no --carbon-config): jobs' gCO2e and cost are reported as 0";
  } else {
    absl::StatusOr<CarbonConfig> carbon = CarbonConfig::Load(flags.carbon_config);
    if (!carbon.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--carbon-config ", flags.carbon_config, ": ", carbon.status().message()));
    }
    options.carbon = *std::move(carbon);
    const std::vector<std::string> regions = options.carbon.Regions();
    JLOG(INFO) << "carbon config " << flags.carbon_config << ": prices in "
               << options.carbon.currency() << "; regions "
               << (regions.empty() ? std::string("(none: the default everywhere)")
                                   : absl::StrJoin(regions, ", "));
  }
  if (!flags.placement_config.empty()) {
    absl::StatusOr<PlacementConfig> placement = PlacementConfig::Load(flags.placement_config);
    if (!placement.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--placement-config ", flags.placement_config,
                                                     ": ", placement.status().message()));
    }
    options.placement_config = *placement;
    std::vector<std::string> names;
    for (const PlacementProfile& profile : placement->profiles) names.push_back(profile.name);
    JLOG(INFO) << "placement config " << flags.placement_config << ": profiles "
               << absl::StrJoin(names, ", ") << "; default " << placement->default_profile;
  }
  return options;
}

void SetServingOn(HealthService& health, bool serving) {
  const auto status = serving ? grpc::health::v1::HealthCheckResponse::SERVING
                              : grpc::health::v1::HealthCheckResponse::NOT_SERVING;
  health.SetStatus("joule.v1.SchedulerService", status);
  health.SetStatus("joule.v1.AgentService", status);
}

// The gRPC face of one replica: the client API, the agent streams and the
// health service on one address, answering for `serving`'s scheduler.
struct Frontend {
  Frontend(AuthOptions auth_options, absl::Duration register_timeout)
      : auth(std::move(auth_options)), agent_service(&serving, &auth, register_timeout) {}

  ServingState serving;
  Authenticator auth;
  SchedulerGrpcService client_service{&serving, &auth};
  AgentGrpcService agent_service;
  HealthService health;
  std::unique_ptr<grpc::Server> server;
  // "host:port" with the port actually bound.
  std::string bound;
  // --health-listen: the health service alone, in plaintext, for probes
  // that cannot speak TLS (the kubelet's gRPC probe). It answers the same
  // statuses as `health`.
  HealthService plain_health;
  std::unique_ptr<grpc::Server> health_server;
};

// Whether this replica serves the API (leads), on every health service.
void SetServing(Frontend& frontend, bool serving) {
  SetServingOn(frontend.health, serving);
  SetServingOn(frontend.plain_health, serving);
}

// Starts the frontend on `listen`, serving `scheduler` (nullptr: a standby
// that refuses every call until it leads) and printing "listening on
// HOST:PORT". nullptr when the address cannot be bound.
std::unique_ptr<Frontend> StartFrontend(const SchedulerFlags& flags,
                                        const Security& security, Scheduler* scheduler) {
  const std::string& listen = flags.listen;
  AuthOptions auth;
  auth.insecure = security.insecure;
  auth.trust_domain = security.trust_domain;
  auth.tokens = security.tokens.get();
  auto frontend = std::make_unique<Frontend>(std::move(auth),
                                             absl::Seconds(flags.register_timeout_s));
  frontend->serving.Lead(scheduler);
  SetServing(*frontend, scheduler != nullptr);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen,
                           security.insecure ? grpc::InsecureServerCredentials()
                                             : MakeServerTlsCredentials(security.tls),
                           &port);
  ApplyServerLimits(&builder, kMaxServerReceiveBytes);
  builder.RegisterService(&frontend->client_service);
  builder.RegisterService(&frontend->agent_service);
  builder.RegisterService(&frontend->health);
  frontend->server = builder.BuildAndStart();
  if (frontend->server == nullptr || port == 0) {
    std::cerr << "joule-scheduler: cannot listen on " << listen << "\n";
    return nullptr;
  }
  frontend->bound = absl::StrCat(HostOf(listen), ":", port);
  std::cout << "listening on " << frontend->bound << std::endl;
  if (!flags.health_listen.empty()) {
    grpc::ServerBuilder health_builder;
    int health_port = 0;
    // Plaintext, health only: nothing on it needs authentication.
    health_builder.AddListeningPort(flags.health_listen, grpc::InsecureServerCredentials(),
                                    &health_port);
    ApplyServerLimits(&health_builder, 64 << 10);
    health_builder.RegisterService(&frontend->plain_health);
    frontend->health_server = health_builder.BuildAndStart();
    if (frontend->health_server == nullptr || health_port == 0) {
      std::cerr << "joule-scheduler: cannot listen on --health-listen " << flags.health_listen
                << "\n";
      return nullptr;
    }
    std::cout << "health on " << HostOf(flags.health_listen) << ":" << health_port << std::endl;
  }
  return frontend;
}

// Runs Tick() every tick_ms and copies the scheduler's state into
// `metrics` (when serving them) once a second, on timers of the real clock,
// until the returned timers are destroyed.
std::vector<std::unique_ptr<PeriodicTimer>> StartTicking(Scheduler* scheduler, int tick_ms,
                                                         SchedulerMetrics* metrics) {
  std::vector<std::unique_ptr<PeriodicTimer>> timers;
  timers.push_back(std::make_unique<PeriodicTimer>(
      RealClock::Get(), absl::Milliseconds(tick_ms), [scheduler] { scheduler->Tick(); }));
  if (metrics != nullptr) {
    timers.push_back(std::make_unique<PeriodicTimer>(
        RealClock::Get(), absl::Seconds(1),
        [scheduler, metrics] { metrics->Refresh(*scheduler); }));
  }
  return timers;
}

// Blocks until SIGINT or SIGTERM (blocked in every thread, see Run).
int WaitForSignal(const sigset_t& signals) {
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  JLOG(INFO) << "signal " << signal_number << ": shutting down";
  return signal_number;
}

// One machine, the embedded store: this process is the scheduler.
int RunLocal(const SchedulerFlags& flags, const Security& security,
             const SchedulerOptions& options, const sigset_t& signals,
             SchedulerMetrics* metrics) {
  absl::StatusOr<std::unique_ptr<LocalStore>> store = LocalStore::Open(flags.data_dir);
  if (!store.ok()) {
    std::cerr << "joule-scheduler: cannot open the store in " << flags.data_dir
              << ": " << store.status() << "\n";
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      Scheduler::Create(store->get(), RealClock::Get(), options);
  if (!scheduler.ok()) {
    std::cerr << "joule-scheduler: " << scheduler.status() << "\n";
    return 1;
  }
  std::unique_ptr<Frontend> frontend = StartFrontend(flags, security, scheduler->get());
  if (frontend == nullptr) return 1;
  // The embedded store has one scheduler: it always leads.
  if (metrics != nullptr) metrics->SetLeader(true);
  std::vector<std::unique_ptr<PeriodicTimer>> ticking =
      StartTicking(scheduler->get(), flags.tick_ms, metrics);
  WaitForSignal(signals);
  ticking.clear();
  frontend->server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  return 0;
}

// The address other replicas send clients to: --advertise, else the bound
// address with a wildcard host replaced by this host's name.
std::string AdvertiseAddress(const SchedulerFlags& flags, const std::string& bound) {
  if (!flags.advertise.empty()) return flags.advertise;
  const std::string host = HostOf(bound);
  if (host != "0.0.0.0" && host != "[::]" && host != "::" && !host.empty()) {
    return bound;
  }
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return absl::StrCat(name, bound.substr(bound.rfind(':')));
}

absl::StatusOr<etcd::EtcdOptions> EtcdOptionsFromFlags(const SchedulerFlags& flags,
                                                       const etcd::EtcdUrl& url) {
  etcd::EtcdOptions options;
  options.endpoints = url.endpoints;
  options.tls = url.tls;
  options.ca_file = flags.etcd_ca;
  options.cert_file = flags.etcd_cert;
  options.key_file = flags.etcd_key;
  options.username = flags.etcd_user;
  if (!flags.etcd_user.empty()) {
    if (!flags.etcd_password_file.empty()) {
      std::ifstream in(flags.etcd_password_file);
      if (!in) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--etcd-password-file ", flags.etcd_password_file, ": cannot read"));
      }
      std::getline(in, options.password);
    } else if (const char* password = std::getenv("JOULE_ETCD_PASSWORD")) {
      options.password = password;
    } else {
      return absl::InvalidArgumentError(
          "--etcd-user needs a password: --etcd-password-file or "
          "JOULE_ETCD_PASSWORD");
    }
  }
  return options;
}

// Several replicas on etcd: this process is a hot standby (its StateMirror
// follows the state) until it wins the election, then the leader, with every
// write fenced on its leader key. A leader that loses its lease or finds a
// write fenced restarts its process and comes back as a standby.
int RunReplica(const SchedulerFlags& flags, const Security& security,
               const SchedulerOptions& options, const sigset_t& signals,
               const std::vector<std::string>& argv, SchedulerMetrics* metrics) {
  absl::StatusOr<etcd::EtcdUrl> url = etcd::ParseEtcdUrl(flags.store);
  if (!url.ok()) {
    std::cerr << "joule-scheduler: --store: " << url.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<etcd::EtcdOptions> etcd_options = EtcdOptionsFromFlags(flags, *url);
  if (!etcd_options.ok()) {
    std::cerr << "joule-scheduler: " << etcd_options.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<etcd::EtcdClient>> client =
      etcd::EtcdClient::Connect(*etcd_options);
  if (!client.ok()) {
    std::cerr << "joule-scheduler: cannot connect to etcd: " << client.status() << "\n";
    return 1;
  }
  EtcdStore store(client->get(), url->prefix);
  const std::string election = absl::StrCat(url->prefix, "leader");
  // Each group commit is one etcd transaction: within etcd's default
  // --max-txn-ops (128) and --max-request-bytes (1.5 MiB; 1 MiB of keys and
  // values leaves room for the key prefix and the request's framing). A
  // single larger write still goes alone, as before.
  SchedulerOptions leader_options = options;
  leader_options.store_writes.max_batch_mutations = 128;
  leader_options.store_writes.max_batch_bytes = 1 << 20;

  // Standing by until elected: joule_leader 0, and no scheduler to show.
  if (metrics != nullptr) metrics->SetLeader(false);
  std::unique_ptr<Frontend> frontend = StartFrontend(flags, security, nullptr);
  if (frontend == nullptr) return 1;
  ServingState& serving = frontend->serving;
  const std::string bound = frontend->bound;
  const std::string advertise = AdvertiseAddress(flags, bound);

  // Losing the lease or a fenced write: everything this process believes may
  // be stale, so it starts over as a standby.
  auto deposed = [&argv, bound](const absl::Status& why) {
    JLOG(WARNING) << "no longer the leader (" << why.message()
                  << "); restarting as a standby";
    absl::Status restarted = RestartSelf(argv, bound);
    JLOG(ERROR) << restarted;
    std::_Exit(3);
  };

  const int64_t ttl_s = static_cast<int64_t>(std::ceil(flags.leader_lease_s));
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease = absl::UnavailableError("");
  for (int attempt = 0; attempt < 30; ++attempt) {
    lease = (*client)->LeaseGrant(ttl_s);
    if (lease.ok()) break;
    JLOG(WARNING) << "cannot get a lease from etcd: " << lease.status() << "; retrying";
    absl::SleepFor(absl::Seconds(1));
  }
  if (!lease.ok()) {
    std::cerr << "joule-scheduler: cannot get a lease from etcd: " << lease.status() << "\n";
    return 1;
  }
  etcd::LeaseKeeper keeper(client->get(), RealClock::Get(), lease->id(), ttl_s, deposed);
  StateMirror mirror(client->get(), url->prefix);

  std::atomic<bool> stop{false};
  absl::Notification stopping;  // notified with `stop`
  std::atomic<bool> leading{false};
  std::unique_ptr<Scheduler> scheduler;
  // While standing by: the leader's address for redirects, from etcd's
  // Observe stream (it ends at this replica's own Proclaim once it leads).
  std::thread leader_watch([&] {
    while (!stop.load() && !leading.load()) {
      absl::StatusOr<v3electionpb::LeaderResponse> now = (*client)->Leader(election);
      if (!leading.load()) serving.set_leader_address(now.ok() ? now->kv().value() : "");
      absl::Status observed = (*client)->Observe(
          election, absl::Minutes(10), [&](const v3electionpb::LeaderResponse& leader) {
            if (leading.load() || stop.load()) return false;
            serving.set_leader_address(leader.kv().value());
            return true;
          });
      if (!observed.ok() && !stop.load()) absl::SleepFor(absl::Milliseconds(500));
    }
  });
  std::thread replica([&] {
    // One long campaign: every withdrawn candidacy would be two more
    // revisions in etcd's history.
    absl::StatusOr<v3electionpb::CampaignResponse> won =
        absl::UnavailableError("not campaigned yet");
    while (!stop.load()) {
      won = (*client)->Campaign(election, lease->id(), advertise, absl::Hours(1));
      if (won.ok() || stop.load()) break;
      if (won.status().code() != absl::StatusCode::kDeadlineExceeded) {
        JLOG(WARNING) << "campaign: " << won.status();
        absl::SleepFor(absl::Milliseconds(500));
      }
    }
    if (stop.load() || !won.ok()) return;
    const absl::Time elected = absl::Now();
    const v3electionpb::LeaderKey& key = won->leader();
    store.SetFence(key.key(), key.rev(), deposed);
    // Earlier leaders wrote nothing after their keys went, which was before
    // this one won; a Proclaim now is a change after all of theirs. Once the
    // mirror has applied it, it holds everything they wrote.
    int64_t caught_up_at = won->header().revision();
    if (absl::Status proclaimed = (*client)->Proclaim(key, advertise); !proclaimed.ok()) {
      JLOG(WARNING) << "proclaim: " << proclaimed;
      caught_up_at = std::numeric_limits<int64_t>::max();
    } else {
      absl::StatusOr<v3electionpb::LeaderResponse> leader = (*client)->Leader(election);
      if (leader.ok()) caught_up_at = leader->kv().mod_revision();
    }
    std::unique_ptr<MemoryStore> snapshot;
    int64_t mirror_revision = 0;
    if (mirror.WaitForRevision(caught_up_at, absl::Seconds(3))) {
      snapshot = mirror.Snapshot(&mirror_revision);
    } else {
      JLOG(WARNING) << "the state watch is behind; loading the state from etcd";
    }
    absl::StatusOr<std::unique_ptr<Scheduler>> created =
        Scheduler::Create(&store, RealClock::Get(), leader_options, snapshot.get());
    if (!created.ok()) {
      (void)(*client)->LeaseRevoke(lease->id());
      deposed(created.status());
    }
    scheduler = *std::move(created);
    leading = true;
    if (metrics != nullptr) metrics->SetLeader(true);
    serving.set_leader_address(advertise);
    serving.Lead(scheduler.get());
    SetServing(*frontend, true);
    JLOG(INFO) << "leading as " << advertise << " (leader key rev " << key.rev()
               << "); state loaded "
               << (snapshot ? absl::StrCat("from the watch at revision ", mirror_revision)
                            : std::string("from etcd"))
               << " in " << absl::ToDoubleMilliseconds(absl::Now() - elected) << " ms";
    std::vector<std::unique_ptr<PeriodicTimer>> ticking =
        StartTicking(scheduler.get(), flags.tick_ms, metrics);
    stopping.WaitForNotification();
  });

  WaitForSignal(signals);
  stop = true;
  stopping.Notify();
  (*client)->CancelCampaigns();
  replica.join();
  leader_watch.join();
  SetServing(*frontend, false);
  // Hand over at once instead of after the lease's TTL.
  if (leading.load()) (void)(*client)->LeaseRevoke(lease->id());
  frontend->server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  return 0;
}

// --repair-store: cuts the embedded store's log at its first bad record,
// keeping a copy of the damaged file, prints what it did and exits.
// --check-config: every problem of the flags and of the files they name
// (certificates, tokens, GPU catalog, carbon and placement configs, metrics
// users, etcd credentials), found without binding a port, opening the store or reaching
// etcd. Empty when the configuration is sound.
std::vector<std::string> CheckConfig(const SchedulerFlags& flags) {
  std::vector<std::string> problems;
  auto note = [&problems](const absl::Status& status) {
    if (!status.ok()) problems.emplace_back(status.message());
  };
  note(CheckListenAddress(flags.listen, "--listen"));
  note(LoadSecurity(flags).status());
  note(MakeOptions(flags).status());
  if (flags.store != "local") {
    absl::StatusOr<etcd::EtcdUrl> url = etcd::ParseEtcdUrl(flags.store);
    if (!url.ok()) {
      problems.push_back(absl::StrCat("--store: ", url.status().message()));
    } else {
      note(EtcdOptionsFromFlags(flags, *url).status());
      if (url->tls) {
        TlsFiles etcd_tls;
        etcd_tls.ca_file = flags.etcd_ca;
        etcd_tls.cert_file = flags.etcd_cert;
        etcd_tls.key_file = flags.etcd_key;
        note(CheckTlsFiles(etcd_tls, "--etcd", /*need_identity=*/false));
      } else if (!flags.etcd_ca.empty() || !flags.etcd_cert.empty() || !flags.etcd_key.empty()) {
        problems.push_back("--etcd-ca/--etcd-cert/--etcd-key are for TLS: use an etcds:// --store");
      }
    }
  }
  if (!flags.advertise.empty()) note(CheckListenAddress(flags.advertise, "--advertise"));
  if (!flags.health_listen.empty()) {
    note(CheckListenAddress(flags.health_listen, "--health-listen"));
  }
  if (!flags.metrics_listen.empty()) {
    MetricsServerOptions metrics;
    metrics.auth_file = flags.metrics_auth_file;
    note(CheckMetricsServer(flags.metrics_listen, metrics));
  }
  return problems;
}

int RepairStore(const SchedulerFlags& flags) {
  if (flags.store != "local") {
    std::cerr << "joule-scheduler: --repair-store is for the embedded store (--store=local); "
                 "etcd keeps its own checksums\n";
    return 2;
  }
  absl::StatusOr<RepairReport> report = RepairLocalStore(flags.data_dir);
  if (!report.ok()) {
    std::cerr << "joule-scheduler: cannot repair the store in " << flags.data_dir << ": "
              << report.status() << "\n";
    return 1;
  }
  std::cout << FormatRepairReport(*report) << std::endl;
  return 0;
}

int Run(const SchedulerFlags& flags, const std::vector<std::string>& argv) {
  if (flags.verbose) SetMinLogLevel(LogLevel::kDebug);
  if (flags.repair_store) return RepairStore(flags);
  if (flags.check_config) return ReportConfigCheck("joule-scheduler", CheckConfig(flags), std::cout, std::cerr);
  // Signals are taken by sigwait, so block them before any other thread
  // starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<Security> security = LoadSecurity(flags);
  if (!security.ok()) {
    std::cerr << "joule-scheduler: " << security.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<SchedulerOptions> options = MakeOptions(flags);
  if (!options.ok()) {
    std::cerr << "joule-scheduler: " << options.status().message() << "\n";
    return 2;
  }
  // Runs the suspend and resume programs; outlives every scheduler below.
  std::unique_ptr<ProgramPowerControl> power_control;
  if (options->node_power.suspend_after > absl::ZeroDuration()) {
    ProgramPowerControl::Options power;
    power.suspend_program = flags.suspend_program;
    power.resume_program = flags.resume_program;
    power_control = std::make_unique<ProgramPowerControl>(power);
    options->power_control = power_control.get();
    JLOG(INFO) << "idle power management: nodes idle for "
               << absl::FormatDuration(options->node_power.suspend_after) << " are suspended by "
               << flags.suspend_program << " and resumed by " << flags.resume_program;
  }
  // Prometheus metrics, from before the election on (a standby says it is
  // not the leader). Declared before the exposer, which must go first.
  std::unique_ptr<SchedulerMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  if (!flags.metrics_listen.empty()) {
    metrics = std::make_unique<SchedulerMetrics>(absl::Seconds(flags.metrics_job_retention_s));
    MetricsServerOptions metrics_options;
    metrics_options.auth_file = flags.metrics_auth_file;
    absl::StatusOr<std::unique_ptr<prometheus::Exposer>> started = StartMetricsServer(
        flags.metrics_listen, metrics->registry(), nullptr, metrics_options);
    if (!started.ok()) {
      std::cerr << "joule-scheduler: " << started.status().message() << "\n";
      // A malformed address is a flag error; one that cannot be bound is
      // like --listen's.
      return absl::IsInvalidArgument(started.status()) ? 2 : 1;
    }
    exposer = *std::move(started);
    options->observer = metrics.get();
  }
  if (flags.store == "local") {
    return RunLocal(flags, *security, *options, signals, metrics.get());
  }
  return RunReplica(flags, *security, *options, signals, argv, metrics.get());
}

}  // namespace
}  // namespace joule

int main(int argc, char** argv) {
  // Debian's Abseil is built with the debug default of checking every mutex
  // acquisition for lock-order cycles, which keeps a global graph of locks
  // (8 % of the scheduler's CPU at 20,000 telemetry reports a second). The
  // unit tests of the core keep the check; the server does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  joule::SchedulerFlags flags;
  CLI::App app{"joule-scheduler: the Joule energy-aware job scheduler"};
  app.add_option("--listen", flags.listen,
                 "HOST:PORT for the client API and agent streams (port 0 picks "
                 "a free port; the address is printed as 'listening on ...')")
      ->capture_default_str();
  app.add_option("--data-dir", flags.data_dir,
                 "Directory of the embedded crash-safe store")
      ->capture_default_str();
  app.add_option("--starvation-guard", flags.starvation_guard_s,
                 "Seconds a pending job that would fit once the running tasks end may find "
                 "no room before the jobs submitted after it wait for it (0: off)")
      ->check(CLI::NonNegativeNumber);
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
  app.add_option("--store", flags.store,
                 "Where state lives: 'local' (the embedded store in --data-dir) or "
                 "etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (etcds:// for TLS); "
                 "with etcd, several schedulers elect one leader and the others "
                 "stand by")
      ->capture_default_str();
  app.add_option("--etcd-ca", flags.etcd_ca, "PEM CA that signed etcd's certificate");
  app.add_option("--etcd-cert", flags.etcd_cert, "PEM client certificate for etcd");
  app.add_option("--etcd-key", flags.etcd_key, "PEM key of --etcd-cert");
  app.add_option("--etcd-user", flags.etcd_user,
                 "etcd user (password from --etcd-password-file or "
                 "JOULE_ETCD_PASSWORD)");
  app.add_option("--etcd-password-file", flags.etcd_password_file,
                 "File whose first line is the etcd password");
  app.add_option("--advertise", flags.advertise,
                 "HOST:PORT that clients and agents use to reach this replica "
                 "(default: the bound --listen address)");
  app.add_option("--placement-config", flags.placement_config,
                 "YAML file of placement profiles (filters, weighted scorers, "
                 "percentage_of_nodes_to_score); its default_profile places jobs. "
                 "Default: the built-in energy profile (see README, Placement)");
  app.add_option("--carbon-config", flags.carbon_config,
                 "YAML file of carbon intensity (gCO2e/kWh, constant or a CSV time "
                 "series) and electricity price per region (node label "
                 "joule.dev/region); without it, jobs' emissions and cost are not "
                 "configured (reported as 0)");
  app.add_option("--health-listen", flags.health_listen,
                 "HOST:PORT of a plaintext port serving only the gRPC health service (for "
                 "Kubernetes gRPC probes; the API port is TLS); empty: none");
  app.add_option("--metrics-listen", flags.metrics_listen,
                 "HOST:PORT to serve Prometheus metrics at /metrics (port 0 picks "
                 "one; the address is printed as 'metrics on ...'); empty: off");
  app.add_option("--metrics-auth-file", flags.metrics_auth_file,
                 "Require HTTP basic auth on /metrics: lines 'USER sha256:HEX' (HEX: "
                 "sha256sum of the password), re-read when the file changes");
  app.add_option("--metrics-job-retention", flags.metrics_job_retention_s,
                 "Seconds a finished job keeps its per-job metric series")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 30.0 * 24 * 3600));
  app.add_option("--leader-lease", flags.leader_lease_s,
                 "Seconds of the leader's etcd lease: a standby takes over this "
                 "long after the leader dies")
      ->capture_default_str()
      ->check(CLI::Range(2.0, 60.0));
  app.add_flag("--repair-store", flags.repair_store,
               "Repair the embedded store in --data-dir after it refused to start: keep a "
               "copy of the damaged log, cut it at the first bad record, say how many "
               "records were dropped, and exit");
  app.add_flag("--check-config", flags.check_config,
               "Check the flags and every file they name (certificates, tokens, catalogs, "
               "carbon and placement configs, metrics users, etcd credentials), print every "
               "problem, and exit (0: sound, 2: not) without starting");
  app.add_flag("--insecure", flags.insecure,
               "Plaintext without authentication, for one machine: --listen must be a "
               "loopback address; every client is the admin \"local\"");
  app.add_option("--tls-cert", flags.tls_cert,
                 "PEM certificate chain the scheduler serves (re-read when the file changes)");
  app.add_option("--tls-key", flags.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", flags.tls_ca,
                 "PEM CA bundle that verifies agents' and users' client certificates");
  app.add_option("--tokens-file", flags.tokens_file,
                 "File of hashed bearer tokens and certificate roles (see README, "
                 "\"Security\"; re-read when it changes)");
  app.add_option("--trust-domain", flags.trust_domain,
                 "SPIFFE trust domain of certificates: spiffe://DOMAIN/node/NAME for "
                 "agents, spiffe://DOMAIN/user/NAME for users")
      ->capture_default_str();
  app.add_option("--agent-register-timeout", flags.register_timeout_s,
                 "Seconds an agent stream may stay open without registering")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--suspend-after", flags.suspend_after_s,
                 "Seconds a node may sit idle before --suspend-program suspends it (Slurm's "
                 "SuspendTime); 0: never")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--suspend-program", flags.suspend_program,
                 "Executable run as PROGRAM NODE to suspend an idle node (IPMI, Redfish, a "
                 "cloud API; deploy/power/ipmi-power.sh)");
  app.add_option("--resume-program", flags.resume_program,
                 "Executable run as PROGRAM NODE to bring a suspended node back");
  app.add_option("--resume-timeout", flags.resume_timeout_s,
                 "Seconds a resumed node has to register before it is marked down")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--keep-idle-gpus", flags.keep_idle_gpus,
                 "Idle GPUs kept awake for arriving work")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  return joule::Run(flags, std::vector<std::string>(argv, argv + argc));
}
