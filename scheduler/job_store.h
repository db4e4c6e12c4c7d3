#ifndef JOULE_SCHEDULER_JOB_STORE_H_
#define JOULE_SCHEDULER_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "joule/v1/job.pb.h"
#include "scheduler/store/group_commit_writer.h"
#include "scheduler/store/store.h"

namespace joule {

// The job store: how the scheduler's jobs (and the other state it learns)
// reach the store, and which jobs the store does not have yet.
//
// 1. Every change of a job is queued, under the owner's lock, to a
//    GroupCommitWriter (Put), which commits what was queued meanwhile in
//    one fsync or etcd transaction on its own thread.
// 2. Each job's writes are numbered: the store has the job once its latest
//    write succeeded. A failed write marks the job unstored; a newer write
//    still on its way decides over an older one's success.
// 3. WriteUnstored (from the scheduler's tick) writes every unstored job's
//    current state again; while the store refuses writes (down, or this
//    scheduler fenced) one job per call asks whether it is back, and
//    refusing() tells the scheduler not to place meanwhile.
// 4. A new job's first write (PutNew) answers its submitter from its
//    completion, so that concurrent submissions share one commit and no
//    thread waits for it.
//
// Threading: thread-compatible, guarded by the owner's mutex (`owner_mu`,
// the scheduler's lock): every method except Flush is called with it held.
// The completions of its writes (and their `after` callbacks) run with
// owner_mu held: on the writer's thread, which takes it, or, with inline
// commits, inside Put, whose caller holds it. Lock order: owner_mu, then
// the writer's own lock.
class JobStore {
 public:
  // Runs with owner_mu held once a write is done.
  using AfterWrite = std::function<void(const absl::Status&)>;

  // Every write goes to `store`, which must outlive this object.
  JobStore(Store* store, GroupCommitWriterOptions options, absl::Mutex* owner_mu);
  // Writes whatever is still queued and runs its completions, which take
  // owner_mu: call without it, and before the state the completions use
  // goes.
  ~JobStore();

  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Every job `source` holds, in key order. DATA_LOSS names a stored job
  // that does not parse: corruption is refused, never skipped.
  static absl::StatusOr<std::vector<v1::Job>> LoadJobs(const Store& source);

  // Queues the job's current state; the outcome is recorded, then `after`
  // runs. A state the store refuses outright (INVALID_ARGUMENT, e.g. too
  // large) is never queued: the job is marked unstored, `after` does not
  // run, and the error is returned.
  absl::Status Put(const v1::Job& job, AfterWrite after = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_);
  // A new job's first write; `after` runs once it is done. A failed write
  // marks the job unstored: nobody learns its id, and the write's outcome
  // is unknown, so WriteUnstored deletes whatever of it may have landed. A
  // job the store refuses outright is not queued and not marked: the error
  // is returned and `after` does not run.
  absl::Status PutNew(const v1::Job& job, AfterWrite after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_);
  // Queues a write of state that is not a job (power profiles, batch-size
  // bandits, run costs, suspended nodes); a failure is logged as `what`:
  // that state is learned again, and its next change writes it again.
  void PutState(StoreMutation mutation, std::string what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_);

  // Writes every unstored job again: `current(id)` gives a job's latest
  // state, or null for a refused submission (deleted instead). Jobs with a
  // write on its way wait for its outcome.
  void WriteUnstored(absl::FunctionRef<const v1::Job*(const std::string&)> current)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_);

  // Whether the store may not have the job's latest state: unstored, or a
  // write of it on its way.
  bool Unsettled(const std::string& job_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_);
  // Whether the last write the store answered failed for a reason that
  // concerns every write (not one refused value): nothing is placed
  // meanwhile.
  bool refusing() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_) { return refusing_; }
  // The latest write error (OK once every job is stored again) and how
  // many jobs differ from their stored state.
  absl::Status last_error() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_) { return error_; }
  int unstored_jobs() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_) {
    return static_cast<int>(unstored_.size());
  }

  // Blocks until every write queued before the call is done and its
  // completion has run; without owner_mu.
  void Flush() ABSL_LOCKS_EXCLUDED(*owner_mu_) { writer_->Flush(); }
  GroupCommitWriter::Stats stats() const { return writer_->GetStats(); }

 private:
  // The writer's completion for a write queued under owner_mu: runs `after`
  // with owner_mu held.
  GroupCommitWriter::Done Locked(AfterWrite after);
  // Any mutation of the job's key, numbered and counted in writes_.
  absl::Status WriteJobKey(const std::string& job_id, StoreMutation mutation, AfterWrite after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_);
  // The store answered write `write` of `job_id`.
  void Written(const std::string& job_id, int64_t write, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_);
  void MarkUnstored(const std::string& job_id, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(*owner_mu_);

  absl::Mutex* const owner_mu_;
  const bool inline_commits_;
  // Jobs whose in-memory state the store does not have (a failed write;
  // for a refused submission, its absence).
  std::set<std::string> unstored_ ABSL_GUARDED_BY(*owner_mu_);
  absl::Status error_ ABSL_GUARDED_BY(*owner_mu_);
  bool refusing_ ABSL_GUARDED_BY(*owner_mu_) = false;
  // Per job: the number of its latest write, and how many are on their way.
  struct Writes {
    int64_t latest = 0;
    int in_flight = 0;
  };
  absl::flat_hash_map<std::string, Writes> writes_ ABSL_GUARDED_BY(*owner_mu_);
  int64_t next_write_ ABSL_GUARDED_BY(*owner_mu_) = 1;
  // Last, so that it is destroyed first: its destructor runs the last
  // completions, which use the state above.
  std::unique_ptr<GroupCommitWriter> writer_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_JOB_STORE_H_
