#include "scheduler/replica.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace joule {

StateMirror::StateMirror(etcd::EtcdClient* client, std::string prefix)
    : prefix_(std::move(prefix)) {
  watch_ = std::make_unique<etcd::EtcdWatch>(
      client, prefix_,
      [this](const std::vector<std::pair<std::string, std::string>>& snapshot,
             int64_t revision) { Reset(snapshot, revision); },
      [this](const std::vector<etcd::WatchEvent>& events, int64_t revision) {
        Apply(events, revision);
      });
}

void StateMirror::Reset(
    const std::vector<std::pair<std::string, std::string>>& snapshot,
    int64_t revision) {
  absl::MutexLock lock(&mu_);
  entries_.clear();
  for (const auto& [key, value] : snapshot) {
    if (absl::StartsWith(key, prefix_)) entries_[key.substr(prefix_.size())] = value;
  }
  revision_ = revision;
}

void StateMirror::Apply(const std::vector<etcd::WatchEvent>& events,
                        int64_t revision) {
  absl::MutexLock lock(&mu_);
  for (const etcd::WatchEvent& event : events) {
    revision_ = std::max(revision_, event.mod_revision);
    if (!absl::StartsWith(event.key, prefix_)) continue;
    const std::string key = event.key.substr(prefix_.size());
    if (event.type == etcd::WatchEvent::Type::kPut) {
      entries_[key] = event.value;
    } else {
      entries_.erase(key);
    }
  }
  // `revision` of a progress notification is not trusted (see the header).
  (void)revision;
}

bool StateMirror::WaitForRevision(int64_t revision, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto caught_up = [this, revision]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return revision_ >= revision;
      };
      if (mu_.AwaitWithTimeout(absl::Condition(&caught_up),
                               absl::Milliseconds(200))) {
        return true;
      }
    }
    if (absl::Now() >= deadline) return false;
    watch_->RequestProgress();
  }
}

std::unique_ptr<MemoryStore> StateMirror::Snapshot(int64_t* revision) const {
  auto store = std::make_unique<MemoryStore>();
  absl::MutexLock lock(&mu_);
  for (const auto& [key, value] : entries_) {
    // A key that is not a valid Store key (the scheduler writes none) is
    // left out rather than failing the whole copy.
    (void)store->Put(key, value);
  }
  if (revision != nullptr) *revision = revision_;
  return store;
}

int64_t StateMirror::revision() const {
  absl::MutexLock lock(&mu_);
  return revision_;
}

size_t StateMirror::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

absl::Status RestartSelf(const std::vector<std::string>& argv,
                         const std::string& bound_listen) {
  std::vector<std::string> args;
  bool skip_next = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (skip_next) {
      skip_next = false;
      continue;
    }
    if (i > 0 && argv[i] == "--listen") {
      skip_next = true;
      continue;
    }
    if (i > 0 && absl::StartsWith(argv[i], "--listen=")) continue;
    args.push_back(argv[i]);
  }
  args.push_back(absl::StrCat("--listen=", bound_listen));
  std::vector<char*> raw;
  for (std::string& arg : args) raw.push_back(arg.data());
  raw.push_back(nullptr);
  execv("/proc/self/exe", raw.data());
  return absl::InternalError(
      absl::StrCat("cannot restart the scheduler process: ", std::strerror(errno)));
}

}  // namespace joule
