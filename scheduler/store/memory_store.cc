#include "scheduler/store/memory_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace joule {

absl::Status MemoryStore::Put(absl::string_view key, absl::string_view value) {
  return Commit({{StoreMutation::Op::kPut, std::string(key), std::string(value)}});
}

absl::Status MemoryStore::Delete(absl::string_view key) {
  return Commit({{StoreMutation::Op::kDelete, std::string(key), ""}});
}

absl::Status MemoryStore::Commit(const std::vector<StoreMutation>& mutations) {
  absl::Status valid = ValidateStoreMutations(mutations);
  if (!valid.ok()) return valid;
  absl::MutexLock lock(&mu_);
  for (const StoreMutation& mutation : mutations) {
    if (mutation.op == StoreMutation::Op::kPut) {
      data_.insert_or_assign(mutation.key, mutation.value);
    } else {
      data_.erase(mutation.key);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MemoryStore::Get(absl::string_view key) const {
  absl::Status valid = ValidateStoreKey(key);
  if (!valid.ok()) return valid;
  absl::MutexLock lock(&mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return absl::NotFoundError(absl::StrCat("key ", key, " not found"));
  return it->second;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> MemoryStore::List(
    absl::string_view prefix) const {
  absl::Status valid = ValidateStorePrefix(prefix);
  if (!valid.ok()) return valid;
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = data_.lower_bound(prefix);
       it != data_.end() && absl::StartsWith(it->first, prefix); ++it) {
    out.emplace_back(it->first, it->second);
  }
  return out;
}

}  // namespace joule
