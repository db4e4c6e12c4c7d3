#include "common/range_list.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace joule {
namespace {

// Strict non-negative decimal: digits only (no sign, no spaces, no hex).
bool ParseIndex(absl::string_view text, int* out) {
  if (text.empty() || text.size() > 9) return false;
  int value = 0;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    value = value * 10 + (c - '0');
  }
  *out = value;
  return true;
}

absl::Status BadToken(absl::string_view token, absl::string_view list,
                      absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrFormat("bad token \"%s\" in range list \"%s\": %s", token, list, why));
}

absl::Status ParseRangeToken(absl::string_view token, absl::string_view list,
                             std::set<int>* out) {
  if (token.empty()) return BadToken(token, list, "empty entry");
  if (token.front() == '-') {
    return BadToken(token, list, "shard indices cannot be negative");
  }
  const size_t dash = token.find('-');
  if (dash == absl::string_view::npos) {
    int value;
    if (!ParseIndex(token, &value)) {
      return BadToken(token, list, "not a non-negative integer");
    }
    if (value >= kMaxRangeListValue) return BadToken(token, list, "too large");
    out->insert(value);
    return absl::OkStatus();
  }
  const absl::string_view lo_text = absl::StripAsciiWhitespace(token.substr(0, dash));
  const absl::string_view hi_text = absl::StripAsciiWhitespace(token.substr(dash + 1));
  int lo, hi;
  if (!ParseIndex(lo_text, &lo) || !ParseIndex(hi_text, &hi)) {
    return BadToken(token, list,
                    "a range must be <first>-<last> with non-negative integers");
  }
  if (hi < lo) return BadToken(token, list, "range end is below its start");
  if (hi >= kMaxRangeListValue) return BadToken(token, list, "too large");
  for (int i = lo; i <= hi; ++i) out->insert(i);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::set<int>> ParseRangeList(absl::string_view text) {
  std::set<int> result;
  const absl::string_view list = absl::StripAsciiWhitespace(text);
  if (list.empty()) return result;
  for (absl::string_view token : absl::StrSplit(list, ',')) {
    absl::Status status = ParseRangeToken(absl::StripAsciiWhitespace(token), list, &result);
    if (!status.ok()) return status;
  }
  return result;
}

std::string FormatRangeList(const std::set<int>& values) {
  std::vector<std::string> parts;
  auto it = values.begin();
  while (it != values.end()) {
    const int first = *it;
    int last = first;
    ++it;
    while (it != values.end() && *it == last + 1) {
      last = *it;
      ++it;
    }
    parts.push_back(first == last ? absl::StrCat(first) : absl::StrCat(first, "-", last));
  }
  return absl::StrJoin(parts, ",");
}

}  // namespace joule
