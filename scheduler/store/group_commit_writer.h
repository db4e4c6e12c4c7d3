#ifndef JOULE_SCHEDULER_STORE_GROUP_COMMIT_WRITER_H_
#define JOULE_SCHEDULER_STORE_GROUP_COMMIT_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/store/store.h"

namespace joule {

struct GroupCommitWriterOptions {
  // The most mutations (after coalescing) in one Store::Commit; 0: no limit.
  // etcd refuses a transaction of more than its --max-txn-ops (128 by
  // default). One Enqueue's mutations are never split, so an Enqueue with
  // more than this many goes to the store alone.
  int max_batch_mutations = 0;
  // The most key and value bytes (after coalescing) in one Store::Commit.
  // Above kMaxCommitBytes counts as kMaxCommitBytes. etcd refuses a request
  // above its --max-request-bytes (1.5 MiB by default). As above, a single
  // larger Enqueue goes to the store alone.
  size_t max_batch_bytes = kMaxCommitBytes;
  // No writer thread: Enqueue commits its own mutations (one Store::Commit
  // each, nothing grouped) on the calling thread and runs `done` there
  // before it returns, so the caller's locks are held during the I/O. For
  // the simulator and for tests that need every effect of a write to have
  // happened, in order, when the call that caused it returns.
  bool inline_commits = false;
};

// Group commit in front of a Store: callers queue mutations without waiting
// for I/O, and one writer thread writes everything queued with as few
// Store::Commit calls as the limits allow -- with LocalStore one fdatasync,
// with EtcdStore one transaction, for all the callers at once.
//
// Contract:
//   - Enqueue validates (with store.h's helpers, so the messages are the
//     store's) and queues; it never waits for I/O. An invalid Enqueue is
//     refused alone and never reaches a batch.
//   - One Enqueue's mutations are applied atomically (they always share one
//     Store::Commit). Enqueues are applied in ticket order: a later Enqueue's
//     put of a key wins over an earlier one's.
//   - A ticket completes with the status of the Store::Commit that carried
//     it: OK means durable; an error is reported to every ticket of that
//     commit (and only to those), with the store's own unknown-outcome rule.
//   - Completion is reported either to Wait(ticket) or to the `done`
//     callback given to Enqueue. Callbacks run in ticket order on the writer
//     thread (inline_commits: on the enqueuing thread), with no lock of the
//     writer held: they may Enqueue, and must not Wait or Flush.
//
// Algorithm (the writer thread):
//  1. Wait until something is queued; take the whole queue.
//  2. Cut it, in ticket order, into batches: an Enqueue joins the current
//     batch unless that would take the batch past max_batch_mutations or
//     max_batch_bytes; mutations of a key already in the batch replace it
//     (the latest wins; the key keeps its first position).
//  3. Per batch: one Store::Commit; then the tickets' results, then their
//     callbacks. Meanwhile new Enqueues queue up for the next round.
//
// It is a Store too: Put, Delete and Commit are Enqueue and Wait (so
// concurrent callers share fsyncs), Get and List read the underlying store,
// which holds every write that returned.
//
// The destructor writes everything queued (including what callbacks queue
// meanwhile), runs the callbacks and joins the thread.
//
// Thread-safe; the queue, results and counters are guarded by mu_. The
// underlying store is called from the writer thread only (inline_commits:
// from the enqueuing threads) for writes, from any thread for reads, and
// must outlive the writer.
class GroupCommitWriter : public Store {
 public:
  // Names one accepted Enqueue; positive, increasing in Enqueue order.
  using Ticket = int64_t;
  using Done = std::function<void(const absl::Status&)>;

  struct Stats {
    // Accepted Enqueues (tickets) and their mutations.
    int64_t enqueued = 0;
    int64_t mutations = 0;
    // Store::Commit calls, the mutations in them (after coalescing) and
    // how many of them failed.
    int64_t commits = 0;
    int64_t committed_mutations = 0;
    int64_t failed_commits = 0;
    // The most tickets one commit carried.
    int64_t largest_batch = 0;
    // Tickets queued and not yet taken by the writer thread.
    int64_t queued = 0;
  };

  explicit GroupCommitWriter(Store* store, GroupCommitWriterOptions options = {});
  ~GroupCommitWriter() override;
  GroupCommitWriter(const GroupCommitWriter&) = delete;
  GroupCommitWriter& operator=(const GroupCommitWriter&) = delete;

  // Queues `mutations` for the next batch; Wait(ticket) reports the result
  // (each ticket once). INVALID_ARGUMENT when a mutation breaks the store's
  // limits (nothing is queued); FAILED_PRECONDITION after the writer thread
  // has stopped.
  absl::StatusOr<Ticket> Enqueue(std::vector<StoreMutation> mutations);
  // The same, with the result going to `done` (see the class comment)
  // instead; such a ticket cannot be waited for. `done` is not called when
  // Enqueue itself fails.
  absl::StatusOr<Ticket> Enqueue(std::vector<StoreMutation> mutations, Done done);

  // Blocks until the commit carrying `ticket` is done and returns its
  // status. INVALID_ARGUMENT for a ticket that was not handed out, was
  // already waited for or has a callback.
  absl::Status Wait(Ticket ticket);

  // Blocks until every Enqueue that returned before the call is committed
  // and its callback has run. Not from a callback.
  void Flush();

  Stats GetStats() const;

  // Store.
  absl::Status Put(absl::string_view key, absl::string_view value) override;
  absl::Status Delete(absl::string_view key) override;
  absl::Status Commit(const std::vector<StoreMutation>& mutations) override;
  absl::StatusOr<std::string> Get(absl::string_view key) const override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view prefix) const override;

 private:
  struct Entry {
    Ticket ticket = 0;
    std::vector<StoreMutation> mutations;
    Done done;  // empty: the result goes to results_
  };
  // A run of entries [first, end) of one round and their coalesced
  // mutations.
  struct Batch {
    size_t first = 0;
    size_t end = 0;
    std::vector<StoreMutation> mutations;
  };

  absl::StatusOr<Ticket> Accept(std::vector<StoreMutation> mutations, Done done);
  void Run();
  // The next batch of `entries` from `*next` on; advances `*next`. Moves the
  // mutations out of the entries it takes.
  Batch NextBatch(std::vector<Entry>& entries, size_t* next) const;
  // Records `status` for entries [first, end) and runs their callbacks.
  void Complete(std::vector<Entry>& entries, size_t first, size_t end,
                int64_t committed_mutations, const absl::Status& status);

  Store* const store_;
  const GroupCommitWriterOptions options_;

  mutable absl::Mutex mu_;
  std::vector<Entry> queue_ ABSL_GUARDED_BY(mu_);
  Ticket next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  // Waitable tickets not yet waited for: nullopt until their commit is done.
  absl::flat_hash_map<Ticket, std::optional<absl::Status>> results_ ABSL_GUARDED_BY(mu_);
  // Tickets whose callbacks have run (or that had none), counted: Flush
  // waits for it to reach the tickets handed out before it.
  int64_t finished_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);

  // Last: started once everything above is initialized.
  std::thread thread_;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_GROUP_COMMIT_WRITER_H_
