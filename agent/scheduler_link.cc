#include "agent/scheduler_link.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "common/leader_redirect.h"
#include "common/log.h"

namespace joule {
namespace {

constexpr size_t kMaxQueuedMessages = 10000;
constexpr absl::Duration kMinBackoff = absl::Milliseconds(100);
// A new leader must see its agents back within about 2 s.
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);

std::vector<std::string> AddressList(const std::string& targets) {
  std::vector<std::string> list = SchedulerTargets::SplitAddressList(targets);
  // An empty flag: keep it as given, to fail and be logged like any
  // unreachable address.
  if (list.empty()) list.push_back(targets);
  return list;
}

}  // namespace

SchedulerLink::SchedulerLink(std::string targets, const Clock* clock,
                             RegisterFn make_register, CommandFn on_command)
    : clock_(clock),
      make_register_(std::move(make_register)),
      on_command_(std::move(on_command)),
      targets_(AddressList(targets)) {}
SchedulerLink::~SchedulerLink() { Stop(); }

void SchedulerLink::UseCredentials(std::shared_ptr<grpc::ChannelCredentials> credentials,
                                   std::string server_name) {
  credentials_ = std::move(credentials);
  server_name_ = std::move(server_name);
}

void SchedulerLink::Start() { thread_ = std::thread([this] { Run(); }); }

void SchedulerLink::Stop() {
  stopping_ = true;
  {
    absl::MutexLock lock(&mu_);
    if (context_ != nullptr) context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

bool SchedulerLink::connected() const {
  absl::MutexLock lock(&mu_);
  return connected_;
}

void SchedulerLink::Send(const v1::AgentMessage& message) {
  absl::MutexLock lock(&mu_);
  if (!connected_ || queue_.size() >= kMaxQueuedMessages) return;
  queue_.push_back(message);
}

void SchedulerLink::WriteLoop(
    grpc::ClientReaderWriter<v1::AgentMessage, v1::SchedulerCommand>* stream) {
  while (true) {
    v1::AgentMessage message;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || !connected_;
      };
      mu_.Await(absl::Condition(&ready));
      if (!connected_) return;
      message = std::move(queue_.front());
      queue_.pop_front();
    }
    if (!stream->Write(message)) return;
  }
}

v1::AgentService::Stub* SchedulerLink::StubFor(const std::string& target) {
  std::unique_ptr<v1::AgentService::Stub>& stub = stubs_[target];
  if (stub == nullptr) {
    grpc::ChannelArguments args;
    SetFailoverChannelArgs(&args);
    if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
    stub = v1::AgentService::NewStub(grpc::CreateCustomChannel(
        target, credentials_ != nullptr ? credentials_ : grpc::InsecureChannelCredentials(),
        args));
  }
  return stub.get();
}

void SchedulerLink::Run() {
  absl::BitGen bitgen;
  absl::Duration backoff = kMinBackoff;
  SchedulerTargets::Next next = SchedulerTargets::Next::kRetryNow;
  bool first = true;
  while (!stopping_) {
    if (!first) {
      // A hinted leader or an untried replica is worth trying almost at
      // once; a round of failures backs off. Jitter spreads the reconnects
      // of many agents after a restart.
      const bool back_off = next == SchedulerTargets::Next::kBackOff;
      const absl::Duration wait =
          (back_off ? backoff : kMinBackoff) * absl::Uniform(bitgen, 0.5, 1.0);
      const absl::Time until = clock_->Now() + wait;
      while (!stopping_ && clock_->Now() < until) {
        absl::SleepFor(absl::Milliseconds(20));
      }
      if (back_off) backoff = std::min(backoff * 2, kMaxBackoff);
      ++reconnects_;
      if (stopping_) break;
    }
    first = false;
    const std::string hint = RunStream(targets_.current(), &backoff);
    if (stopping_) break;
    next = targets_.OnFailure(hint);
  }
}

std::string SchedulerLink::RunStream(const std::string& target, absl::Duration* backoff) {
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    context_ = &context;
  }
  if (stopping_) context.TryCancel();  // Stop() ran before context_ was set
  auto stream = StubFor(target)->Connect(&context);
  // Queue from before the Register is taken, so that nothing that happens
  // in between (a task exit) falls between the snapshot and the stream;
  // the writer sends the queue only after the Register.
  {
    absl::MutexLock lock(&mu_);
    connected_ = true;
  }
  v1::AgentMessage hello;
  *hello.mutable_register_() = make_register_();
  std::thread writer;
  if (stream->Write(hello)) {
    writer = std::thread([this, s = stream.get()] { WriteLoop(s); });
  }
  // Read to the end even when the Register could not be written: Finish()
  // then returns the scheduler's status and trailing metadata (a standby's
  // refusal names the leader there).
  v1::SchedulerCommand command;
  bool acked = false;
  while (stream->Read(&command)) {
    if (!acked && command.has_register_ack()) {
      acked = true;
      *backoff = kMinBackoff;
      targets_.OnLeaderReached();
      JLOG(INFO) << "registered with the scheduler at " << target;
    }
    on_command_(command);
  }
  {
    absl::MutexLock lock(&mu_);
    connected_ = false;
    queue_.clear();
    context_ = nullptr;
  }
  if (writer.joinable()) writer.join();
  const grpc::Status status = stream->Finish();
  const std::string hint = LeaderHint(context);
  if (stopping_) return hint;
  if (!hint.empty()) {
    JLOG(INFO) << "the scheduler at " << target << " is not the leader ("
               << status.error_message() << "); reconnecting to " << hint;
  } else {
    JLOG(WARNING) << "scheduler stream to " << target << " ended: "
                  << status.error_message() << " (code " << status.error_code()
                  << "); reconnecting";
  }
  return hint;
}

}  // namespace joule
