#ifndef JOULE_COMMON_RANGE_LIST_H_
#define JOULE_COMMON_RANGE_LIST_H_

#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

// Range lists ("0-3,8,10-11"): how shard sets travel in JOULE_SHARDS, the
// `shards=` hint, and the shards a task reports done.

// Values must stay below this: "0-999999999" must not build a billion-entry
// set.
inline constexpr int kMaxRangeListValue = 1 << 20;

// Parses a comma-separated list of non-negative indices and inclusive
// ranges. Whitespace around tokens is ignored; an empty string is the empty
// set. Errors are INVALID_ARGUMENT and quote the offending token, e.g. for
// "3-1", "a", "1-", "-2", "+3" or an empty token between two commas.
absl::StatusOr<std::set<int>> ParseRangeList(absl::string_view text);

// Formats a set as a compact, canonical range list in ascending order: every
// run of two or more consecutive values becomes "a-b" (so "3,1,2,2" round
// trips to "1-3").
std::string FormatRangeList(const std::set<int>& values);

}  // namespace joule

#endif  // JOULE_COMMON_RANGE_LIST_H_
