#include "scheduler/store/testing/gated_store.h"

#include <utility>

namespace joule {
namespace store_testing {

void GatedStore::Close() {
  absl::MutexLock lock(&mu_);
  open_ = false;
}

void GatedStore::Open() {
  absl::MutexLock lock(&mu_);
  open_ = true;
}

void GatedStore::FailWrites(absl::Status status) {
  absl::MutexLock lock(&mu_);
  failure_ = std::move(status);
}

void GatedStore::AwaitArrived(int n) const {
  absl::MutexLock lock(&mu_);
  auto arrived = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return arrived_ >= n; };
  mu_.Await(absl::Condition(&arrived));
}

int GatedStore::arrived() const {
  absl::MutexLock lock(&mu_);
  return arrived_;
}

int GatedStore::refused_writes() const {
  absl::MutexLock lock(&mu_);
  return refused_;
}

std::vector<size_t> GatedStore::commit_sizes() const {
  absl::MutexLock lock(&mu_);
  return commit_sizes_;
}

absl::Status GatedStore::Put(absl::string_view key, absl::string_view value) {
  return Commit({StoreMutation{StoreMutation::Op::kPut, std::string(key), std::string(value)}});
}

absl::Status GatedStore::Delete(absl::string_view key) {
  return Commit({StoreMutation{StoreMutation::Op::kDelete, std::string(key), ""}});
}

absl::Status GatedStore::Commit(const std::vector<StoreMutation>& mutations) {
  {
    absl::MutexLock lock(&mu_);
    ++arrived_;
    mu_.Await(absl::Condition(&open_));
    commit_sizes_.push_back(mutations.size());
    if (!failure_.ok()) {
      ++refused_;
      return failure_;
    }
  }
  return base_->Commit(mutations);
}

absl::StatusOr<std::string> GatedStore::Get(absl::string_view key) const { return base_->Get(key); }

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> GatedStore::List(
    absl::string_view prefix) const {
  return base_->List(prefix);
}

}  // namespace store_testing
}  // namespace joule
