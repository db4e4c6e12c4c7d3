#ifndef JOULE_SCHEDULER_STORE_STORE_H_
#define JOULE_SCHEDULER_STORE_STORE_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// Limits every Store implementation enforces; a violation is INVALID_ARGUMENT
// and nothing is written.
inline constexpr size_t kMaxKeyBytes = 1024;                // 1 KiB
inline constexpr size_t kMaxValueBytes = 16 * 1024 * 1024;  // 16 MiB
// Sum of key and value sizes over all mutations of one Commit (or one Put).
inline constexpr size_t kMaxCommitBytes = 64 * 1024 * 1024;  // 64 MiB

// One step of a Commit. `value` is ignored for kDelete.
struct StoreMutation {
  enum class Op { kPut, kDelete };
  Op op = Op::kPut;
  std::string key;
  std::string value;
};

// A durable key-value store for scheduler state (serialized job protos).
//
// Semantics shared by all implementations (checked by the conformance suite in
// store_conformance.h):
//   - A mutation that returns OK is durable: it survives a crash of the process
//     or the machine.
//   - A mutation that fails validation (limits above) changes nothing. A
//     mutation that fails for any other reason (I/O error, lost connection) has
//     an unknown outcome: it may or may not become visible.
//   - Keys are compared bytewise (as unsigned bytes); List returns key order.
//   - Reads see every mutation that returned before the read began.
//
// Thread-safe: all methods may be called concurrently.
class Store {
 public:
  virtual ~Store() = default;

  // Sets `key` to `value`. Durable when it returns OK.
  virtual absl::Status Put(absl::string_view key, absl::string_view value) = 0;

  // Removes `key`. OK if it was absent. Durable when it returns OK.
  virtual absl::Status Delete(absl::string_view key) = 0;

  // Applies all mutations in order, atomically and durably: readers and a
  // recovery after a crash see either all of them or none. Later mutations of
  // the same key win. An empty list is a no-op.
  virtual absl::Status Commit(const std::vector<StoreMutation>& mutations) = 0;

  // The value of `key`; NOT_FOUND if absent.
  virtual absl::StatusOr<std::string> Get(absl::string_view key) const = 0;

  // All (key, value) pairs whose key starts with `prefix`, in key order. An
  // empty prefix lists everything.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      absl::string_view prefix) const = 0;
};

// Validation helpers shared by implementations so that all of them reject the
// same inputs with the same messages.
absl::Status ValidateStoreKey(absl::string_view key);
absl::Status ValidateStoreValue(absl::string_view value);
absl::Status ValidateStorePrefix(absl::string_view prefix);
absl::Status ValidateStoreMutations(
    const std::vector<StoreMutation>& mutations);

}  // namespace joule

#endif  // JOULE_SCHEDULER_STORE_STORE_H_
