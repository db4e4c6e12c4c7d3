#include "examples/task_contract.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace joule::examples {
namespace {


volatile sig_atomic_t g_termination_requested = 0;

void OnSigterm(int /*signo*/) { g_termination_requested = 1; }

}  // namespace

// ---------------------------------------------------------------------------
// Range lists.

std::set<int> ShardsWithin(const std::set<int>& shards, int shard_count,
                           std::set<int>* dropped) {
  std::set<int> kept;
  for (int shard : shards) {
    if (shard < shard_count) {
      kept.insert(shard);
    } else if (dropped != nullptr) {
      dropped->insert(shard);
    }
  }
  return kept;
}

// ---------------------------------------------------------------------------
// Environment.

// ---------------------------------------------------------------------------
// Progress file.

absl::StatusOr<ProgressWriter> ProgressWriter::Open(const std::string& path) {
  if (path.empty()) return ProgressWriter();
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                        0644);
  if (fd < 0) {
    const int err = errno;
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrFormat("cannot open progress file %s: %s",
                                        path, std::strerror(err)));
  }
  return ProgressWriter(fd);
}

ProgressWriter::ProgressWriter(ProgressWriter&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      total_(other.total_),
      latency_batch_(other.latency_batch_),
      latency_ms_(other.latency_ms_) {}

ProgressWriter& ProgressWriter::operator=(ProgressWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    total_ = other.total_;
    latency_batch_ = other.latency_batch_;
    latency_ms_ = other.latency_ms_;
  }
  return *this;
}

ProgressWriter::~ProgressWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status ProgressWriter::WriteLine(absl::string_view line) {
  if (fd_ < 0) return absl::OkStatus();
  // One write(2) per line: with O_APPEND the kernel places it atomically at
  // the end, so a concurrent reader sees whole lines.
  const std::string buffer = absl::StrCat(line, "\n");
  size_t written = 0;
  while (written < buffer.size()) {
    const ssize_t n =
        ::write(fd_, buffer.data() + written, buffer.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      return absl::Status(
          absl::ErrnoToStatusCode(err),
          absl::StrCat("writing progress file: ", std::strerror(err)));
    }
    written += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status ProgressWriter::Progress(int64_t samples, int64_t steps,
                                      std::optional<double> quality) {
  contract::ProgressEvent event;
  event.samples = samples;
  event.steps = steps;
  if (total_ > 0) event.total = total_;
  if (latency_batch_ > 0) {
    event.batch = latency_batch_;
    event.latency_ms = latency_ms_;
  }
  event.quality = quality;
  return WriteLine(contract::FormatProgress(event));
}

absl::Status ProgressWriter::ShardDone(int shard) {
  contract::ProgressEvent event;
  event.type = contract::ProgressEvent::Type::kShardDone;
  event.shard = shard;
  return WriteLine(contract::FormatProgress(event));
}

absl::Status ProgressWriter::TargetReached(std::optional<double> quality) {
  contract::ProgressEvent event;
  event.type = contract::ProgressEvent::Type::kTargetReached;
  event.quality = quality;
  return WriteLine(contract::FormatProgress(event));
}

MonotonicTime MonotonicNow() { return std::chrono::steady_clock::now(); }

int64_t WallTimeNanos() { return absl::GetCurrentTimeNanos(); }

bool ProgressThrottle::Ready(MonotonicTime now) {
  if (last_.has_value() && absl::FromChrono(now - *last_) < min_interval_) {
    return false;
  }
  last_ = now;
  return true;
}

void ProgressThrottle::MarkWritten(MonotonicTime now) { last_ = now; }

void ProgressReporter::Check(const absl::Status& status) {
  if (status.ok() || warned_) return;
  warned_ = true;
  std::fprintf(stderr,
               "warning: %s; further progress reports may be lost "
               "(the task keeps running)\n",
               std::string(status.message()).c_str());
}

bool ProgressReporter::IsRepeat(int64_t samples, int64_t steps,
                                std::optional<double> quality) const {
  return wrote_any_ && samples == last_samples_ && steps == last_steps_ &&
         (!quality.has_value() || quality == last_quality_);
}

void ProgressReporter::Remember(int64_t samples, int64_t steps,
                                std::optional<double> quality) {
  wrote_any_ = true;
  last_samples_ = samples;
  last_steps_ = steps;
  if (quality.has_value()) last_quality_ = quality;
}

void ProgressReporter::MaybeProgress(int64_t samples, int64_t steps,
                                     MonotonicTime now) {
  if (!writer_.enabled() || IsRepeat(samples, steps, std::nullopt) ||
      !throttle_.Ready(now)) {
    return;
  }
  Remember(samples, steps, std::nullopt);
  Check(writer_.Progress(samples, steps, std::nullopt));
}

void ProgressReporter::Progress(int64_t samples, int64_t steps,
                                std::optional<double> quality,
                                MonotonicTime now) {
  if (!writer_.enabled() || IsRepeat(samples, steps, quality)) return;
  throttle_.MarkWritten(now);
  Remember(samples, steps, quality);
  Check(writer_.Progress(samples, steps, quality));
}

void ProgressReporter::ShardDone(int shard) { Check(writer_.ShardDone(shard)); }

void ProgressReporter::TargetReached(std::optional<double> quality) {
  Check(writer_.TargetReached(quality));
}

// ---------------------------------------------------------------------------
// Hints.

bool HintsReader::Poll() {
  if (path_.empty()) return false;
  FileVersion version;
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0) {
    version.exists = true;
    version.inode = static_cast<uint64_t>(st.st_ino);
    version.size = static_cast<int64_t>(st.st_size);
    version.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                       st.st_mtim.tv_nsec;
  }
  const bool recent =
      version.exists &&
      WallTimeNanos() - version.mtime_ns < absl::ToInt64Nanoseconds(kRecentWindow);
  if (version == version_ && !recent) return false;

  std::optional<std::string> text;
  if (version.exists) {
    std::ifstream in(path_);
    if (!in) {
      // Raced with a rename or lost permission; try again on the next poll.
      version_ = FileVersion();
      return false;
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    text = buffer.str();
  }
  version_ = version;
  if (text == text_) return false;
  text_ = text;

  std::vector<std::string> warnings;
  Hints hints = text.has_value() ? ParseHints(*text, &warnings) : Hints();
  for (const std::string& warning : warnings) {
    std::fprintf(stderr, "warning: hints file %s: %s (ignored)\n",
                 path_.c_str(), warning.c_str());
  }
  if (hints == current_) return false;
  current_ = std::move(hints);
  return true;
}

// ---------------------------------------------------------------------------
// Live settings.

TaskSettings TaskSettings::FromEnv(const TaskEnv& env, int default_batch_size,
                                   int default_shard_count) {
  const int shard_count = env.shard_count.value_or(default_shard_count);
  std::set<int> shards;
  if (env.shards.has_value()) {
    shards = *env.shards;
  } else {
    for (int i = 0; i < shard_count; ++i) shards.insert(i);
  }
  return TaskSettings(env.batch_size.value_or(default_batch_size), shard_count,
                      std::move(shards));
}

TaskSettings::TaskSettings(int batch_size, int shard_count, std::set<int> shards)
    : start_batch_size_(batch_size),
      shard_count_(shard_count),
      batch_size_(batch_size),
      shards_(std::move(shards)) {}

void TaskSettings::Apply(const Hints& hints) {
  batch_size_ = hints.batch_size.value_or(start_batch_size_);
  device_speed_ = hints.device_speed.value_or(1.0);
  stop_ = hints.stop.value_or(false);
  if (hints.shards.has_value()) {
    std::set<int> dropped;
    shards_ = ShardsWithin(*hints.shards, shard_count_, &dropped);
    if (!dropped.empty()) {
      std::fprintf(stderr,
                   "warning: hints name shards %s, not below the shard count "
                   "%d (ignored)\n",
                   FormatRangeList(dropped).c_str(), shard_count_);
    }
  }
}

// ---------------------------------------------------------------------------
// Shard worklist.

ShardWorklist::ShardWorklist(const std::set<int>& owned) { SetOwned(owned); }

void ShardWorklist::SetOwned(const std::set<int>& owned) {
  owned_ = owned;
  pending_.clear();
  for (int shard : owned) {
    if (done_.count(shard) == 0 && current_ != shard) pending_.insert(shard);
  }
}

std::optional<int> ShardWorklist::Next() {
  if (current_.has_value()) return current_;
  if (pending_.empty()) return std::nullopt;
  current_ = *pending_.begin();
  pending_.erase(pending_.begin());
  return current_;
}

void ShardWorklist::FinishCurrent() {
  if (!current_.has_value()) return;
  done_.insert(*current_);
  current_.reset();
}

// ---------------------------------------------------------------------------
// Simulated accelerator time.

absl::Duration EmulatedStepSleep(double sim_step_ms, int batch_size,
                                 double device_speed,
                                 absl::Duration compute_time) {
  if (!(sim_step_ms > 0.0) || batch_size <= 0) return absl::ZeroDuration();
  // A speed of 0 would mean an infinitely slow device; the hints parser
  // already rejects it, this is the last line of defence.
  const double speed =
      std::isfinite(device_speed) ? std::clamp(device_speed, 0.01, 1.0) : 1.0;
  const double target_ms = sim_step_ms * (batch_size / 64.0) / speed;
  const absl::Duration remaining =
      absl::Microseconds(target_ms * 1000.0) - compute_time;
  return remaining > absl::ZeroDuration() ? remaining : absl::ZeroDuration();
}

// ---------------------------------------------------------------------------
// Termination.

void InstallTerminationHandler() {
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = OnSigterm;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(SIGTERM, &action, nullptr);
}

bool TerminationRequested() { return g_termination_requested != 0; }

// ---------------------------------------------------------------------------
// Flags.

void FlagSet::Add(const std::string& name, Kind kind, void* target,
                  const std::string& help, std::string default_text) {
  flags_[name] = Flag{kind, target, help, std::move(default_text)};
}

void FlagSet::AddInt(const std::string& name, int* target,
                     const std::string& help) {
  Add(name, Kind::kInt, target, help, absl::StrCat(*target));
}

void FlagSet::AddInt64(const std::string& name, int64_t* target,
                       const std::string& help) {
  Add(name, Kind::kInt64, target, help, absl::StrCat(*target));
}

void FlagSet::AddDouble(const std::string& name, double* target,
                        const std::string& help) {
  Add(name, Kind::kDouble, target, help, absl::StrCat(*target));
}

void FlagSet::AddString(const std::string& name, std::string* target,
                        const std::string& help) {
  Add(name, Kind::kString, target, help, absl::StrCat("\"", *target, "\""));
}

void FlagSet::AddBool(const std::string& name, bool* target,
                      const std::string& help) {
  Add(name, Kind::kBool, target, help, *target ? "true" : "false");
}

void FlagSet::AddOptionalDouble(const std::string& name,
                                std::optional<double>* target,
                                const std::string& help) {
  Add(name, Kind::kOptionalDouble, target, help,
      target->has_value() ? absl::StrCat(**target) : "unset");
}

absl::Status FlagSet::Assign(const std::string& name, const Flag& flag,
                             absl::string_view value) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "flag --%s: \"%s\" is not %s", name, value, what));
  };
  switch (flag.kind) {
    case Kind::kInt:
      if (!absl::SimpleAtoi(value, static_cast<int*>(flag.target))) {
        return bad("an integer");
      }
      break;
    case Kind::kInt64:
      if (!absl::SimpleAtoi(value, static_cast<int64_t*>(flag.target))) {
        return bad("an integer");
      }
      break;
    case Kind::kDouble: {
      double parsed;
      if (!absl::SimpleAtod(value, &parsed) || !std::isfinite(parsed)) {
        return bad("a finite number");
      }
      *static_cast<double*>(flag.target) = parsed;
      break;
    }
    case Kind::kOptionalDouble: {
      double parsed;
      if (!absl::SimpleAtod(value, &parsed) || !std::isfinite(parsed)) {
        return bad("a finite number");
      }
      *static_cast<std::optional<double>*>(flag.target) = parsed;
      break;
    }
    case Kind::kString:
      *static_cast<std::string*>(flag.target) = std::string(value);
      break;
    case Kind::kBool:
      if (!absl::SimpleAtob(value, static_cast<bool*>(flag.target))) {
        return bad("a boolean");
      }
      break;
  }
  set_.insert(name);
  return absl::OkStatus();
}

absl::Status FlagSet::Parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (!absl::ConsumePrefix(&arg, "--") || arg.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unexpected argument \"%s\" (flags look like --name=value)", argv[i]));
    }
    std::string name;
    std::optional<absl::string_view> value;
    if (const size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = arg.substr(eq + 1);
    } else {
      name = std::string(arg);
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("unknown flag --%s (see --help)", name));
    }
    if (!value.has_value()) {
      if (it->second.kind == Kind::kBool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrFormat("flag --%s needs a value", name));
      }
    }
    absl::Status status = Assign(name, it->second, *value);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string usage = absl::StrCat("usage: ", program_, " [flags]\n");
  for (const auto& [name, flag] : flags_) {
    absl::StrAppendFormat(&usage, "  --%s  %s (default %s)\n", name, flag.help,
                          flag.default_text);
  }
  return usage;
}

absl::Status ValidateWorkloadFlags(int batch_size, int shards,
                                   int64_t samples_per_shard, double sim_step_ms) {
  if (batch_size < 1 || batch_size > kMaxBatchSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("flag --batch-size must be in 1..%d", kMaxBatchSize));
  }
  if (shards < 1 || shards > kMaxShardCount) {
    return absl::InvalidArgumentError(
        absl::StrFormat("flag --shards must be in 1..%d", kMaxShardCount));
  }
  if (samples_per_shard < 1 || samples_per_shard > 10'000'000) {
    return absl::InvalidArgumentError(
        "flag --samples-per-shard must be in 1..10000000");
  }
  if (sim_step_ms < 0.0) {
    return absl::InvalidArgumentError("flag --sim-step-ms must not be negative");
  }
  return absl::OkStatus();
}

WorkloadStart StartWorkload(const std::string& program, FlagSet& flags,
                            int argc, char** argv,
                            const std::function<absl::Status()>& validate_config) {
  WorkloadStart start;
  auto fail = [&](const std::string& prefix, const absl::Status& status) {
    std::fprintf(stderr, "%s: %s%s\n", program.c_str(), prefix.c_str(),
                 std::string(status.message()).c_str());
    start.exit_code = kExitUsage;
    return std::move(start);
  };
  if (absl::Status status = flags.Parse(argc, argv); !status.ok()) {
    return fail("", status);
  }
  if (flags.help_requested()) {
    std::printf("%s", flags.Usage().c_str());
    start.exit_code = kExitOk;
    return start;
  }
  if (absl::Status status = validate_config(); !status.ok()) return fail("", status);
  absl::StatusOr<TaskEnv> env = ReadTaskEnv();
  if (!env.ok()) return fail("", env.status());
  start.env = *std::move(env);
  absl::StatusOr<ProgressWriter> writer = ProgressWriter::Open(start.env.progress_file);
  if (!writer.ok()) return fail("JOULE_PROGRESS_FILE: ", writer.status());
  start.writer = *std::move(writer);
  return start;
}

}  // namespace joule::examples
