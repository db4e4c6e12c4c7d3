#ifndef JOULE_SCHEDULER_SHARDING_SHARDER_H_
#define JOULE_SCHEDULER_SHARDING_SHARDER_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// Per-job shard bookkeeping: which replica owns which of the job's data
// shards, which shards are done, and how shards move when replicas finish
// early, slow down or die (DESIGN.md section 4, "Sharding"). A replica's owned,
// not-yet-done shards are the value of its `shards=` hint (JOULE_SHARDS at
// start, the hints file afterwards; DESIGN.md section 3).
//
// Assumptions about the workloads (examples/README.md): a replica processes its
// owned shards in ascending order, always finishes the shard in progress even
// when it is no longer listed, drops unstarted shards that disappear from the
// list, picks up added ones, and reports `shard_done shard=<k>` for each
// finished shard. The sharder therefore models each replica's in-progress
// shard: the lowest owned shard when the replica starts or finishes a shard,
// unchanged while shards are added or taken away. That shard is never moved
// to another replica while its owner lives, so no shard is processed twice
// except through the unavoidable race of a hint arriving after the replica
// has already moved on (the duplicate report is then ignored).
//
// Algorithm:
//   1. Create: split the S shards in proportion to the replicas' predicted
//      throughput by largest-remainder rounding (ties to the lower replica
//      index), then make sure every replica with throughput > 0 gets at least
//      one shard when there are enough shards, taking it from the replica
//      holding the most above its exact quota. Replica i gets a contiguous
//      range following replica i-1's, so hints stay short ("0-7", "8-9").
//   2. ShardDone: a shard completes exactly once. A report for a done shard
//      is counted as a duplicate and changes nothing; a report from a replica
//      that does not own the shard still completes it (the work was done) and
//      is counted as foreign. The owner's in-progress shard advances to its
//      lowest remaining shard when the in-progress one completes.
//   3. Rebalance: for each idle live replica with throughput > 0, fastest
//      first, take the replica with the most remaining time (pending shards /
//      throughput; zero throughput counts as infinite) that has at least two
//      pending shards. If even one shard would finish on the idle replica
//      later than the donor finishes everything, the idle replica stays idle.
//      Otherwise move k shards from the END of the donor's list (never its
//      in-progress shard), with k the integer closest to the point where both
//      finish at the same time: min over k of max((n-k)/t_donor, k/t_idle).
//      A replica that received shards can itself donate to a later idle one.
//   4. ReplicaLost: all of the lost replica's not-done shards, the one in
//      progress included, go to the other live replicas by water-filling on
//      finish time: each shard goes to the replica whose (pending + 1) /
//      throughput is smallest. When the survivors' loads are already in
//      proportion to their throughput (as after Create) this is the split in
//      proportion to throughput; a replica that is behind gets less. Each
//      receiver gets one contiguous block of the (ascending) lost shards, in
//      replica order. With no live replica left the shards become unassigned
//      until AddReplica.
//   5. AddReplica: a new or restarted replica takes every unassigned shard;
//      if there are none it is idle and the next Rebalance feeds it.
//
// Time and randomness are not needed: every tie is broken deterministically
// (lower replica index), so the same inputs give the same moves.
//
// Threading: owned by the scheduler loop, not thread-safe.
class Sharder {
 public:
  // Shard counts above this are rejected: a hint naming a million shards is
  // already larger than the task contract's own limit (examples/README.md).
  static constexpr int kMaxShardCount = 1 << 20;

  // Shards that changed owner. The caller sends UpdateHints with the new
  // ShardsOf() to both replicas (the donor only if it is still live).
  struct Move {
    int from_replica = -1;
    int to_replica = -1;
    std::vector<int> shards;  // Ascending.

    bool operator==(const Move& other) const {
      return from_replica == other.from_replica &&
             to_replica == other.to_replica && shards == other.shards;
    }
    bool operator!=(const Move& other) const { return !(*this == other); }
  };

  // Starts a job with `shard_count` shards (0..S-1) and replicas
  // 0..replica_throughput.size()-1, each with its predicted throughput (any
  // unit, e.g. shards or samples per second). INVALID_ARGUMENT when S is
  // negative or above kMaxShardCount, there are no replicas, a throughput is
  // negative or not finite, or all throughputs are zero.
  static absl::StatusOr<Sharder> Create(
      int shard_count, const std::vector<double>& replica_throughput);

  // Restores a sharder from Serialize()'s output. Everything is validated
  // (syntax, ranges, every shard in exactly one place, in-progress shards
  // owned, ...); any problem is DATA_LOSS naming the line and field.
  static absl::StatusOr<Sharder> Parse(absl::string_view text);

  // A compact, line-oriented text form for the scheduler's store, e.g.
  //   sharder v1 shards=10 replicas=2 done=0-3 unassigned= duplicates=0
  //     foreign=0  (one line; wrapped here)
  //   replica 0 live=1 throughput=3 current=4 owns=4-7
  //   replica 1 live=0 throughput=1 current=- owns=
  // Every line ends with '\n'. Throughputs round-trip exactly, and
  // Parse(Serialize()) reproduces the state.
  std::string Serialize() const;

  // Records a `shard_done` report. OK for a new completion, and also for a
  // report about an already-done shard (ignored, counted in
  // duplicate_reports()). A report from a replica that does not own the shard
  // (including a lost one, or for an unassigned shard) completes it and is
  // counted in foreign_reports(); the owner's ShardsOf() then shrinks.
  // INVALID_ARGUMENT for a shard outside 0..S-1 or a replica never seen.
  absl::Status ShardDone(int replica, int shard);

  // Feeds idle replicas from the busiest ones (class comment, step 3).
  // Returns the moves, at most one per idle replica; empty when nothing
  // should move (everyone busy, or donors have at most one pending shard).
  std::vector<Move> Rebalance();

  // Removes a live replica and hands its not-done shards to the others (class
  // comment, step 4). Returns the moves (from_replica is the lost one); empty
  // when nothing moved, e.g. when no live replica is left and the shards
  // became unassigned. Losing an already-lost replica is a no-op.
  // INVALID_ARGUMENT for a replica never seen.
  absl::StatusOr<std::vector<Move>> ReplicaLost(int replica);

  // Adds a live replica (a new one, or a restarted attempt reusing a lost
  // replica's index) that takes all unassigned shards; its initial hint is
  // ShardsOf(replica). INVALID_ARGUMENT for a negative index or a bad
  // throughput, ALREADY_EXISTS when the replica is live.
  absl::Status AddReplica(int replica, double throughput);

  // Replaces a replica's throughput (a measurement replaces the prediction)
  // for later Rebalance and ReplicaLost decisions; nothing moves now.
  // INVALID_ARGUMENT for a replica never seen or a negative or non-finite
  // throughput.
  absl::Status UpdateThroughput(int replica, double throughput);

  // The replica's owned, not-done shards as a compact range list ("0-3,8"),
  // the value of its `shards=` hint. Empty for an idle, lost or unknown one.
  std::string ShardsOf(int replica) const;

  // The replica's owned, not-done shards in the order it will process them:
  // the in-progress shard first, then the rest ascending.
  std::vector<int> pending(int replica) const;

  // Not-done shards owned by nobody (only while no replica is live).
  std::vector<int> unassigned() const;

  // Live replicas, ascending.
  std::vector<int> live_replicas() const;

  int shard_count() const { return shard_count_; }
  int done_count() const { return done_count_; }
  bool AllDone() const { return done_count_ == shard_count_; }
  int64_t duplicate_reports() const { return duplicate_reports_; }
  int64_t foreign_reports() const { return foreign_reports_; }

 private:
  static constexpr int kNone = -1;  // No owner / no shard in progress.

  struct Replica {
    double throughput = 0.0;
    bool live = true;
    std::set<int> pending;    // Owned, not done.
    int in_progress = kNone;  // kNone iff `pending` is empty.
  };

  explicit Sharder(int shard_count);

  // Adds `shards` (not done, currently owned by nobody) to a live replica.
  void Give(int replica, const std::vector<int>& shards);
  // Takes a not-done shard away from its owner (or from the unassigned set).
  void Release(int shard);

  int shard_count_ = 0;
  std::vector<bool> done_;  // Per shard.
  std::vector<int> owner_;  // Per shard: live replica, or kNone.
  std::set<int> unassigned_;
  std::map<int, Replica> replicas_;  // Live and lost replicas.
  int done_count_ = 0;
  int64_t duplicate_reports_ = 0;
  int64_t foreign_reports_ = 0;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_SHARDING_SHARDER_H_
