#ifndef JOULE_TESTS_LOAD_SWARM_STREAM_H_
#define JOULE_TESTS_LOAD_SWARM_STREAM_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/agent.grpc.pb.h"

namespace joule {

// Counts, across all the swarm's streams, how many have registered and how
// many have ended, so the driver can wait for "all registered" or "all
// closed" without polling each stream.
//
// Thread-safe; state guarded by mu_.
class SwarmProgress {
 public:
  void OnRegistered();
  // A stream whose read side ended before it ever registered.
  void OnEndedUnregistered();
  void OnDone();

  // Waits until `count` streams have registered, or `count` streams have
  // either registered or ended without registering (nothing more will come),
  // or `timeout` passes. Returns the number registered.
  int AwaitRegistered(int count, absl::Duration timeout);
  // Waits until `count` streams have ended or `timeout` passes. Returns the
  // number ended.
  int AwaitDone(int count, absl::Duration timeout);

 private:
  absl::Mutex mu_;
  int registered_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_unregistered_ ABSL_GUARDED_BY(mu_) = 0;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
};

// What a node of the swarm looks like: `gpus` simulated V100s with power
// limits 100/250/250 W (min/default/max) and 35 W idle, on a node with 8
// CPUs, 16 GiB and 100 W of static power.
v1::NodeInfo SwarmNodeInfo(const std::string& name, int gpus = 4);

// One simulated agent: a single agent stream opened with the gRPC callback
// client API, speaking the protocol a real joule-agent speaks.
//
//   1. Start() sends Register and starts reading; the stream is registered
//      when the scheduler's register_ack arrives (the latency from Start to
//      the ack is kept).
//   2. SendTelemetry() writes one NodeSample, unless the previous write is
//      still in flight: at most one write is outstanding, and a sample that
//      would have to wait is skipped (a newer one supersedes it anyway).
//   3. Every command read is counted; the reader re-arms itself until the
//      scheduler ends the stream.
//   4. Close() half-closes (WritesDone, after any write in flight) and
//      releases the hold that keeps the call alive for writes from outside
//      reactions; OnDone then reports the final status.
//
// The object must outlive OnDone (wait for SwarmProgress::AwaitDone, or
// TryCancel and wait, before destroying it).
//
// Thread-safe: Start/SendTelemetry/Close come from the driver thread,
// reactions from gRPC's callback threads; state guarded by mu_. Reactions
// never run inline from StartWrite/StartWritesDone/RemoveHold in the
// callback API, so those are called with mu_ held.
class SwarmStream
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::SchedulerCommand> {
 public:
  enum class SendResult { kSent, kBusy, kNotReady };

  // A node with `gpus` GPUs, each reported in every telemetry sample.
  SwarmStream(std::string node_name, v1::AgentService::Stub* stub, const Clock* clock,
              SwarmProgress* progress, int gpus = 4);

  void Start();
  SendResult SendTelemetry();
  void Close();
  // Cancels the call; used only when a stream does not end after Close.
  void Cancel() { context_.TryCancel(); }

  // Results; read once the stream is done.
  struct Stats {
    bool registered = false;
    std::optional<absl::Duration> register_latency;
    // The stream ended (read side closed) before Close was called.
    bool ended_early = false;
    bool done = false;
    // OnDone came after Close, with an OK status.
    bool closed_ok = false;
    std::string final_status;
    int64_t commands = 0;
    int64_t telemetry_sent = 0;
    int64_t telemetry_written = 0;
    int64_t write_failures = 0;
    // The time stamp of the last telemetry sample sent (its NodeSample.time).
    std::optional<absl::Time> last_sample_time;
  };
  Stats stats() const;

  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  void BuildTelemetryLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartWritesDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string node_name_;
  const int gpus_;
  v1::AgentService::Stub* const stub_;
  const Clock* const clock_;
  SwarmProgress* const progress_;
  grpc::ClientContext context_;
  // Reads are sequential: only the read reaction touches it.
  v1::SchedulerCommand incoming_;

  mutable absl::Mutex mu_;
  // The message being written; only touched while no write is in flight.
  v1::AgentMessage outgoing_ ABSL_GUARDED_BY(mu_);
  absl::Time start_time_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_started_ ABSL_GUARDED_BY(mu_) = false;
  bool read_ended_ ABSL_GUARDED_BY(mu_) = false;
  double energy_j_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<absl::Time> last_sample_time_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule

#endif  // JOULE_TESTS_LOAD_SWARM_STREAM_H_
