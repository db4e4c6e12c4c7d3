#ifndef JOULE_SCHEDULER_OPERATOR_CAP_H_
#define JOULE_SCHEDULER_OPERATOR_CAP_H_

#include "absl/status/status.h"
#include "joule/v1/agent.pb.h"
#include "joule/v1/node.pb.h"

namespace joule {

// Checks a cap an operator asks for (`joulectl cap`, SetNodeCap) against
// the node's devices before it goes to the agent:
//   INVALID_ARGUMENT  a malformed cap (kind, a negative or non-finite
//                     number, min above max, nothing to set), naming the
//                     field;
//   NOT_FOUND         the node has no such GPU or CPU package;
//   OUT_OF_RANGE      a power cap outside the device's allowed range, which
//                     the message gives;
//   FAILED_PRECONDITION  a CPU power cap on a node without RAPL.
// Pure; thread-safe.
absl::Status CheckOperatorCap(const v1::NodeInfo& node, const v1::SetCap& cap);

}  // namespace joule

#endif  // JOULE_SCHEDULER_OPERATOR_CAP_H_
