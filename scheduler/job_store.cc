#include "scheduler/job_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace joule {
namespace {

constexpr char kJobKeyPrefix[] = "jobs/";

StoreMutation PutOf(const v1::Job& job) {
  return StoreMutation{StoreMutation::Op::kPut, absl::StrCat(kJobKeyPrefix, job.id()),
                       job.SerializeAsString()};
}

}  // namespace

JobStore::JobStore(Store* store, GroupCommitWriterOptions options, absl::Mutex* owner_mu)
    : owner_mu_(owner_mu),
      inline_commits_(options.inline_commits),
      writer_(std::make_unique<GroupCommitWriter>(store, options)) {}

JobStore::~JobStore() { writer_.reset(); }

absl::StatusOr<std::vector<v1::Job>> JobStore::LoadJobs(const Store& source) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> entries =
      source.List(kJobKeyPrefix);
  if (!entries.ok()) return entries.status();
  std::vector<v1::Job> jobs;
  jobs.reserve(entries->size());
  for (const auto& [key, value] : *entries) {
    if (!jobs.emplace_back().ParseFromString(value)) {
      return absl::DataLossError(absl::StrCat("stored job ", key, " does not parse"));
    }
  }
  return jobs;
}

GroupCommitWriter::Done JobStore::Locked(AfterWrite after) {
  if (inline_commits_) {
    // The completion runs inside Enqueue, whose caller holds owner_mu.
    return [this, after = std::move(after)](const absl::Status& status) {
      owner_mu_->AssertHeld();
      after(status);
    };
  }
  return [this, after = std::move(after)](const absl::Status& status) {
    absl::MutexLock lock(owner_mu_);
    after(status);
  };
}

absl::Status JobStore::Put(const v1::Job& job, AfterWrite after) {
  return WriteJobKey(job.id(), PutOf(job), std::move(after));
}

absl::Status JobStore::PutNew(const v1::Job& job, AfterWrite after) {
  return writer_
      ->Enqueue({PutOf(job)},
                Locked([this, job_id = job.id(), after = std::move(after)](
                           const absl::Status& status) {
                  owner_mu_->AssertHeld();
                  if (status.ok()) {
                    refusing_ = false;
                  } else {
                    MarkUnstored(job_id, status);
                  }
                  after(status);
                }))
      .status();
}

absl::Status JobStore::WriteJobKey(const std::string& job_id, StoreMutation mutation,
                                   AfterWrite after) {
  const int64_t write = next_write_++;
  // Counted before Enqueue: with inline commits the outcome comes inside it.
  Writes& writes = writes_[job_id];
  writes.latest = write;
  ++writes.in_flight;
  absl::StatusOr<GroupCommitWriter::Ticket> queued = writer_->Enqueue(
      {std::move(mutation)},
      Locked([this, job_id, write, after = std::move(after)](const absl::Status& status) {
        owner_mu_->AssertHeld();
        Written(job_id, write, status);
        if (after) after(status);
      }));
  if (queued.ok()) return absl::OkStatus();
  // Refused outright, so never on its way. It stays the latest write: an
  // older one that succeeds does not make the job stored.
  auto it = writes_.find(job_id);
  if (it != writes_.end() && --it->second.in_flight == 0) writes_.erase(it);
  MarkUnstored(job_id, queued.status());
  return queued.status();
}

void JobStore::Written(const std::string& job_id, int64_t write, const absl::Status& status) {
  bool latest = true;
  if (auto it = writes_.find(job_id); it != writes_.end()) {
    latest = it->second.latest == write;
    if (--it->second.in_flight == 0) writes_.erase(it);
  }
  if (!status.ok()) {
    MarkUnstored(job_id, status);
    return;
  }
  refusing_ = false;
  // Writes are done in the order they were queued: a newer state of the
  // job is still on its way, and its outcome decides.
  if (!latest) return;
  unstored_.erase(job_id);
  if (!error_.ok() && unstored_.empty()) {
    JLOG(INFO) << "store writes succeed again; every job is stored";
    error_ = absl::OkStatus();
  }
}

void JobStore::MarkUnstored(const std::string& job_id, const absl::Status& status) {
  unstored_.insert(job_id);
  // A value refused outright concerns only its own job; anything else
  // (etcd down, this scheduler fenced, a failed fsync) every write alike.
  if (!absl::IsInvalidArgument(status)) refusing_ = true;
  // Once per failure streak: an etcd restart would otherwise log every job
  // at every tick.
  if (error_.ok()) {
    JLOG(ERROR) << "storing job " << job_id << " failed: " << status
                << "; jobs are kept in memory, written again at each tick until "
                   "the store takes them, and no task is started meanwhile";
  }
  error_ = status;
}

void JobStore::PutState(StoreMutation mutation, std::string what) {
  // Nobody waits for these: the failure is logged where it happens.
  absl::StatusOr<GroupCommitWriter::Ticket> queued =
      writer_->Enqueue({std::move(mutation)}, [what](const absl::Status& status) {
        if (!status.ok()) JLOG(ERROR) << what << ": " << status;
      });
  if (!queued.ok()) JLOG(ERROR) << what << ": " << queued.status();
}

void JobStore::WriteUnstored(absl::FunctionRef<const v1::Job*(const std::string&)> current) {
  const std::vector<std::string> ids(unstored_.begin(), unstored_.end());
  for (const std::string& id : ids) {
    // A write of the job is on its way; its outcome decides.
    if (writes_.contains(id)) continue;
    const v1::Job* job = current(id);
    // A submission the store refused: nobody was told its id, and its
    // write may have landed all the same (an unknown outcome), so the store
    // must forget it rather than recover it after a restart.
    const absl::Status queued =
        job != nullptr
            ? Put(*job)
            : WriteJobKey(id,
                          StoreMutation{StoreMutation::Op::kDelete,
                                        absl::StrCat(kJobKeyPrefix, id), ""},
                          nullptr);
    // A store that is down refuses every job alike (and each try may wait
    // out a timeout): while it does, one write per call asks whether it is
    // back. A value the store refuses outright concerns only its own job
    // and never reached the store, so it asks nothing: the next job does.
    if (refusing_ && !absl::IsInvalidArgument(queued)) break;
  }
}

bool JobStore::Unsettled(const std::string& job_id) const {
  return unstored_.count(job_id) > 0 || writes_.contains(job_id);
}

}  // namespace joule
