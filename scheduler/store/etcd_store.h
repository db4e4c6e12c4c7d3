#ifndef JOULE_SCHEDULER_STORE_ETCD_STORE_H_
#define JOULE_SCHEDULER_STORE_ETCD_STORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/etcd/etcd_client.h"
#include "scheduler/store/store.h"

namespace joule {

// The Store on etcd: every key lives under `prefix` (e.g. "/joule/jobs/...").
//
//   - Put, Delete and Commit are one etcd Txn each, so a Commit is atomic.
//     Mutations of the same key collapse to the last one (etcd refuses a
//     transaction that names a key twice).
//   - Reads are linearizable Ranges; List pages through the prefix at one
//     revision, so it is a consistent snapshot.
//   - Fencing: after SetFence(key, revision), every write carries the compare
//     "create_revision(key) == revision" -- the leader key this scheduler
//     created when it won the election. When the key is gone or belongs to
//     someone else, the write changes nothing, returns FAILED_PRECONDITION
//     ("fenced: ...") and `on_fenced` runs (once).
//
// etcd's own limits apply on top of the Store's: its server needs
// --max-request-bytes above kMaxCommitBytes and --max-txn-ops above the
// largest Commit for those to pass (see README, "Running on etcd").
class EtcdStore : public Store {
 public:
  EtcdStore(etcd::EtcdClient* client, std::string prefix);

  // Fences every later write on the leader key `key` having been created at
  // `create_revision`.
  void SetFence(std::string key, int64_t create_revision,
                std::function<void(const absl::Status&)> on_fenced);

  absl::Status Put(absl::string_view key, absl::string_view value) override;
  absl::Status Delete(absl::string_view key) override;
  absl::Status Commit(const std::vector<StoreMutation>& mutations) override;
  absl::StatusOr<std::string> Get(absl::string_view key) const override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view prefix) const override;

 private:
  etcd::EtcdClient* const client_;
  const std::string prefix_;
  mutable absl::Mutex mu_;
  std::string fence_key_ ABSL_GUARDED_BY(mu_);
  int64_t fence_revision_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void(const absl::Status&)> on_fenced_ ABSL_GUARDED_BY(mu_);
  bool fenced_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_ETCD_STORE_H_
