#include "agent/scheduler_link.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "common/log.h"

namespace joule {
namespace {

constexpr size_t kMaxQueuedMessages = 10000;
constexpr absl::Duration kMinBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(5);

}  // namespace

SchedulerLink::SchedulerLink(std::string target, const Clock* clock,
                             RegisterFn make_register, CommandFn on_command)
    : target_(std::move(target)),
      clock_(clock),
      make_register_(std::move(make_register)),
      on_command_(std::move(on_command)) {}

SchedulerLink::~SchedulerLink() { Stop(); }

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

void SchedulerLink::Run() {
  absl::BitGen bitgen;
  absl::Duration backoff = kMinBackoff;
  auto channel = grpc::CreateChannel(target_, grpc::InsecureChannelCredentials());
  auto stub = v1::AgentService::NewStub(channel);
  bool first = true;
  while (!stopping_) {
    if (!first) {
      // Jitter spreads the reconnects of many agents after a restart.
      const absl::Duration wait = backoff * absl::Uniform(bitgen, 0.5, 1.0);
      const absl::Time until = clock_->Now() + wait;
      while (!stopping_ && clock_->Now() < until) {
        absl::SleepFor(absl::Milliseconds(20));
      }
      backoff = std::min(backoff * 2, kMaxBackoff);
      ++reconnects_;
      if (stopping_) break;
    }
    first = false;
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      context_ = &context;
    }
    auto stream = stub->Connect(&context);
    // Queue from before the Register is taken, so that nothing that happens
    // in between (a task exit) falls between the snapshot and the stream;
    // the writer sends the queue only after the Register.
    {
      absl::MutexLock lock(&mu_);
      connected_ = true;
    }
    v1::AgentMessage hello;
    *hello.mutable_register_() = make_register_();
    const bool ok = stream->Write(hello);
    std::thread writer;
    if (ok) {
      writer = std::thread([this, s = stream.get()] { WriteLoop(s); });
      v1::SchedulerCommand command;
      bool acked = false;
      while (stream->Read(&command)) {
        if (!acked && command.has_register_ack()) {
          acked = true;
          backoff = kMinBackoff;
          JLOG(INFO) << "registered with the scheduler at " << target_;
        }
        on_command_(command);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      connected_ = false;
      queue_.clear();
      context_ = nullptr;
    }
    if (writer.joinable()) writer.join();
    context.TryCancel();
    grpc::Status status = stream->Finish();
    if (!stopping_) {
      JLOG(WARNING) << "scheduler stream to " << target_ << " ended: "
                    << status.error_message() << " (code "
                    << status.error_code() << "); reconnecting";
    }
  }
}

}  // namespace joule
