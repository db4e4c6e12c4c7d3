// joulectl: the Joule command-line client.
//
// Exit codes: 0 success; 1 the scheduler refused or failed the request (its
// message is printed), or no scheduler leader answered within --timeout (the
// addresses tried and the last error are printed); 2 bad usage or a bad job
// file; for `watch`, 1 also when the job ends FAILED or CANCELLED.
//
// --scheduler may list every scheduler replica; each call goes to the leader
// (cli/leader_channel.h).

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "cli/leader_channel.h"
#include "cli/table.h"
#include "cli/terminal_text.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/scheduler.grpc.pb.h"
#include "spec/job_yaml.h"
#include "cli/client_config.h"
#include "cli/token.h"
#include "common/tls_credentials.h"

namespace joule {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitServer = 1;
constexpr int kExitUsage = 2;

struct Globals {
  std::string output = "table";
  double timeout_s = 30;
  // --config, else DefaultClientConfigPath().
  std::string config_path;
  // From the flags; merged over the environment and the config file.
  ClientConfig flags;
  // The result of that merge.
  ClientConfig connection;
  std::string token;
};

// Config file, then environment, then flags. Without any address the
// scheduler is 127.0.0.1:7070.
absl::Status ResolveConnection(Globals* globals) {
  const bool explicit_file = !globals->config_path.empty();
  const std::string path = explicit_file ? globals->config_path : DefaultClientConfigPath();
  ClientConfig merged;
  if (!path.empty()) {
    absl::StatusOr<ClientConfig> file = LoadClientConfig(path, explicit_file);
    if (!file.ok()) return file.status();
    merged = *std::move(file);
  }
  ClientConfig env;
  if (const char* value = std::getenv("JOULE_SCHEDULER")) env.scheduler = value;
  if (const char* value = std::getenv("JOULE_TOKEN")) env.token = value;
  merged.MergeFrom(env);
  merged.MergeFrom(globals->flags);
  if (merged.scheduler.empty()) merged.scheduler = "127.0.0.1:7070";
  absl::StatusOr<std::string> token = ResolveToken(merged);
  if (!token.ok()) return token.status();
  globals->token = *std::move(token);
  if (merged.insecure && (!globals->token.empty() || !merged.cert_file.empty())) {
    return absl::InvalidArgumentError(
        "--insecure sends credentials in the clear: drop the token/certificate, or use TLS");
  }
  if (!merged.insecure) {
    TlsFiles files;
    files.ca_file = merged.ca_file;
    files.cert_file = merged.cert_file;
    files.key_file = merged.key_file;
    if (absl::Status checked = CheckTlsFiles(files, "--tls", false); !checked.ok()) {
      return checked;
    }
  }
  globals->connection = std::move(merged);
  return absl::OkStatus();
}

std::string Json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

// "JOB_STATE_RUNNING" -> "RUNNING".
std::string Short(const std::string& enum_name) {
  const size_t pos = enum_name.find("_STATE_");
  return pos == std::string::npos ? enum_name : enum_name.substr(pos + 7);
}

std::string HumanDuration(absl::Duration d) {
  const int64_t s = absl::ToInt64Seconds(d);
  if (d < absl::Seconds(60)) return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(d));
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string Runtime(const google::protobuf::Timestamp& start,
                    const google::protobuf::Timestamp& end) {
  if (start.seconds() == 0) return "-";
  const absl::Time until =
      end.seconds() == 0 ? RealClock::Get()->Now() : FromProtoTime(end);
  return HumanDuration(until - FromProtoTime(start));
}

std::string Joules(double j) { return absl::StrFormat("%.1f", j); }

// The leader among the --scheduler replicas (LeaderChannel), and how
// results are printed.
class Client {
 public:
  using Retry = LeaderChannel::Retry;
  using Stub = LeaderChannel::Stub;

  Client(const Globals& globals, std::unique_ptr<LeaderChannel> channel)
      : globals_(globals), channel_(std::move(channel)) {}

  static LeaderChannel::Options Options(const Globals& globals) {
    LeaderChannel::Options options;
    options.timeout = absl::Seconds(globals.timeout_s);
    options.channel_args.SetMaxSendMessageSize(64 << 20);
    options.channel_args.SetMaxReceiveMessageSize(64 << 20);
    const ClientConfig& c = globals.connection;
    if (!c.insecure) {
      TlsFiles files;
      files.ca_file = c.ca_file;
      files.cert_file = c.cert_file;
      files.key_file = c.key_file;
      // One command is short: the files are read once, not watched.
      files.refresh_interval_s = 0;
      options.credentials = MakeClientTlsCredentials(files);
      SetTlsServerName(c.server_name, &options.channel_args);
    }
    options.bearer_token = globals.token;
    return options;
  }

  LeaderChannel& leader() { return *channel_; }

  // Prints the server's error and returns the exit code for it. The channel
  // has named the scheduler in UNAVAILABLE and DEADLINE_EXCEEDED messages.
  int Fail(const grpc::Status& status) const {
    std::cerr << "joulectl: " << status.error_message() << " ["
              << CodeName(status.error_code()) << "]\n";
    return kExitServer;
  }

  bool json() const { return globals_.output == "json"; }

 private:
  static const char* CodeName(grpc::StatusCode code) {
    switch (code) {
      case grpc::StatusCode::INVALID_ARGUMENT:
        return "INVALID_ARGUMENT";
      case grpc::StatusCode::NOT_FOUND:
        return "NOT_FOUND";
      case grpc::StatusCode::FAILED_PRECONDITION:
        return "FAILED_PRECONDITION";
      case grpc::StatusCode::UNAVAILABLE:
        return "UNAVAILABLE";
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        return "DEADLINE_EXCEEDED";
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        return "RESOURCE_EXHAUSTED";
      case grpc::StatusCode::OUT_OF_RANGE:
        return "OUT_OF_RANGE";
      case grpc::StatusCode::UNAUTHENTICATED:
        return "UNAUTHENTICATED";
      case grpc::StatusCode::PERMISSION_DENIED:
        return "PERMISSION_DENIED";
      case grpc::StatusCode::ALREADY_EXISTS:
        return "ALREADY_EXISTS";
      default:
        return "ERROR";
    }
  }

  const Globals& globals_;
  std::unique_ptr<LeaderChannel> channel_;
};

void PrintJobsTable(const std::vector<const v1::Job*>& jobs) {
  Table table({"ID", "NAME", "TYPE", "STATE", "REPLICAS", "NODES", "RUNTIME",
               "ENERGY_J", "MESSAGE"});
  for (const v1::Job* job : jobs) {
    std::vector<std::string> nodes;
    for (const v1::Task& task : job->tasks()) {
      if (task.attempt() == job->attempts() &&
          std::find(nodes.begin(), nodes.end(), task.node()) == nodes.end()) {
        nodes.push_back(task.node());
      }
    }
    table.AddRow({job->id(), job->spec().name(),
                  job->spec().type() == v1::JOB_TYPE_INFERENCE ? "inference"
                                                               : "training",
                  Short(v1::JobState_Name(job->state())),
                  absl::StrCat(job->spec().replicas()),
                  nodes.empty() ? "-" : absl::StrJoin(nodes, ","),
                  Runtime(job->start_time(), job->end_time()),
                  Joules(job->energy().total_j()), job->message()});
  }
  table.Print(std::cout);
}

void PrintJob(const v1::Job& job) {
  const v1::JobSpec& spec = job.spec();
  // Retries used under the restart policy, and when a waiting retry starts.
  std::string retries;
  if (job.retries() > 0 || job.has_not_before()) {
    absl::StrAppend(&retries, " (retries used: ", job.retries());
    if (spec.restart_policy().has_max_retries()) {
      absl::StrAppend(&retries, " of ", spec.restart_policy().max_retries());
    }
    if (job.has_not_before()) {
      absl::StrAppend(&retries, "; next attempt not before ",
                      absl::FormatTime("%H:%M:%S", FromProtoTime(job.not_before()),
                                       absl::LocalTimeZone()));
    }
    retries += ")";
  }
  std::cout << "Job:        " << job.id() << " (" << spec.name() << ")\n"
            << "Type:       "
            << (spec.type() == v1::JOB_TYPE_INFERENCE ? "inference" : "training")
            << "\n"
            << "State:      " << Short(v1::JobState_Name(job.state())) << "\n"
            << "Message:    " << job.message() << "\n"
            << "Command:    " << spec.command() << " " << absl::StrJoin(spec.args(), " ")
            << "\n"
            << "Resources:  " << spec.resources().gpus() << " GPU"
            << (spec.resources().gpu_model().empty()
                    ? ""
                    : absl::StrCat(" (", spec.resources().gpu_model(), ")"))
            << ", " << spec.resources().cpus() << " CPU, "
            << spec.resources().memory_bytes() / (1 << 20) << " MiB x "
            << spec.replicas() << " replicas\n"
            << "Attempts:   " << job.attempts() << retries << "\n"
            << "Runtime:    " << Runtime(job.start_time(), job.end_time()) << "\n"
            << absl::StrFormat(
                   "Energy:     %.1f J (GPU %.1f J, CPU %.1f J, static %.1f J) = "
                   "%.6f kWh\n",
                   job.energy().total_j(), job.energy().gpu_j(),
                   job.energy().cpu_j(), job.energy().static_j(),
                   job.energy().total_j() / 3.6e6);
  if (job.has_footprint()) {
    const v1::Footprint& footprint = job.footprint();
    // Fixed decimals, more for a small figure so that it keeps about 3
    // significant digits (a short job's kWh and cost).
    auto figure = [](double value, int decimals) {
      if (value != 0 && std::abs(value) < 1) {
        const int needed = static_cast<int>(std::ceil(-std::log10(std::abs(value)))) + 2;
        decimals = std::max(decimals, std::min(needed, 9));
      }
      return absl::StrFormat("%.*f", decimals, value);
    };
    std::cout << "Footprint:  " << figure(footprint.kwh(), 4) << " kWh";
    if (footprint.currency().empty()) {
      std::cout << "; gCO2e and cost not configured (the scheduler has no --carbon-config)\n";
    } else {
      std::cout << ", " << figure(footprint.co2e_g(), 1) << " gCO2e, "
                << figure(footprint.cost(), 4) << " " << footprint.currency();
      if (footprint.unpriced_kwh() > 0) {
        std::cout << " (" << figure(footprint.unpriced_kwh(), 4)
                  << " kWh of it measured while not configured, counted as 0)";
      }
      std::cout << "\n";
    }
  }
  if (!job.cap_decision().empty()) std::cout << "Cap:        " << job.cap_decision() << "\n";
  if (!job.batch_decision().empty()) {
    std::cout << "Batch:      " << job.batch_decision() << "\n";
  }
  if (spec.energy_budget_j() > 0) {
    std::cout << absl::StrFormat("Budget:     %.0f J%s\n", spec.energy_budget_j(),
                                 job.over_budget() ? " -- cannot be met (see events)" : "");
  }
  if (job.has_savings()) {
    const v1::JobSavings& savings = job.savings();
    std::cout << absl::StrFormat(
        "Savings:    %.1f J GPU energy saved (%.1f%%): measured %.1f J vs %.1f J "
        "estimated at the maximum cap\n            (%s)\n",
        savings.saved_j(),
        savings.estimated_uncapped_gpu_j() > 0
            ? 100 * savings.saved_j() / savings.estimated_uncapped_gpu_j()
            : 0.0,
        savings.measured_gpu_j(), savings.estimated_uncapped_gpu_j(), savings.basis());
  }
  if (job.tasks_size() > 0) {
    std::cout << "\nTasks:\n";
    Table table({"TASK", "NODE", "GPUS", "CAP_W", "BATCH", "SHARDS", "STATE",
                 "EXIT", "RUNTIME", "ENERGY_J", "MESSAGE"});
    for (const v1::Task& task : job.tasks()) {
      table.AddRow({task.task_id(), task.node(),
                    task.gpu_indices().empty() ? "-"
                                               : absl::StrJoin(task.gpu_indices(), ","),
                    task.power_cap_w() > 0 ? absl::StrFormat("%.0f", task.power_cap_w())
                                           : "-",
                    absl::StrCat(task.batch_size()),
                    task.shards().empty() ? "-" : task.shards(),
                    Short(v1::TaskState_Name(task.state())),
                    task.has_end_time() ? absl::StrCat(task.exit_code()) : "-",
                    Runtime(task.start_time(), task.end_time()),
                    Joules(task.energy().total_j()), task.message()});
    }
    table.Print(std::cout);
  }
  if (job.events_size() > 0) {
    std::cout << "\nEvents:\n";
    Table table({"TIME", "REASON", "MESSAGE"});
    for (const v1::JobEvent& event : job.events()) {
      table.AddRow({absl::FormatTime("%H:%M:%E3S", FromProtoTime(event.time()),
                                     absl::LocalTimeZone()),
                    event.reason(), event.message()});
    }
    table.Print(std::cout);
  }
}

int Submit(Client& client, const std::string& file, v1::JobSpec flag_spec,
           bool quiet) {
  v1::JobSpec spec;
  if (!file.empty()) {
    absl::StatusOr<v1::JobSpec> parsed = ParseJobYamlFile(file);
    if (!parsed.ok()) {
      std::cerr << "joulectl: " << file << ": " << parsed.status().message() << "\n";
      return kExitUsage;
    }
    spec = *std::move(parsed);
  } else {
    spec = std::move(flag_spec);
  }
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  // One id for this submission and all its retries: a scheduler that took
  // the job before the connection broke returns it instead of a second one.
  absl::BitGen bitgen;
  request.set_request_id(absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(bitgen),
                                         absl::Uniform<uint64_t>(bitgen)));
  v1::Job job;
  grpc::Status status = client.leader().Call(&Client::Stub::SubmitJob, request, &job,
                                             Client::Retry::kAlways);
  if (!status.ok()) return client.Fail(status);
  if (client.json()) {
    std::cout << Json(job);
  } else if (quiet) {
    std::cout << job.id() << "\n";
  } else {
    std::cout << job.id() << " submitted\n";
  }
  return kExitOk;
}

int Get(Client& client, const std::string& id) {
  v1::GetJobRequest request;
  request.set_job_id(id);
  v1::Job job;
  grpc::Status status =
      client.leader().Call(&Client::Stub::GetJob, request, &job, Client::Retry::kAlways);
  if (!status.ok()) return client.Fail(status);
  if (client.json()) {
    std::cout << Json(job);
  } else {
    PrintJob(job);
  }
  return kExitOk;
}

int List(Client& client, const std::vector<std::string>& states) {
  v1::ListJobsRequest request;
  for (const std::string& name : states) {
    v1::JobState state;
    if (!v1::JobState_Parse(absl::StrCat("JOB_STATE_", absl::AsciiStrToUpper(name)),
                            &state)) {
      std::cerr << "joulectl: --state: unknown state \"" << name
                << "\"; use pending, running, succeeded, failed or cancelled\n";
      return kExitUsage;
    }
    request.add_states(state);
  }
  v1::ListJobsResponse response;
  grpc::Status status = client.leader().Call(&Client::Stub::ListJobs, request, &response,
                                             Client::Retry::kAlways);
  if (!status.ok()) return client.Fail(status);
  if (client.json()) {
    std::cout << Json(response);
    return kExitOk;
  }
  std::vector<const v1::Job*> jobs;
  for (const v1::Job& job : response.jobs()) jobs.push_back(&job);
  PrintJobsTable(jobs);
  return kExitOk;
}

int Watch(Client& client, const std::string& id) {
  v1::WatchJobRequest request;
  request.set_job_id(id);
  v1::Job job;
  std::string last_line;
  bool any = false;
  auto print = [&](const v1::Job& update) {
    job = update;
    any = true;
    if (client.json()) {
      google::protobuf::util::JsonPrintOptions options;
      options.preserve_proto_field_names = true;
      std::string line;
      (void)google::protobuf::util::MessageToJsonString(job, &line, options);
      std::cout << line << std::endl;
      return;
    }
    int running = 0;
    for (const v1::Task& task : job.tasks()) {
      running += task.state() == v1::TASK_STATE_RUNNING;
    }
    const std::string line = absl::StrFormat(
        "%s  %-9s tasks running: %d  energy: %.1f J  %s", job.id(),
        Short(v1::JobState_Name(job.state())), running, job.energy().total_j(),
        job.message());
    if (line != last_line) {
      std::cout << absl::FormatTime("%H:%M:%S ", RealClock::Get()->Now(),
                                    absl::LocalTimeZone())
                << line << std::endl;
      last_line = line;
    }
  };
  // Follows the job across a change of leader: the new leader's stream starts
  // with the job's current state.
  grpc::Status status = client.leader().Stream(&Client::Stub::WatchJob, request, print);
  if (!status.ok()) return client.Fail(status);
  if (!any) return kExitServer;
  return job.state() == v1::JOB_STATE_SUCCEEDED ? kExitOk : kExitServer;
}

int Cancel(Client& client, const std::string& id, const std::string& reason) {
  v1::CancelJobRequest request;
  request.set_job_id(id);
  request.set_reason(reason);
  v1::Job job;
  grpc::Status status = client.leader().Call(&Client::Stub::CancelJob, request, &job,
                                             Client::Retry::kIfNotSent);
  if (!status.ok()) return client.Fail(status);
  if (client.json()) {
    std::cout << Json(job);
  } else {
    std::cout << job.id() << " " << (job.state() == v1::JOB_STATE_CANCELLED
                                          ? "cancelled"
                                          : "cancel requested; stopping tasks")
              << "\n";
  }
  return kExitOk;
}

int Logs(Client& client, const std::string& id, const std::string& task,
         bool stderr_too, int64_t max_bytes, bool raw) {
  v1::GetTaskLogsRequest request;
  request.set_job_id(id);
  request.set_task_id(task);
  request.set_max_bytes(max_bytes);
  v1::GetTaskLogsResponse response;
  grpc::Status status = client.leader().Call(&Client::Stub::GetTaskLogs, request, &response,
                                             Client::Retry::kAlways);
  if (!status.ok()) return client.Fail(status);
  if (client.json()) {
    std::cout << Json(response);
    return kExitOk;
  }
  int code = kExitOk;
  // A task's bytes could drive the terminal: escaped there unless --raw.
  const bool escape = !raw && isatty(STDOUT_FILENO);
  const auto shown = [escape](const std::string& text) {
    return escape ? EscapeForTerminal(text) : text;
  };
  for (const v1::TaskLogs& logs : response.logs()) {
    if (response.logs_size() > 1) {
      std::cout << "==> " << logs.task_id() << " on " << logs.node() << " <==\n";
    }
    if (!logs.error().empty()) {
      std::cerr << "joulectl: " << logs.task_id() << ": " << logs.error() << "\n";
      code = kExitServer;
    }
    if (logs.truncated()) std::cout << "[... earlier output omitted ...]\n";
    std::cout << shown(logs.stdout());
    if (stderr_too && !logs.stderr().empty()) {
      std::cout << "--- stderr ---\n" << shown(logs.stderr());
    }
  }
  return code;
}

int Cap(Client& client, const std::string& node, int gpu, int package, double watts,
        int min_mhz, int max_mhz, const std::string& reason) {
  v1::SetNodeCapRequest request;
  request.set_node(node);
  v1::SetCap* cap = request.mutable_cap();
  cap->set_kind(gpu >= 0 ? v1::DEVICE_KIND_GPU : v1::DEVICE_KIND_CPU);
  cap->set_index(gpu >= 0 ? gpu : package);
  cap->set_power_cap_w(watts);
  cap->set_max_frequency_mhz(max_mhz);
  cap->set_min_frequency_mhz(min_mhz);
  cap->set_reason(reason);
  v1::SetNodeCapResponse response;
  grpc::Status status = client.leader().Call(&Client::Stub::SetNodeCap, request, &response,
                                             Client::Retry::kIfNotSent);
  if (!status.ok()) return client.Fail(status);
  if (client.json()) {
    std::cout << Json(request);
  } else {
    std::cout << "cap sent to " << node << "\n";
  }
  return kExitOk;
}

// The node's message, plus the sources that are degraded.
std::string NodeMessage(const v1::Node& node) {
  std::vector<std::string> degraded;
  for (const v1::SourceStatus& source : node.info().sources()) {
    if (source.state() == v1::SourceStatus::STATE_DEGRADED) degraded.push_back(source.name());
  }
  std::string message = node.message();
  if (!degraded.empty()) {
    absl::StrAppend(&message, message.empty() ? "" : "; ", "degraded: ",
                    absl::StrJoin(degraded, ","));
  }
  return message;
}

int Explain(Client& client, const std::string& id) {
  v1::ExplainJobRequest request;
  request.set_job_id(id);
  v1::JobExplanation response;
  grpc::Status status = client.leader().Call(&Client::Stub::ExplainJob, request, &response,
                                             Client::Retry::kAlways);
  if (!status.ok()) return client.Fail(status);
  if (client.json()) {
    std::cout << Json(response);
    return kExitOk;
  }
  std::cout << "Job:       " << response.job_id() << "\n";
  if (!response.note().empty()) std::cout << "Note:      " << response.note() << "\n";
  if (!response.outcome().empty()) {
    std::cout << "Placement: " << response.outcome()
              << (response.reason().empty() ? "" : absl::StrCat(" (", response.reason(), ")"))
              << "\n";
  }
  if (response.replica_nodes_size() > 0) {
    std::cout << "Replicas:  " << absl::StrJoin(response.replica_nodes(), ", ") << "\n";
  }
  std::cout << "Cap:       " << response.cap_decision() << "\n"
            << "Batch:     " << response.batch_decision() << "\n";
  if (response.nodes_total() > 0) {
    std::cout << "Profile:   " << response.profile() << "\n"
              << absl::StrFormat("Nodes:     %d in the cluster, %d filtered, %d feasible%s\n",
                                 response.nodes_total(), response.nodes_filtered(),
                                 response.nodes_feasible(),
                                 response.sampled() ? " (enough found: the rest not looked at)"
                                                    : "");
  }
  if (response.rejections_size() > 0) {
    Table rejections({"NODES", "PLUGIN", "CODE", "EXAMPLE"});
    for (const v1::RejectionCount& rejection : response.rejections()) {
      rejections.AddRow({absl::StrCat(rejection.nodes()), rejection.plugin(), rejection.code(),
                         rejection.example()});
    }
    std::cout << "\nTurned away (first replica):\n";
    rejections.Print(std::cout);
  }
  if (response.candidates_size() == 0) return kExitOk;
  // One column per scoring plugin, in the pipeline's order.
  std::vector<std::string> plugins;
  for (const v1::PlacementCandidate& candidate : response.candidates()) {
    for (const v1::PluginScore& score : candidate.scores()) {
      if (std::find(plugins.begin(), plugins.end(), score.plugin()) == plugins.end()) {
        plugins.push_back(score.plugin());
      }
    }
  }
  std::vector<std::string> header = {"", "NODE"};
  for (const std::string& plugin : plugins) header.push_back(absl::AsciiStrToUpper(plugin));
  header.push_back("TOTAL");
  Table table(header);
  for (const v1::PlacementCandidate& candidate : response.candidates()) {
    std::vector<std::string> row = {candidate.chosen() ? "*" : "", candidate.node()};
    for (const std::string& plugin : plugins) {
      std::string cell = "-";
      for (const v1::PluginScore& score : candidate.scores()) {
        if (score.plugin() == plugin) {
          cell = absl::StrFormat("%.0f x%.0f", score.score(), score.weight());
        }
      }
      row.push_back(cell);
    }
    row.push_back(absl::StrFormat("%.1f", candidate.total_score()));
    table.AddRow(row);
  }
  std::cout << "\nBest candidates (first replica; * = chosen):\n";
  table.Print(std::cout);
  return kExitOk;
}

int Nodes(Client& client) {
  v1::ListNodesResponse response;
  grpc::Status status = client.leader().Call(
      &Client::Stub::ListNodes, v1::ListNodesRequest(), &response, Client::Retry::kAlways);
  if (!status.ok()) return client.Fail(status);
  if (client.json()) {
    std::cout << Json(response);
    return kExitOk;
  }
  Table table({"NAME", "STATE", "GPUS", "FREE_GPUS", "CPUS", "FREE_CPUS",
               "POWER_W", "TASKS", "SOURCES", "MESSAGE"});
  for (const v1::Node& node : response.nodes()) {
    std::map<std::string, int> models;
    std::vector<std::string> sources;
    for (const v1::Device& device : node.info().devices()) {
      if (device.kind() == v1::DEVICE_KIND_GPU) ++models[device.model()];
      if (std::find(sources.begin(), sources.end(), device.source()) == sources.end()) {
        sources.push_back(device.source());
      }
    }
    std::vector<std::string> gpus;
    for (const auto& [model, count] : models) gpus.push_back(absl::StrCat(count, "x", model));
    table.AddRow({node.info().name(), Short(v1::NodeState_Name(node.state())),
                  gpus.empty() ? "-" : absl::StrJoin(gpus, ","),
                  absl::StrCat(node.free_gpus()),
                  absl::StrFormat("%.0f", node.info().cpus()),
                  absl::StrFormat("%.1f", node.free_cpus()),
                  // No sample yet is not 0 W.
                  node.last_sample().has_time()
                      ? absl::StrFormat("%.0f", node.last_sample().node_power_w())
                      : "-",
                  absl::StrCat(node.task_ids_size()), absl::StrJoin(sources, ","),
                  NodeMessage(node)});
  }
  table.Print(std::cout);
  return kExitOk;
}

absl::Status BuildFlagSpec(const std::string& type, const std::vector<std::string>& env,
                           const std::vector<std::string>& labels,
                           const std::string& memory, v1::JobSpec* spec) {
  if (type == "training") {
    spec->set_type(v1::JOB_TYPE_TRAINING);
  } else if (type == "inference") {
    spec->set_type(v1::JOB_TYPE_INFERENCE);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--type: must be training or inference, got \"", type, "\""));
  }
  for (const auto& [flag, items, map] :
       {std::make_tuple("--env", &env, spec->mutable_env()),
        std::make_tuple("--label", &labels, spec->mutable_labels())}) {
    for (const std::string& item : *items) {
      std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
      if (kv.first.empty() || item.find('=') == std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(flag, ": \"", item, "\" is not KEY=VALUE"));
      }
      (*map)[kv.first] = kv.second;
    }
  }
  if (!memory.empty()) {
    int64_t bytes = 0;
    absl::Status parsed = ParseQuantity(memory, &bytes);
    if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat("--memory: ", parsed.message()));
    spec->mutable_resources()->set_memory_bytes(bytes);
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  Globals globals;
  CLI::App app{"joulectl: submit and follow jobs on a Joule cluster"};
  app.require_subcommand(1);
  // Global options may also follow the subcommand: `joulectl get JOB -o json`.
  app.fallthrough();
  app.add_option("--scheduler", globals.flags.scheduler,
                 "Scheduler address HOST:PORT, or the comma-separated addresses of "
                 "all replicas (HOST:PORT,HOST:PORT,...): calls go to the leader, "
                 "following standbys' redirects (env JOULE_SCHEDULER; default "
                 "127.0.0.1:7070)");
  app.add_option("--config", globals.config_path,
                 "Client config file (YAML: scheduler, ca, token-file or token, cert, key, "
                 "server-name, insecure); default $JOULE_CONFIG or "
                 "~/.config/joule/config.yaml");
  app.add_option("--ca", globals.flags.ca_file,
                 "PEM CA that verifies the scheduler's certificate (default: the system's)");
  app.add_option("--token-file", globals.flags.token_file,
                 "File holding the bearer token (env JOULE_TOKEN holds the token itself)");
  app.add_option("--cert", globals.flags.cert_file, "PEM client certificate (instead of a token)");
  app.add_option("--key", globals.flags.key_file, "PEM key of --cert");
  app.add_option("--server-name", globals.flags.server_name,
                 "Name to expect in the scheduler's certificate (default: the address's host)");
  app.add_flag("--insecure", globals.flags.insecure,
               "Plaintext, no credentials: only for a scheduler run with --insecure on "
               "loopback");
  app.add_option("-o,--output", globals.output, "Output format: table or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json"}));
  app.add_option("--timeout", globals.timeout_s,
                 "Seconds to wait for the scheduler, finding the leader included")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));

  int code = kExitOk;
  std::function<int(Client&)> action;

  // submit
  CLI::App* submit = app.add_subcommand("submit", "Submit a job from a YAML file or flags");
  std::string file, type = "training", memory, name, gpu_model;
  std::vector<std::string> env, labels, command;
  int gpus = -1, replicas = 0, batch_size = 0, shards = 0;
  double cpus = 0;
  bool quiet = false;
  submit->add_option("-f,--file", file, "Job file (YAML); see README, Job spec");
  submit->add_option("--name", name, "Job name (flags form)");
  submit->add_option("--type", type, "training or inference")->capture_default_str();
  submit->add_option("--gpus", gpus, "GPUs per replica");
  submit->add_option("--gpu-model", gpu_model, "Only GPUs of this model");
  submit->add_option("--cpus", cpus, "CPUs per replica");
  submit->add_option("--memory", memory, "Memory per replica, e.g. 512Mi");
  submit->add_option("--replicas", replicas, "Replicas (gang)");
  submit->add_option("--batch-size", batch_size, "Default batch size");
  submit->add_option("--shards", shards, "Data shard count");
  submit->add_option("--env", env, "Environment KEY=VALUE (repeatable)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  submit->add_option("--label", labels, "Label KEY=VALUE (repeatable)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  submit->add_flag("-q,--quiet", quiet, "Print only the job id");
  submit->add_option("command", command, "Command and arguments (after --)");
  submit->callback([&] {
    if (file.empty() == command.empty()) {
      throw CLI::ValidationError("submit",
                                 "give either -f FILE or a command after --, not both");
    }
    if (!file.empty() && (!name.empty() || gpus >= 0 || cpus > 0 || replicas > 0)) {
      throw CLI::ValidationError("submit", "job flags cannot be combined with -f");
    }
    v1::JobSpec spec;
    if (!command.empty()) {
      spec.set_name(name.empty() ? "job" : name);
      spec.set_command(command[0]);
      for (size_t i = 1; i < command.size(); ++i) spec.add_args(command[i]);
      if (gpus >= 0) spec.mutable_resources()->set_gpus(gpus);
      if (cpus > 0) spec.mutable_resources()->set_cpus(cpus);
      spec.mutable_resources()->set_gpu_model(gpu_model);
      if (replicas > 0) spec.set_replicas(replicas);
      if (batch_size > 0) spec.mutable_batch_size()->set_default_size(batch_size);
      spec.set_shard_count(shards);
      absl::Status built = BuildFlagSpec(type, env, labels, memory, &spec);
      if (!built.ok()) throw CLI::ValidationError(std::string(built.message()));
    }
    action = [spec, &file, &quiet](Client& client) {
      return Submit(client, file, spec, quiet);
    };
  });

  std::string job_id;
  CLI::App* get = app.add_subcommand("get", "Show a job, its tasks and events");
  get->add_option("JOB", job_id, "Job id")->required();
  get->callback([&] { action = [&](Client& c) { return Get(c, job_id); }; });

  std::vector<std::string> states;
  CLI::App* list = app.add_subcommand("list", "List jobs");
  list->add_option("--state", states, "Only jobs in this state (repeatable)")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  list->callback([&] { action = [&](Client& c) { return List(c, states); }; });

  CLI::App* watch = app.add_subcommand(
      "watch", "Follow a job until it ends (exit 0 only if it succeeded)");
  watch->add_option("JOB", job_id, "Job id")->required();
  watch->callback([&] { action = [&](Client& c) { return Watch(c, job_id); }; });

  std::string reason;
  CLI::App* cancel = app.add_subcommand("cancel", "Cancel a job (SIGTERM, then SIGKILL)");
  cancel->add_option("JOB", job_id, "Job id")->required();
  cancel->add_option("--reason", reason, "Recorded in the job's events");
  cancel->callback([&] { action = [&](Client& c) { return Cancel(c, job_id, reason); }; });

  std::string task_id;
  bool with_stderr = false;
  bool raw_logs = false;
  int64_t max_bytes = 0;
  CLI::App* logs = app.add_subcommand("logs", "Print a job's task output");
  logs->add_option("JOB", job_id, "Job id")->required();
  logs->add_option("--task", task_id, "Only this task (default: latest attempt's tasks)");
  logs->add_flag("--stderr", with_stderr, "Also print standard error");
  logs->add_flag("--raw", raw_logs,
                 "Write the output's bytes as they are (default on a terminal: control "
                 "characters and invalid UTF-8 shown as \\xNN escapes)");
  logs->add_option("--max-bytes", max_bytes, "Tail size per stream (default 64 KiB)")
      ->check(CLI::Range(int64_t{0}, int64_t{4} << 20));
  logs->callback([&] {
    action = [&](Client& c) {
      return Logs(c, job_id, task_id, with_stderr, max_bytes, raw_logs);
    };
  });

  std::string cap_node;
  int cap_gpu = -1, cap_package = -1, cap_mhz = 0, cap_min_mhz = 0;
  double cap_watts = 0;
  CLI::App* cap = app.add_subcommand(
      "cap", "Cap a device of a node (operator override; restored by the agent)");
  cap->add_option("NODE", cap_node, "Node name")->required();
  auto* gpu_opt = cap->add_option("--gpu", cap_gpu, "GPU index");
  auto* pkg_opt = cap->add_option("--cpu-package", cap_package, "CPU package index");
  gpu_opt->excludes(pkg_opt);
  cap->add_option("--watts", cap_watts, "Power limit, W");
  cap->add_option("--max-mhz", cap_mhz,
                  "CPU: frequency cap of all policies; GPU: lock the SM clock at most here, MHz");
  cap->add_option("--min-mhz", cap_min_mhz, "GPU: lower end of the locked SM clock, MHz");
  cap->add_option("--reason", reason, "Recorded by the agent");
  cap->callback([&] {
    if (cap_gpu < 0 && cap_package < 0) {
      throw CLI::ValidationError("cap", "give --gpu N or --cpu-package N");
    }
    action = [&](Client& c) {
      return Cap(c, cap_node, cap_gpu, cap_package, cap_watts, cap_min_mhz, cap_mhz, reason);
    };
  });

  CLI::App* explain = app.add_subcommand(
      "explain", "Why a job is where it is: candidates, plugin verdicts and scores");
  explain->add_option("JOB", job_id, "Job id")->required();
  explain->callback([&] { action = [&](Client& c) { return Explain(c, job_id); }; });

  CLI::App* nodes = app.add_subcommand("nodes", "List nodes and their devices");
  nodes->callback([&] { action = [&](Client& c) { return Nodes(c); }; });

  // token create: local, no scheduler involved.
  std::function<int()> local_action;
  std::string token_user;
  std::string token_role = "user";
  double token_valid_h = 0;
  CLI::App* token = app.add_subcommand(
      "token", "Make API tokens for the scheduler's --tokens-file");
  token->require_subcommand(1);
  CLI::App* token_create = token->add_subcommand(
      "create", "Print a new token and the line for the scheduler's --tokens-file");
  token_create->add_option("--user", token_user, "Who the token is for")->required();
  token_create->add_option("--role", token_role, "user, operator or admin")
      ->capture_default_str()
      ->check(CLI::IsMember({"user", "operator", "admin"}));
  token_create->add_option("--valid-for", token_valid_h,
                           "Hours until it expires (0: never)")
      ->check(CLI::Range(0.0, 24.0 * 3650));
  token_create->callback([&] {
    local_action = [&] {
      absl::StatusOr<std::string> made = NewApiToken();
      if (!made.ok()) {
        std::cerr << "joulectl: " << made.status().message() << "\n";
        return kExitServer;
      }
      std::optional<absl::Time> expires;
      if (token_valid_h > 0) expires = absl::Now() + absl::Hours(token_valid_h);
      std::cout << "token: " << *made << "\n"
                << "tokens-file line: " << TokenFileLine(*made, token_user, token_role, expires)
                << "\n";
      return kExitOk;
    };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    code = app.exit(error);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (local_action) return local_action();
  if (absl::Status resolved = ResolveConnection(&globals); !resolved.ok()) {
    std::cerr << "joulectl: " << resolved.message() << "\n";
    return kExitUsage;
  }
  absl::StatusOr<std::unique_ptr<LeaderChannel>> channel = LeaderChannel::Create(
      globals.connection.scheduler, RealClock::Get(), Client::Options(globals));
  if (!channel.ok()) {
    std::cerr << "joulectl: " << channel.status().message() << "\n";
    return kExitUsage;
  }
  Client client(globals, *std::move(channel));
  return action(client);
}

}  // namespace
}  // namespace joule

int main(int argc, char** argv) { return joule::Main(argc, argv); }
