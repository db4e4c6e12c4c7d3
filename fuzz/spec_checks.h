// What the scheduler's submit path does with a job spec, with the documented
// guarantees checked: shared by the YAML and the protobuf job-spec targets.

#ifndef JOULE_FUZZ_SPEC_CHECKS_H_
#define JOULE_FUZZ_SPEC_CHECKS_H_

#include "joule/v1/job.pb.h"

namespace joule::fuzz {

// Applies the defaults and validates `spec` as SubmitJob does, and aborts
// when a promise of spec/job_validation.h does not hold: defaults applied
// twice change nothing, validation is deterministic, and a spec that passes
// is within every limit the header lists.
void CheckSubmitPath(v1::JobSpec spec);

}  // namespace joule::fuzz

#endif  // JOULE_FUZZ_SPEC_CHECKS_H_
