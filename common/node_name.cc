#include "common/node_name.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace joule {
namespace {

constexpr char kRule[] =
    "a node name must be a DNS-1123 subdomain: at most 253 characters of "
    "lower-case letters, digits, '-' and '.', in dot-separated labels of at "
    "most 63 characters that start and end with a letter or digit";

// Names in messages are escaped (they come from the network) and cut short.
std::string Quoted(absl::string_view name) {
  constexpr size_t kShown = 80;
  if (name.size() <= kShown) return absl::StrCat("\"", absl::CHexEscape(name), "\"");
  return absl::StrCat("\"", absl::CHexEscape(name.substr(0, kShown)), "\"... (",
                      name.size(), " characters)");
}

bool IsAlphanumeric(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

absl::Status Invalid(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("node name ", Quoted(name), ": ", why, "; ", kRule));
}

}  // namespace

absl::Status ValidateNodeName(absl::string_view name) {
  if (name.empty()) return Invalid(name, "empty");
  if (name.size() > kMaxNodeNameBytes) {
    return Invalid(name, absl::StrFormat("%d characters", name.size()));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!IsAlphanumeric(c) && c != '-' && c != '.') {
      const std::string shown = absl::CHexEscape(absl::string_view(&c, 1));
      return Invalid(name, (c >= 'A' && c <= 'Z')
                               ? absl::StrFormat("upper-case '%s' at %d", shown, i)
                               : absl::StrFormat("'%s' at %d is not allowed", shown, i));
    }
  }
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    if (label.empty()) return Invalid(name, "empty label (leading, trailing or double '.')");
    if (label.size() > kMaxNodeNameLabelBytes) {
      return Invalid(name, absl::StrFormat("label \"%s\" has %d characters", label,
                                           label.size()));
    }
    if (!IsAlphanumeric(label.front()) || !IsAlphanumeric(label.back())) {
      return Invalid(name, absl::StrFormat("label \"%s\" must start and end with a "
                                           "letter or digit",
                                           label));
    }
  }
  return absl::OkStatus();
}

}  // namespace joule
