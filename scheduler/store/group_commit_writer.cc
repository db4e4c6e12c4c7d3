#include "scheduler/store/group_commit_writer.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace joule {
namespace {

size_t MutationBytes(const StoreMutation& mutation) {
  return mutation.key.size() +
         (mutation.op == StoreMutation::Op::kPut ? mutation.value.size() : 0);
}

}  // namespace

GroupCommitWriter::GroupCommitWriter(Store* store, GroupCommitWriterOptions options)
    : store_(store), options_(options) {
  if (!options_.inline_commits) thread_ = std::thread([this] { Run(); });
}

GroupCommitWriter::~GroupCommitWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<GroupCommitWriter::Ticket> GroupCommitWriter::Enqueue(
    std::vector<StoreMutation> mutations) {
  return Accept(std::move(mutations), nullptr);
}

absl::StatusOr<GroupCommitWriter::Ticket> GroupCommitWriter::Enqueue(
    std::vector<StoreMutation> mutations, Done done) {
  if (!done) return absl::InvalidArgumentError("Enqueue: empty completion callback");
  return Accept(std::move(mutations), std::move(done));
}

absl::StatusOr<GroupCommitWriter::Ticket> GroupCommitWriter::Accept(
    std::vector<StoreMutation> mutations, Done done) {
  // Refused here, alone: a batch only ever holds valid mutations.
  if (absl::Status valid = ValidateStoreMutations(mutations); !valid.ok()) return valid;
  Ticket ticket = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      return absl::FailedPreconditionError("the store writer has stopped");
    }
    ticket = next_ticket_++;
    ++stats_.enqueued;
    stats_.mutations += static_cast<int64_t>(mutations.size());
    if (!done) results_.emplace(ticket, std::nullopt);
    if (!options_.inline_commits) {
      queue_.push_back(Entry{ticket, std::move(mutations), std::move(done)});
      ++stats_.queued;
      return ticket;
    }
  }
  // Inline: this Enqueue is its own batch, on this thread.
  std::vector<Entry> entries;
  entries.push_back(Entry{ticket, std::move(mutations), std::move(done)});
  size_t next = 0;
  Batch batch = NextBatch(entries, &next);
  const absl::Status status =
      batch.mutations.empty() ? absl::OkStatus() : store_->Commit(batch.mutations);
  Complete(entries, 0, entries.size(), static_cast<int64_t>(batch.mutations.size()), status);
  return ticket;
}

absl::Status GroupCommitWriter::Wait(Ticket ticket) {
  absl::MutexLock lock(&mu_);
  auto it = results_.find(ticket);
  if (it == results_.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store writer: ticket ", ticket,
        " was not handed out, was already waited for, or reports to a callback"));
  }
  auto done = [this, ticket]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return results_.at(ticket).has_value();
  };
  mu_.Await(absl::Condition(&done));
  it = results_.find(ticket);
  absl::Status status = *it->second;
  results_.erase(it);
  return status;
}

void GroupCommitWriter::Flush() {
  absl::MutexLock lock(&mu_);
  const int64_t handed_out = next_ticket_ - 1;
  auto caught_up = [this, handed_out]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return finished_ >= handed_out;
  };
  mu_.Await(absl::Condition(&caught_up));
}

GroupCommitWriter::Stats GroupCommitWriter::GetStats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void GroupCommitWriter::Run() {
  while (true) {
    std::vector<Entry> entries;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) {
        // Stopping, and callbacks queued nothing more.
        stopped_ = true;
        return;
      }
      entries.swap(queue_);
      stats_.queued = 0;
    }
    size_t next = 0;
    while (next < entries.size()) {
      const size_t first = next;
      Batch batch = NextBatch(entries, &next);
      const absl::Status status =
          batch.mutations.empty() ? absl::OkStatus() : store_->Commit(batch.mutations);
      Complete(entries, first, next, static_cast<int64_t>(batch.mutations.size()), status);
    }
  }
}

GroupCommitWriter::Batch GroupCommitWriter::NextBatch(std::vector<Entry>& entries,
                                                      size_t* next) const {
  const size_t max_bytes = std::min(options_.max_batch_bytes, kMaxCommitBytes);
  const size_t max_mutations = options_.max_batch_mutations > 0
                                   ? static_cast<size_t>(options_.max_batch_mutations)
                                   : SIZE_MAX;
  Batch batch;
  batch.first = *next;
  // Key -> its position in batch.mutations.
  absl::flat_hash_map<std::string, size_t> position;
  size_t bytes = 0;
  for (; *next < entries.size(); ++*next) {
    Entry& entry = entries[*next];
    if (*next > batch.first) {
      // What the batch would grow by: per key of this entry, its last
      // mutation replaces what the batch holds for the key.
      absl::flat_hash_map<absl::string_view, size_t> last_bytes;
      for (const StoreMutation& mutation : entry.mutations) {
        last_bytes[mutation.key] = MutationBytes(mutation);
      }
      size_t grown_bytes = bytes;
      size_t grown_count = batch.mutations.size();
      for (const auto& [key, size] : last_bytes) {
        auto at = position.find(key);
        if (at == position.end()) {
          ++grown_count;
        } else {
          grown_bytes -= MutationBytes(batch.mutations[at->second]);
        }
        grown_bytes += size;
      }
      if (grown_bytes > max_bytes || grown_count > max_mutations) break;
    }
    for (StoreMutation& mutation : entry.mutations) {
      auto [at, inserted] = position.try_emplace(mutation.key, batch.mutations.size());
      if (inserted) {
        bytes += MutationBytes(mutation);
        batch.mutations.push_back(std::move(mutation));
      } else {
        StoreMutation& held = batch.mutations[at->second];
        bytes -= MutationBytes(held);
        bytes += MutationBytes(mutation);
        held.op = mutation.op;
        held.value = std::move(mutation.value);
      }
    }
    entry.mutations.clear();
  }
  batch.end = *next;
  return batch;
}

void GroupCommitWriter::Complete(std::vector<Entry>& entries, size_t first, size_t end,
                                 int64_t committed_mutations, const absl::Status& status) {
  std::vector<Done> callbacks;
  {
    absl::MutexLock lock(&mu_);
    if (committed_mutations > 0) {
      ++stats_.commits;
      stats_.committed_mutations += committed_mutations;
      if (!status.ok()) ++stats_.failed_commits;
      stats_.largest_batch =
          std::max(stats_.largest_batch, static_cast<int64_t>(end - first));
    }
    for (size_t i = first; i < end; ++i) {
      Entry& entry = entries[i];
      if (entry.done) {
        callbacks.push_back(std::move(entry.done));
      } else {
        results_[entry.ticket] = status;
        ++finished_;
      }
    }
  }
  if (callbacks.empty()) return;
  // Outside the lock: a callback may take its owner's locks and Enqueue.
  for (Done& done : callbacks) done(status);
  absl::MutexLock lock(&mu_);
  finished_ += static_cast<int64_t>(callbacks.size());
}

absl::Status GroupCommitWriter::Put(absl::string_view key, absl::string_view value) {
  absl::StatusOr<Ticket> ticket = Enqueue(
      {StoreMutation{StoreMutation::Op::kPut, std::string(key), std::string(value)}});
  if (!ticket.ok()) return ticket.status();
  return Wait(*ticket);
}

absl::Status GroupCommitWriter::Delete(absl::string_view key) {
  absl::StatusOr<Ticket> ticket =
      Enqueue({StoreMutation{StoreMutation::Op::kDelete, std::string(key), ""}});
  if (!ticket.ok()) return ticket.status();
  return Wait(*ticket);
}

absl::Status GroupCommitWriter::Commit(const std::vector<StoreMutation>& mutations) {
  // A no-op needs no commit (and no place behind a slow batch).
  if (mutations.empty()) return absl::OkStatus();
  absl::StatusOr<Ticket> ticket = Enqueue(mutations);
  if (!ticket.ok()) return ticket.status();
  return Wait(*ticket);
}

absl::StatusOr<std::string> GroupCommitWriter::Get(absl::string_view key) const {
  return store_->Get(key);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> GroupCommitWriter::List(
    absl::string_view prefix) const {
  return store_->List(prefix);
}

}  // namespace joule
