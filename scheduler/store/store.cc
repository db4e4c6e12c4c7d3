#include "scheduler/store/store.h"

#include "absl/strings/str_cat.h"

namespace joule {

absl::Status ValidateStoreKey(absl::string_view key) {
  if (key.empty()) {
    return absl::InvalidArgumentError("store key must not be empty");
  }
  if (key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store key of ", key.size(), " bytes exceeds the key size limit of ",
        kMaxKeyBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status ValidateStoreValue(absl::string_view value) {
  if (value.size() > kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store value of ", value.size(),
        " bytes exceeds the value size limit of ", kMaxValueBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status ValidateStorePrefix(absl::string_view prefix) {
  if (prefix.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store prefix of ", prefix.size(),
        " bytes exceeds the key size limit of ", kMaxKeyBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status ValidateStoreMutations(
    const std::vector<StoreMutation>& mutations) {
  size_t total_bytes = 0;
  for (const StoreMutation& mutation : mutations) {
    if (absl::Status status = ValidateStoreKey(mutation.key); !status.ok()) {
      return status;
    }
    total_bytes += mutation.key.size();
    if (mutation.op == StoreMutation::Op::kPut) {
      if (absl::Status status = ValidateStoreValue(mutation.value);
          !status.ok()) {
        return status;
      }
      total_bytes += mutation.value.size();
    }
    // Checked inside the loop so that the sum cannot overflow.
    if (total_bytes > kMaxCommitBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("commit exceeds the commit size limit of ",
                       kMaxCommitBytes, " key and value bytes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace joule
