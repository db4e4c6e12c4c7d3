#include "scheduler/store/job_id_floor.h"

#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace joule {

absl::StatusOr<int64_t> ParseJobIdFloor(absl::string_view value) {
  int64_t floor = 0;
  const bool digits =
      !value.empty() && value.size() <= kMaxJobNumberDigits &&
      std::all_of(value.begin(), value.end(),
                  [](char c) { return absl::ascii_isdigit(c); });
  if (!digits || !absl::SimpleAtoi(value, &floor)) {
    return absl::DataLossError(absl::StrCat(
        "stored ", kJobIdFloorKey, " is not a job number: \"",
        absl::CEscape(value.substr(0, 64)), "\""));
  }
  return floor;
}

absl::StatusOr<int64_t> ReadJobIdFloor(const Store& store) {
  absl::StatusOr<std::string> value = store.Get(kJobIdFloorKey);
  if (absl::IsNotFound(value.status())) return 0;
  if (!value.ok()) return value.status();
  return ParseJobIdFloor(*value);
}

int64_t MaxJobNumberIn(absl::string_view bytes) {
  const absl::string_view prefix = kJobIdPrefix;
  int64_t max = 0;
  for (size_t at = bytes.find(prefix); at != absl::string_view::npos;
       at = bytes.find(prefix, at + 1)) {
    const size_t start = at + prefix.size();
    size_t end = start;
    while (end < bytes.size() && absl::ascii_isdigit(bytes[end])) ++end;
    if (end == start || end - start > kMaxJobNumberDigits) continue;
    int64_t number = 0;
    if (absl::SimpleAtoi(bytes.substr(start, end - start), &number)) {
      max = std::max(max, number);
    }
  }
  return max;
}

}  // namespace joule
