#include "tests/load/swarm_stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"

namespace joule {
namespace {

constexpr int kCpus = 8;
constexpr int64_t kMemoryBytes = int64_t{16} << 30;
constexpr double kStaticPowerW = 100;
constexpr double kPowerLimitMinW = 100;
constexpr double kPowerLimitDefaultW = 250;
constexpr double kPowerLimitMaxW = 250;
constexpr double kIdlePowerW = 35;
constexpr int64_t kV100MemoryBytes = int64_t{32} << 30;

// An idle-ish V100: a little above idle power, cool, lightly used.
constexpr double kSamplePowerW = 42;
constexpr double kSampleTempC = 38;
constexpr double kSampleUtilization = 0.05;

}  // namespace

void SwarmProgress::OnRegistered() {
  absl::MutexLock lock(&mu_);
  ++registered_;
}

void SwarmProgress::OnEndedUnregistered() {
  absl::MutexLock lock(&mu_);
  ++ended_unregistered_;
}

void SwarmProgress::OnDone() {
  absl::MutexLock lock(&mu_);
  ++done_;
}

int SwarmProgress::AwaitRegistered(int count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto settled = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return registered_ + ended_unregistered_ >= count;
  };
  mu_.AwaitWithTimeout(absl::Condition(&settled), timeout);
  return registered_;
}

int SwarmProgress::AwaitDone(int count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto all_done = [this, count]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ >= count; };
  mu_.AwaitWithTimeout(absl::Condition(&all_done), timeout);
  return done_;
}

v1::NodeInfo SwarmNodeInfo(const std::string& name, int gpus) {
  v1::NodeInfo node;
  node.set_name(name);
  (*node.mutable_labels())["joule.dev/load-test"] = "agent_swarm";
  for (int i = 0; i < gpus; ++i) {
    v1::Device* device = node.add_devices();
    device->set_index(i);
    device->set_kind(v1::DEVICE_KIND_GPU);
    device->set_model("V100");
    device->set_uuid(absl::StrCat("GPU-", name, "-", i));
    device->set_memory_bytes(kV100MemoryBytes);
    device->set_power_limit_min_w(kPowerLimitMinW);
    device->set_power_limit_default_w(kPowerLimitDefaultW);
    device->set_power_limit_max_w(kPowerLimitMaxW);
    device->set_idle_power_w(kIdlePowerW);
    device->set_source("simulated");
  }
  node.set_cpus(kCpus);
  node.set_memory_bytes(kMemoryBytes);
  node.set_static_power_w(kStaticPowerW);
  node.set_agent_version("agent_swarm");
  return node;
}

SwarmStream::SwarmStream(std::string node_name, v1::AgentService::Stub* stub,
                         const Clock* clock, SwarmProgress* progress, int gpus)
    : node_name_(std::move(node_name)),
      gpus_(gpus),
      stub_(stub),
      clock_(clock),
      progress_(progress) {}

void SwarmStream::Start() {
  stub_->async()->Connect(&context_, this);
  absl::MutexLock lock(&mu_);
  *outgoing_.mutable_register_()->mutable_node() = SwarmNodeInfo(node_name_, gpus_);
  start_time_ = clock_->Now();
  writing_ = true;
  StartWrite(&outgoing_);
  StartRead(&incoming_);
  // Telemetry and WritesDone are started from the driver thread, outside
  // any reaction: the hold keeps the call alive until Close releases it.
  AddHold();
  StartCall();
}

SwarmStream::SendResult SwarmStream::SendTelemetry() {
  absl::MutexLock lock(&mu_);
  if (!stats_.registered || closing_ || read_ended_) return SendResult::kNotReady;
  if (writing_) return SendResult::kBusy;
  BuildTelemetryLocked(clock_->Now());
  writing_ = true;
  ++stats_.telemetry_sent;
  StartWrite(&outgoing_);
  return SendResult::kSent;
}

void SwarmStream::Close() {
  absl::MutexLock lock(&mu_);
  if (closing_) return;
  closing_ = true;
  // Write and WritesDone may not overlap; OnWriteDone finishes the job.
  if (!writing_) StartWritesDoneLocked();
}

void SwarmStream::StartWritesDoneLocked() {
  if (writes_done_started_) return;
  writes_done_started_ = true;
  StartWritesDone();
  RemoveHold();
}

void SwarmStream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  if (!ok) {
    ++stats_.write_failures;
  } else if (outgoing_.has_telemetry()) {
    ++stats_.telemetry_written;
  }
  if (closing_) StartWritesDoneLocked();
}

void SwarmStream::OnReadDone(bool ok) {
  bool registered_now = false;
  bool ended_unregistered = false;
  {
    absl::MutexLock lock(&mu_);
    if (!ok) {
      // The scheduler ended the stream (after our WritesDone, or on its own).
      read_ended_ = true;
      stats_.ended_early = !closing_;
      ended_unregistered = !stats_.registered;
    } else {
      ++stats_.commands;
      if (incoming_.has_register_ack() && !stats_.registered) {
        stats_.registered = true;
        stats_.register_latency = clock_->Now() - start_time_;
        registered_now = true;
      }
    }
  }
  if (registered_now) progress_->OnRegistered();
  if (ended_unregistered) progress_->OnEndedUnregistered();
  if (ok) StartRead(&incoming_);
}

void SwarmStream::OnDone(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    stats_.done = true;
    stats_.closed_ok = closing_ && status.ok();
    stats_.final_status = status.ok() ? "OK"
                                      : absl::StrCat("code ", status.error_code(), ": ",
                                                     status.error_message());
  }
  // Last: once every stream is done the driver may destroy this object.
  progress_->OnDone();
}

SwarmStream::Stats SwarmStream::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats = stats_;
  stats.last_sample_time = last_sample_time_;
  return stats;
}

void SwarmStream::BuildTelemetryLocked(absl::Time now) {
  if (last_sample_time_.has_value()) {
    energy_j_ += kSamplePowerW * absl::ToDoubleSeconds(now - *last_sample_time_);
  }
  last_sample_time_ = now;
  outgoing_.Clear();
  v1::NodeSample* sample = outgoing_.mutable_telemetry();
  *sample->mutable_time() = ToProtoTime(now);
  for (int i = 0; i < gpus_; ++i) {
    v1::DeviceSample* device = sample->add_devices();
    device->set_index(i);
    device->set_kind(v1::DEVICE_KIND_GPU);
    device->set_power_w(kSamplePowerW);
    device->set_energy_j(energy_j_);
    device->set_temp_c(kSampleTempC);
    device->set_utilization(kSampleUtilization);
    device->set_power_cap_w(kPowerLimitDefaultW);
    device->set_source("simulated");
  }
  sample->set_node_power_w(gpus_ * kSamplePowerW + kStaticPowerW);
}

}  // namespace joule
