#ifndef JOULE_SCHEDULER_REPLICA_H_
#define JOULE_SCHEDULER_REPLICA_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/etcd/etcd_client.h"
#include "scheduler/store/memory_store.h"

namespace joule {

// A hot standby's copy of the scheduler state in etcd: everything under the
// store prefix, kept current by an etcd watch. When the standby wins the
// election it loads its Scheduler from this copy instead of reading the whole
// prefix again.
//
// Thread-safe; state guarded by mu_.
class StateMirror {
 public:
  // Follows every key under `prefix`; the mirror's keys have it stripped.
  StateMirror(etcd::EtcdClient* client, std::string prefix);

  // Waits until the mirror holds every change up to `revision`: until it
  // has applied an event (or loaded a snapshot) at `revision` or later. Only
  // events count, not progress notifications: etcd 3.4 before 3.4.24 may
  // report progress past events still in flight (etcd issue 15220). So make
  // sure a change at `revision` exists under the prefix (the new leader's
  // Proclaim). False after `timeout`.
  bool WaitForRevision(int64_t revision, absl::Duration timeout);

  // The mirrored state as a Store (a copy), and the revision it is at.
  std::unique_ptr<MemoryStore> Snapshot(int64_t* revision) const;
  int64_t revision() const;
  size_t size() const;

 private:
  void Reset(const std::vector<std::pair<std::string, std::string>>& snapshot,
             int64_t revision);
  void Apply(const std::vector<etcd::WatchEvent>& events, int64_t revision);

  const std::string prefix_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> entries_ ABSL_GUARDED_BY(mu_);
  // The newest snapshot or event applied.
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  // Last: its thread calls Reset/Apply until it is destroyed.
  std::unique_ptr<etcd::EtcdWatch> watch_;
};

// Replaces this process with a fresh run of the same binary and arguments,
// with `--listen` set to the address it had bound (so clients and agents find
// it where they did). Used by a deposed leader to come back as a standby
// without any of its old state. Returns only on failure.
absl::Status RestartSelf(const std::vector<std::string>& argv,
                         const std::string& bound_listen);

}  // namespace joule

#endif  // JOULE_SCHEDULER_REPLICA_H_
