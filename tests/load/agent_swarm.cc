// agent_swarm: a load generator for joule-scheduler's agent stream. One
// process opens thousands of agent streams (gRPC callback client API, spread
// over a few channels), registers a simulated 4-GPU node on each, sends
// telemetry on every stream for a while, then prints what it measured: how
// long registration took, the telemetry rate, and (with --scheduler-pid) the
// scheduler's threads, memory and file descriptors before and after.
//
//   agent_swarm --scheduler=127.0.0.1:7070 --streams=2000
//       --scheduler-pid=<pid of joule-scheduler>
//
// After the telemetry phase it asks the scheduler (ListNodes) for each
// node's last sample: a node whose last sample is the last one its stream
// sent has had every report handled (a stream delivers in order), so the
// rate counts reports the scheduler processed, not only ones sent.
//
// Exit status: 0 when every stream registered, none was ended by the
// scheduler before the swarm closed it, and the scheduler had handled every
// stream's last report; 1 otherwise.

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "common/server_options.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/agent.grpc.pb.h"
#include "joule/v1/scheduler.grpc.pb.h"
#include "tests/load/proc_stats.h"
#include "tests/load/swarm_stream.h"

namespace joule {
namespace {

// Telemetry sends are spread over the period in slices of this length, so
// the scheduler sees a steady rate rather than one burst per period.
constexpr int kSliceMs = 10;

struct SwarmFlags {
  std::string scheduler;
  int streams = 2000;
  int channels = 0;  // 0: as few as the server's per-connection stream limit allows.
  int period_ms = 1000;
  int gpus_per_node = 4;
  double duration_s = 10;
  int64_t scheduler_pid = 0;
  std::string node_prefix = "swarm-";
  double connect_timeout_s = 10;
  double register_timeout_s = 60;
  double close_timeout_s = 30;
};

// Nearest-rank percentile of sorted values; 0 for none.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(p * sorted.size() + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

std::optional<ProcStats> Sample(int64_t pid) {
  if (pid <= 0) return std::nullopt;
  absl::StatusOr<ProcStats> stats = ReadProcStats(static_cast<pid_t>(pid));
  if (!stats.ok()) {
    std::cerr << "agent_swarm: " << stats.status() << "\n";
    return std::nullopt;
  }
  return *stats;
}

// One connection each: a local subchannel pool and a distinct argument keep
// gRPC from sharing one subchannel (and one TCP connection) between them.
std::vector<std::shared_ptr<grpc::Channel>> OpenChannels(const SwarmFlags& flags,
                                                         const Clock& clock) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < flags.channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("joule.agent_swarm.channel", i);
    channels.push_back(grpc::CreateCustomChannel(
        flags.scheduler, grpc::InsecureChannelCredentials(), args));
  }
  const absl::Time deadline = clock.Now() + absl::Seconds(flags.connect_timeout_s);
  for (auto& channel : channels) {
    if (!channel->WaitForConnected(absl::ToChronoTime(deadline))) return {};
  }
  return channels;
}

struct TelemetryResult {
  int64_t sent = 0;
  int64_t skipped_busy = 0;
  absl::Duration elapsed;
  std::optional<int64_t> peak_threads;
  // The scheduler's CPU time over the telemetry phase.
  std::optional<double> scheduler_cpu_s;
};

// Sends one sample per registered stream per period for the run's duration.
// Stream i sends in slice i % slices of each period. The scheduler's thread
// count is sampled once per period.
TelemetryResult RunTelemetry(const SwarmFlags& flags, const Clock& clock,
                             const std::vector<std::unique_ptr<SwarmStream>>& streams) {
  TelemetryResult result;
  const int slices = std::max(1, flags.period_ms / kSliceMs);
  const absl::Duration slice = absl::Milliseconds(flags.period_ms) / slices;
  const std::optional<ProcStats> at_start = Sample(flags.scheduler_pid);
  const absl::Time start = clock.Now();
  const absl::Time end = start + absl::Seconds(flags.duration_s);
  for (int64_t k = 0;; ++k) {
    const absl::Time due = start + k * slice;
    if (due >= end) break;
    const absl::Duration wait = due - clock.Now();
    if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
    if (k % slices == 0) {
      if (std::optional<ProcStats> stats = Sample(flags.scheduler_pid)) {
        result.peak_threads = std::max(result.peak_threads.value_or(0), stats->threads);
      }
    }
    for (size_t i = k % slices; i < streams.size(); i += slices) {
      switch (streams[i]->SendTelemetry()) {
        case SwarmStream::SendResult::kSent:
          ++result.sent;
          break;
        case SwarmStream::SendResult::kBusy:
          ++result.skipped_busy;
          break;
        case SwarmStream::SendResult::kNotReady:
          break;
      }
    }
  }
  result.elapsed = clock.Now() - start;
  const std::optional<ProcStats> at_end = Sample(flags.scheduler_pid);
  if (at_start.has_value() && at_end.has_value()) {
    result.scheduler_cpu_s = at_end->cpu_seconds - at_start->cpu_seconds;
  }
  return result;
}

// How many nodes' last sample, as the scheduler reports it, is the last one
// their stream sent; nullopt when ListNodes fails.
// `channel` is one of its own: the swarm's are full of agent streams, up to
// the server's limit per connection.
std::optional<int> CountProcessed(const std::shared_ptr<grpc::Channel>& channel,
                                  const Clock& clock,
                                  const std::vector<std::unique_ptr<SwarmStream>>& streams,
                                  const std::string& node_prefix) {
  std::unique_ptr<v1::SchedulerService::Stub> stub = v1::SchedulerService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(clock.Now() + absl::Seconds(60)));
  v1::ListNodesResponse response;
  const grpc::Status status = stub->ListNodes(&context, v1::ListNodesRequest(), &response);
  if (!status.ok()) {
    std::cerr << "agent_swarm: ListNodes: " << status.error_message() << "\n";
    return std::nullopt;
  }
  std::map<std::string, absl::Time> last_seen;
  for (const v1::Node& node : response.nodes()) {
    last_seen[node.info().name()] = FromProtoTime(node.last_sample().time());
  }
  int processed = 0;
  for (size_t i = 0; i < streams.size(); ++i) {
    const std::optional<absl::Time> sent = streams[i]->stats().last_sample_time;
    auto seen = last_seen.find(absl::StrCat(node_prefix, i));
    processed += sent.has_value() && seen != last_seen.end() && seen->second == *sent;
  }
  return processed;
}

void Row(const std::string& name, const std::string& value) {
  std::cout << absl::StrFormat("  %-34s %s\n", absl::StrCat(name, ":"), value);
}

double Mib(int64_t kib) { return kib / 1024.0; }

int Run(const SwarmFlags& flags) {
  const Clock& clock = *RealClock::Get();
  const int n = flags.streams;

  // Baseline, before any connection of ours exists.
  const std::optional<ProcStats> before = Sample(flags.scheduler_pid);

  SwarmFlags sized = flags;
  if (sized.channels == 0) {
    sized.channels = (n + kMaxStreamsPerConnection - 1) / kMaxStreamsPerConnection;
  }
  std::vector<std::shared_ptr<grpc::Channel>> channels = OpenChannels(sized, clock);
  if (channels.empty()) {
    std::cerr << "agent_swarm: cannot connect to " << flags.scheduler << " within "
              << flags.connect_timeout_s << "s\n";
    return 1;
  }
  std::vector<std::unique_ptr<v1::AgentService::Stub>> stubs;
  for (auto& channel : channels) stubs.push_back(v1::AgentService::NewStub(channel));

  // 1. Register every stream at once and wait for the acks.
  SwarmProgress progress;
  std::vector<std::unique_ptr<SwarmStream>> streams;
  streams.reserve(n);
  for (int i = 0; i < n; ++i) {
    streams.push_back(std::make_unique<SwarmStream>(absl::StrCat(flags.node_prefix, i),
                                                    stubs[i % stubs.size()].get(), &clock,
                                                    &progress, flags.gpus_per_node));
  }
  std::cerr << "agent_swarm: opening " << n << " streams over " << channels.size()
            << " channels to " << flags.scheduler << "\n";
  const absl::Time register_start = clock.Now();
  for (auto& stream : streams) stream->Start();
  const int registered =
      progress.AwaitRegistered(n, absl::Seconds(flags.register_timeout_s));
  const absl::Duration register_all = clock.Now() - register_start;
  std::cerr << "agent_swarm: " << registered << "/" << n << " registered in "
            << register_all << "; sending telemetry for " << flags.duration_s << "s\n";

  // 2. Telemetry on every registered stream.
  const TelemetryResult telemetry = RunTelemetry(flags, clock, streams);
  const absl::Time sending_ended = clock.Now();

  // Sampled while every stream is still open.
  const std::optional<ProcStats> after = Sample(flags.scheduler_pid);
  const int64_t swarm_threads = Sample(getpid()).value_or(ProcStats()).threads;

  // Every stream's last report handled? Asked at once and then every
  // 200 ms for at most kDrainLimit: a scheduler that kept up has handled
  // them within a few of its own queue's milliseconds; one that fell behind
  // has a backlog that grew over the whole phase.
  constexpr absl::Duration kDrainLimit = absl::Seconds(2);
  grpc::ChannelArguments query_args;
  query_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  query_args.SetMaxReceiveMessageSize(-1);
  const std::shared_ptr<grpc::Channel> query = grpc::CreateCustomChannel(
      flags.scheduler, grpc::InsecureChannelCredentials(), query_args);
  std::optional<int> processed;
  for (;;) {
    processed = CountProcessed(query, clock, streams, flags.node_prefix);
    if (!processed.has_value() || *processed == registered ||
        clock.Now() - sending_ended > kDrainLimit) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  const absl::Duration processed_check = clock.Now() - sending_ended;

  // 3. Close cleanly: WritesDone on every stream, wait for the scheduler to
  // finish each; cancel what does not finish in time.
  const absl::Time close_start = clock.Now();
  for (auto& stream : streams) stream->Close();
  int done = progress.AwaitDone(n, absl::Seconds(flags.close_timeout_s));
  const absl::Duration close_all = clock.Now() - close_start;
  if (done < n) {
    std::cerr << "agent_swarm: " << n - done << " streams did not close in "
              << flags.close_timeout_s << "s; cancelling them\n";
    for (auto& stream : streams) stream->Cancel();
    done = progress.AwaitDone(n, absl::Seconds(10));
  }

  // Figures.
  std::vector<double> latencies_ms;
  int failed = 0;
  int closed_ok = 0;
  int64_t commands = 0;
  int64_t telemetry_written = 0;
  int64_t write_failures = 0;
  std::string first_failure;
  for (const auto& stream : streams) {
    const SwarmStream::Stats stats = stream->stats();
    if (stats.register_latency.has_value()) {
      latencies_ms.push_back(absl::ToDoubleMilliseconds(*stats.register_latency));
    }
    const bool stream_failed = !stats.registered || stats.ended_early;
    failed += stream_failed;
    if (stream_failed && first_failure.empty()) {
      first_failure = stats.done ? stats.final_status : "no register_ack";
    }
    closed_ok += stats.closed_ok;
    commands += stats.commands;
    telemetry_written += stats.telemetry_written;
    write_failures += stats.write_failures;
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  const double telemetry_s = absl::ToDoubleSeconds(telemetry.elapsed);

  std::cout << "agent_swarm summary\n";
  Row("scheduler", flags.scheduler);
  Row("channels", absl::StrCat(channels.size()));
  Row("streams_requested", absl::StrCat(n));
  Row("streams_registered", absl::StrCat(registered));
  Row("streams_failed", absl::StrCat(failed));
  if (!first_failure.empty()) Row("first_failure", first_failure);
  Row("register_all_ms",
      absl::StrFormat("%.1f", absl::ToDoubleMilliseconds(register_all)));
  Row("register_latency_p50_ms", absl::StrFormat("%.1f", Percentile(latencies_ms, 0.50)));
  Row("register_latency_p99_ms", absl::StrFormat("%.1f", Percentile(latencies_ms, 0.99)));
  Row("register_latency_max_ms", absl::StrFormat("%.1f", Percentile(latencies_ms, 1.0)));
  Row("telemetry_period_ms", absl::StrCat(flags.period_ms));
  Row("telemetry_duration_s", absl::StrFormat("%.2f", telemetry_s));
  Row("telemetry_sent", absl::StrCat(telemetry.sent));
  Row("telemetry_written", absl::StrCat(telemetry_written));
  Row("telemetry_skipped_busy", absl::StrCat(telemetry.skipped_busy));
  Row("write_failures", absl::StrCat(write_failures));
  Row("telemetry_rate_per_s",
      absl::StrFormat("%.1f", telemetry_s > 0 ? telemetry.sent / telemetry_s : 0.0));
  // Streams whose last report the scheduler had handled, and when it said so.
  Row("telemetry_streams_all_handled",
      processed.has_value() ? absl::StrCat(*processed) : "unknown (ListNodes failed)");
  Row("telemetry_handled_answer_ms",
      absl::StrFormat("%.0f", absl::ToDoubleMilliseconds(processed_check)));
  Row("telemetry_target_rate_per_s",
      absl::StrFormat("%.1f", registered * 1000.0 / flags.period_ms));
  Row("commands_received", absl::StrCat(commands));
  Row("streams_closed_ok", absl::StrCat(closed_ok));
  Row("close_all_ms", absl::StrFormat("%.1f", absl::ToDoubleMilliseconds(close_all)));
  Row("swarm_threads", absl::StrCat(swarm_threads));
  if (flags.scheduler_pid > 0) {
    Row("scheduler_pid", absl::StrCat(flags.scheduler_pid));
    if (before.has_value() && after.has_value()) {
      Row("scheduler_threads_before", absl::StrCat(before->threads));
      Row("scheduler_threads_after", absl::StrCat(after->threads));
      Row("scheduler_threads_peak",
          absl::StrCat(std::max(after->threads, telemetry.peak_threads.value_or(0))));
      if (telemetry.scheduler_cpu_s.has_value()) {
        const double cpu_s = *telemetry.scheduler_cpu_s;
        Row("scheduler_cpu_s_during_telemetry", absl::StrFormat("%.2f", cpu_s));
        Row("scheduler_cpu_percent_during_telemetry",
            absl::StrFormat("%.1f", telemetry_s > 0 ? 100 * cpu_s / telemetry_s : 0.0));
        Row("scheduler_cpu_us_per_telemetry",
            absl::StrFormat("%.1f",
                            telemetry.sent > 0 ? 1e6 * cpu_s / telemetry.sent : 0.0));
      }
      Row("scheduler_fds_before", absl::StrCat(before->fds));
      Row("scheduler_fds_after", absl::StrCat(after->fds));
      Row("scheduler_rss_mib_before", absl::StrFormat("%.1f", Mib(before->rss_kib)));
      Row("scheduler_rss_mib_after", absl::StrFormat("%.1f", Mib(after->rss_kib)));
      Row("scheduler_rss_kib_per_stream",
          absl::StrFormat("%.1f", registered > 0 ? static_cast<double>(after->rss_kib -
                                                                       before->rss_kib) /
                                                       registered
                                                 : 0.0));
    } else {
      Row("scheduler_stats", "unavailable (see stderr)");
    }
  }
  std::cout << std::flush;

  if (done < n) {
    // Streams still in flight reference objects that would be destroyed on
    // return; leave without running destructors.
    std::cerr << "agent_swarm: " << n - done << " streams never finished\n";
    std::fflush(stderr);
    std::_Exit(1);
  }
  return registered == n && failed == 0 && processed == registered ? 0 : 1;
}

}  // namespace
}  // namespace joule

int main(int argc, char** argv) {
  joule::SwarmFlags flags;
  CLI::App app{
      "agent_swarm: opens many agent streams to a joule-scheduler and "
      "reports registration latency, telemetry rate and the "
      "scheduler's threads and memory"};
  app.add_option("--scheduler", flags.scheduler, "HOST:PORT of the scheduler")
      ->required();
  app.add_option("--streams", flags.streams, "Agent streams (simulated nodes) to open")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--channels", flags.channels,
                 "gRPC channels (one TCP connection each) to spread the streams over; "
                 "0 picks enough for the scheduler's per-connection stream limit")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 16));
  app.add_option("--gpus-per-node", flags.gpus_per_node,
                 "Simulated GPUs per node, each in every telemetry sample")
      ->check(CLI::Range(0, 64));
  app.add_option("--period-ms", flags.period_ms, "Telemetry period per stream")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600000));
  app.add_option("--duration-s", flags.duration_s,
                 "Seconds of telemetry once the streams have registered")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--scheduler-pid", flags.scheduler_pid,
                 "PID of the scheduler, to report its threads, RSS and fds "
                 "(0: do not)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--node-prefix", flags.node_prefix, "Node names are PREFIX<i>")
      ->capture_default_str();
  app.add_option("--connect-timeout-s", flags.connect_timeout_s,
                 "Seconds to wait for the channels to connect")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--register-timeout-s", flags.register_timeout_s,
                 "Seconds to wait for every stream's register_ack")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--close-timeout-s", flags.close_timeout_s,
                 "Seconds to wait for the streams to close before cancelling them")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  CLI11_PARSE(app, argc, argv);
  return joule::Run(flags);
}
