#ifndef JOULE_COMMON_SCHEDULER_TARGETS_H_
#define JOULE_COMMON_SCHEDULER_TARGETS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace joule {

// Which scheduler replica a client calls next. Several replicas run against
// one etcd and one of them leads; a standby refuses every call, naming the
// leader when it knows it (see common/leader_redirect.h). A client holds the
// list of all replicas and:
//  1. calls the last replica that answered as leader (at first, the first
//     address of the list);
//  2. after a refusal that names the leader, calls that address next, even
//     one that is not in the list;
//  3. after a failure without a hint (replica down, no leader elected yet),
//     calls the next address of the list;
//  4. backs off only when every address has failed without a hint since the
//     last back-off (a round), or when hints keep bouncing between replicas
//     (more redirects than addresses), so that a known leader is reached at
//     once and a dead replica costs one fast attempt, not a back-off.
// Knows nothing of gRPC: callers report what happened.
//
// Thread-compatible: owned by one caller thread.
class SchedulerTargets {
 public:
  // What the caller should do before its next attempt.
  enum class Next {
    kRetryNow,  // a hinted leader or untried addresses: retry at once
    kBackOff,   // every address failed this round: wait first
  };

  // Splits "host:port,host:port": surrounding whitespace and empty entries
  // are dropped, as are repeats of an address.
  static std::vector<std::string> SplitAddressList(absl::string_view list);

  // `addresses` must not be empty.
  explicit SchedulerTargets(std::vector<std::string> addresses);

  const std::vector<std::string>& addresses() const { return addresses_; }
  // The address to call now.
  const std::string& current() const;

  // The call at current() was answered by the leader (successfully or with
  // an error of its own): keep calling it; a new round starts.
  void OnLeaderReached();
  // The call at current() did not reach the leader. `leader_hint` is the
  // leader's address from the refusal, or empty.
  Next OnFailure(absl::string_view leader_hint);

 private:
  void StartRound();

  const std::vector<std::string> addresses_;
  size_t index_ = 0;
  // A hinted leader that is not in addresses_; empty when current() is
  // addresses_[index_].
  std::string redirect_;
  size_t misses_ = 0;     // failures without a hint this round
  size_t redirects_ = 0;  // hints followed this round
};

}  // namespace joule

#endif  // JOULE_COMMON_SCHEDULER_TARGETS_H_
