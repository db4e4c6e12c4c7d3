#include "common/scheduler_targets.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"

namespace joule {

std::vector<std::string> SchedulerTargets::SplitAddressList(absl::string_view list) {
  std::vector<std::string> addresses;
  for (absl::string_view entry : absl::StrSplit(list, ',')) {
    const std::string address(absl::StripAsciiWhitespace(entry));
    if (address.empty()) continue;
    if (std::find(addresses.begin(), addresses.end(), address) != addresses.end()) {
      continue;
    }
    addresses.push_back(address);
  }
  return addresses;
}

SchedulerTargets::SchedulerTargets(std::vector<std::string> addresses)
    : addresses_(std::move(addresses)) {
  if (addresses_.empty()) {
    std::cerr << "SchedulerTargets: no scheduler address\n";
    std::abort();
  }
}

const std::string& SchedulerTargets::current() const {
  return redirect_.empty() ? addresses_[index_] : redirect_;
}

void SchedulerTargets::StartRound() {
  misses_ = 0;
  redirects_ = 0;
}

void SchedulerTargets::OnLeaderReached() { StartRound(); }

SchedulerTargets::Next SchedulerTargets::OnFailure(absl::string_view leader_hint) {
  // A replica naming itself is confused (mid-election); treat it as no hint.
  if (!leader_hint.empty() && leader_hint != current()) {
    const auto it = std::find(addresses_.begin(), addresses_.end(), leader_hint);
    if (it != addresses_.end()) {
      index_ = it - addresses_.begin();
      redirect_.clear();
    } else {
      redirect_ = std::string(leader_hint);
    }
    if (++redirects_ <= addresses_.size()) return Next::kRetryNow;
    StartRound();
    return Next::kBackOff;
  }
  // The next address after the one that failed, or after the replica whose
  // hint led to a redirect that failed.
  redirect_.clear();
  index_ = (index_ + 1) % addresses_.size();
  if (++misses_ < addresses_.size()) return Next::kRetryNow;
  StartRound();
  return Next::kBackOff;
}

}  // namespace joule
