// Fuzz target: the scheduler's submit path for a JobSpec as it arrives over
// gRPC (any bytes a client sends that decode as joule.v1.JobSpec):
// defaults, then validation, with the promises of spec/job_validation.h
// checked (see fuzz/spec_checks.h).
//
// Input: a serialized joule.v1.JobSpec; inputs that do not decode are
// skipped, as the gRPC layer refuses them.

#include <cstddef>
#include <cstdint>

#include "fuzz/spec_checks.h"
#include "joule/v1/job.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  joule::v1::JobSpec spec;
  if (!spec.ParseFromArray(data, static_cast<int>(size))) return 0;
  joule::fuzz::CheckSubmitPath(std::move(spec));
  return 0;
}
