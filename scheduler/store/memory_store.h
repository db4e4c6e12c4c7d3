#ifndef JOULE_SCHEDULER_STORE_MEMORY_STORE_H_
#define JOULE_SCHEDULER_STORE_MEMORY_STORE_H_

#include <map>
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

// A Store kept in memory only, for the simulator (which runs the scheduler
// core thousands of times faster than real time and has nothing to recover).
// Same validation and ordering as every Store; the one thing it does not give
// is durability: everything is gone when the object is.
//
// Thread-safe; all state guarded by mu_.
class MemoryStore : public Store {
 public:
  absl::Status Put(absl::string_view key, absl::string_view value) override;
  absl::Status Delete(absl::string_view key) override;
  absl::Status Commit(const std::vector<StoreMutation>& mutations) override;
  absl::StatusOr<std::string> Get(absl::string_view key) const override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view prefix) const override;

 private:
  mutable absl::Mutex mu_;
  // std::string's operator< compares bytes as unsigned char, as Store wants.
  std::map<std::string, std::string, std::less<>> data_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_MEMORY_STORE_H_
