#ifndef JOULE_SCHEDULER_STORE_TESTING_GATED_STORE_H_
#define JOULE_SCHEDULER_STORE_TESTING_GATED_STORE_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/store/store.h"

namespace joule {
namespace store_testing {

// A Store in front of another (`base`, which must outlive it) for tests of
// code that writes through a store: its writes can be held at a gate, as a
// slow fsync or an etcd round trip holds them, and made to fail with a
// chosen status (etcd restarting: UNAVAILABLE; this scheduler deposed:
// FAILED_PRECONDITION "fenced: ..."). A failed write changes nothing in
// `base`. Reads pass straight to `base`. It counts the writes that reach
// it, so that a test can say how many a call attempted.
//
// Every write is a Commit (Put and Delete are one-mutation commits).
//
// Thread-safe; state guarded by mu_.
class GatedStore : public Store {
 public:
  explicit GatedStore(Store* base) : base_(base) {}

  // Writes from now on wait at the gate until Open. It starts open.
  void Close();
  void Open();
  // Writes from now on fail with `status` (OK: they pass again, as Heal).
  void FailWrites(absl::Status status);
  void Heal() { FailWrites(absl::OkStatus()); }

  // Blocks until `n` writes have arrived since the store was made (held
  // at the gate or not).
  void AwaitArrived(int n) const;
  // Writes that arrived, and of them the ones that failed.
  int arrived() const;
  int refused_writes() const;
  // The number of mutations of each write that passed the gate, in order.
  std::vector<size_t> commit_sizes() const;

  absl::Status Put(absl::string_view key, absl::string_view value) override;
  absl::Status Delete(absl::string_view key) override;
  absl::Status Commit(const std::vector<StoreMutation>& mutations) override;
  absl::StatusOr<std::string> Get(absl::string_view key) const override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view prefix) const override;

 private:
  Store* const base_;
  mutable absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  int refused_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<size_t> commit_sizes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace store_testing
}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_TESTING_GATED_STORE_H_
