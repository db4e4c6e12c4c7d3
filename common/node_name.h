#ifndef JOULE_COMMON_NODE_NAME_H_
#define JOULE_COMMON_NODE_NAME_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace joule {

// The longest node name, and the longest dot-separated label in one.
inline constexpr size_t kMaxNodeNameBytes = 253;
inline constexpr size_t kMaxNodeNameLabelBytes = 63;

// Checks a node name against Kubernetes' node-name rule: a DNS-1123
// subdomain. That is at most 253 characters of lower-case letters, digits,
// '-' and '.', made of dot-separated labels that each start and end with a
// letter or digit and hold at most 63 characters.
//
// OK, or INVALID_ARGUMENT that names the name (escaped, and cut short when
// long) and says which part of the rule it breaks. Pure; thread-safe.
absl::Status ValidateNodeName(absl::string_view name);

}  // namespace joule

#endif  // JOULE_COMMON_NODE_NAME_H_
