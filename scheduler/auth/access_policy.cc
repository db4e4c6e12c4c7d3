#include "scheduler/auth/access_policy.h"

#include "absl/strings/str_cat.h"
#include "scheduler/auth/token_file.h"

namespace joule {

absl::Status AuthorizeSubmit(const Identity& caller, v1::JobSpec* spec) {
  if (spec->user().empty()) {
    spec->set_user(caller.user);
    return absl::OkStatus();
  }
  if (spec->user() == caller.user) return absl::OkStatus();
  if (!caller.AtLeast(Role::kOperator)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "user: ", caller.user, " (role user) cannot submit a job as \"", spec->user(),
        "\"; leave user empty or ask an operator"));
  }
  return ValidateUserName(spec->user());
}

bool CanSeeJob(const Identity& caller, const v1::Job& job) {
  return caller.AtLeast(Role::kOperator) || job.spec().user() == caller.user;
}

absl::Status AuthorizeJob(const Identity& caller, const v1::Job& job,
                          absl::string_view action) {
  if (CanSeeJob(caller, job)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      caller.user, " (role ", RoleName(caller.role), ") may not ", action, " job ", job.id(),
      ": users may only ", action, " their own jobs"));
}

absl::Status AuthorizeOperator(const Identity& caller, absl::string_view action) {
  if (caller.AtLeast(Role::kOperator)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      caller.user, " (role ", RoleName(caller.role), ") may not ", action,
      ": it needs the operator role"));
}

void RedactForViewer(const Identity& caller, v1::Job* job) {
  if (CanSeeJob(caller, *job)) return;
  for (auto& [name, value] : *job->mutable_spec()->mutable_env()) value = "<redacted>";
}

std::string ScopedRequestId(const Identity& caller, absl::string_view request_id) {
  if (request_id.empty()) return "";
  return absl::StrCat(caller.user, "/", request_id);
}

}  // namespace joule
