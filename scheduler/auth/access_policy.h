#ifndef JOULE_SCHEDULER_AUTH_ACCESS_POLICY_H_
#define JOULE_SCHEDULER_AUTH_ACCESS_POLICY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "joule/v1/job.pb.h"
#include "scheduler/auth/identity.h"

namespace joule {

// What each role may do with jobs, nodes and caps (README, "Security").
// Pure functions of the caller's Identity and the object; the gRPC service
// asks them before calling the scheduler. Denials are PERMISSION_DENIED and
// say which rule refused.

// A job's owner is the caller: an empty spec.user becomes the caller's
// name; a spec naming someone else is refused unless the caller is an
// operator (who may submit on a user's behalf).
absl::Status AuthorizeSubmit(const Identity& caller, v1::JobSpec* spec);

// Reading, watching, cancelling, explaining or reading the logs of `job`:
// its owner, or an operator. `action` names the action in the error
// ("cancel").
absl::Status AuthorizeJob(const Identity& caller, const v1::Job& job,
                          absl::string_view action);

// Whether `job` is in the caller's view (ListJobs filters by it).
bool CanSeeJob(const Identity& caller, const v1::Job& job);

// Nodes and power caps: operators only.
absl::Status AuthorizeOperator(const Identity& caller, absl::string_view action);

// Env values (they often hold secrets) are shown only to the job's owner and
// to operators; for anyone else each value becomes "<redacted>".
void RedactForViewer(const Identity& caller, v1::Job* job);

// Submission request ids are per user: the same id from two users names two
// jobs, and one user can never fetch another's job by guessing its id.
std::string ScopedRequestId(const Identity& caller, absl::string_view request_id);

}  // namespace joule

#endif  // JOULE_SCHEDULER_AUTH_ACCESS_POLICY_H_
