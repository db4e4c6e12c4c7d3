// Fuzz target: the client's job-file parser (spec/job_yaml.h) and, for the
// files it accepts, the scheduler's submit path (spec/job_validation.h).
//
// Input: a job file. Its first line also goes to ParseQuantity, which must
// leave its output alone when it refuses the text. The parser must never
// crash or let a yaml-cpp exception out, and must answer OK or
// INVALID_ARGUMENT only.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/spec_checks.h"
#include "joule/v1/job.pb.h"
#include "spec/job_yaml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using joule::fuzz::CheckSubmitPath;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);

  constexpr int64_t kUntouched = 0x5eed;
  int64_t bytes = kUntouched;
  const absl::Status quantity =
      joule::ParseQuantity(text.substr(0, text.find('\n')), &bytes);
  if (!quantity.ok()) {
    FUZZ_CHECK(quantity.code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK_MSG(bytes == kUntouched, "ParseQuantity changed its output on error");
  }

  absl::StatusOr<joule::v1::JobSpec> spec = joule::ParseJobYaml(text);
  if (!spec.ok()) {
    FUZZ_CHECK_MSG(spec.status().code() == absl::StatusCode::kInvalidArgument,
                   absl::StrCat("ParseJobYaml: ", spec.status().ToString()));
    return 0;
  }
  CheckSubmitPath(*std::move(spec));
  return 0;
}
