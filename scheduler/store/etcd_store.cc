#include "scheduler/store/etcd_store.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace joule {
namespace {

// Keys per List page: values may be up to 16 MiB, so a page stays well below
// the client's receive limit only when it is short.
constexpr int64_t kListPageKeys = 64;

}  // namespace

EtcdStore::EtcdStore(etcd::EtcdClient* client, std::string prefix)
    : client_(client), prefix_(std::move(prefix)) {}

void EtcdStore::SetFence(std::string key, int64_t create_revision,
                         std::function<void(const absl::Status&)> on_fenced) {
  absl::MutexLock lock(&mu_);
  fence_key_ = std::move(key);
  fence_revision_ = create_revision;
  on_fenced_ = std::move(on_fenced);
  fenced_ = false;
}

absl::Status EtcdStore::Put(absl::string_view key, absl::string_view value) {
  return Commit({StoreMutation{StoreMutation::Op::kPut, std::string(key),
                               std::string(value)}});
}

absl::Status EtcdStore::Delete(absl::string_view key) {
  return Commit({StoreMutation{StoreMutation::Op::kDelete, std::string(key), ""}});
}

absl::Status EtcdStore::Commit(const std::vector<StoreMutation>& mutations) {
  if (absl::Status valid = ValidateStoreMutations(mutations); !valid.ok()) {
    return valid;
  }
  if (mutations.empty()) return absl::OkStatus();
  // etcd refuses a transaction that names a key twice: the last one wins.
  std::map<std::string, const StoreMutation*> last;
  for (const StoreMutation& mutation : mutations) last[mutation.key] = &mutation;

  etcdserverpb::TxnRequest txn;
  std::string fence_key;
  {
    absl::MutexLock lock(&mu_);
    if (fenced_) {
      return absl::FailedPreconditionError(
          "fenced: this scheduler is no longer the leader; nothing was written");
    }
    fence_key = fence_key_;
    if (!fence_key_.empty()) {
      etcdserverpb::Compare* compare = txn.add_compare();
      compare->set_result(etcdserverpb::Compare::EQUAL);
      compare->set_target(etcdserverpb::Compare::CREATE);
      compare->set_key(fence_key_);
      compare->set_create_revision(fence_revision_);
    }
  }
  for (const auto& [key, mutation] : last) {
    etcdserverpb::RequestOp* op = txn.add_success();
    if (mutation->op == StoreMutation::Op::kPut) {
      op->mutable_request_put()->set_key(absl::StrCat(prefix_, key));
      op->mutable_request_put()->set_value(mutation->value);
    } else {
      op->mutable_request_delete_range()->set_key(absl::StrCat(prefix_, key));
    }
  }
  absl::StatusOr<etcdserverpb::TxnResponse> response = client_->Txn(txn);
  if (!response.ok()) return response.status();
  if (response->succeeded()) return absl::OkStatus();

  absl::Status fenced = absl::FailedPreconditionError(absl::StrCat(
      "fenced: the leader key ", fence_key,
      " is gone or was created by another scheduler; this scheduler is no "
      "longer the leader and nothing was written"));
  std::function<void(const absl::Status&)> on_fenced;
  {
    absl::MutexLock lock(&mu_);
    if (!fenced_) {
      fenced_ = true;
      on_fenced = on_fenced_;
    }
  }
  if (on_fenced) on_fenced(fenced);
  return fenced;
}

absl::StatusOr<std::string> EtcdStore::Get(absl::string_view key) const {
  if (absl::Status valid = ValidateStoreKey(key); !valid.ok()) return valid;
  etcdserverpb::RangeRequest request;
  request.set_key(absl::StrCat(prefix_, key));
  absl::StatusOr<etcdserverpb::RangeResponse> response = client_->Range(request);
  if (!response.ok()) return response.status();
  if (response->kvs_size() == 0) {
    return absl::NotFoundError(absl::StrCat("key ", key, " not found"));
  }
  return response->kvs(0).value();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> EtcdStore::List(
    absl::string_view prefix) const {
  if (absl::Status valid = ValidateStorePrefix(prefix); !valid.ok()) return valid;
  const std::string start = absl::StrCat(prefix_, prefix);
  etcdserverpb::RangeRequest request;
  request.set_key(start);
  request.set_range_end(etcd::PrefixRangeEnd(start));
  request.set_limit(kListPageKeys);
  request.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  request.set_sort_target(etcdserverpb::RangeRequest::KEY);
  std::vector<std::pair<std::string, std::string>> entries;
  while (true) {
    absl::StatusOr<etcdserverpb::RangeResponse> response = client_->Range(request);
    if (!response.ok()) return response.status();
    for (const mvccpb::KeyValue& kv : response->kvs()) {
      entries.emplace_back(kv.key().substr(prefix_.size()), kv.value());
    }
    if (!response->more() || response->kvs_size() == 0) break;
    // Later pages read at the first page's revision: one snapshot.
    request.set_revision(response->header().revision());
    request.set_key(response->kvs(response->kvs_size() - 1).key() + '\0');
  }
  return entries;
}

}  // namespace joule
