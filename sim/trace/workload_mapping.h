// Maps Philly trace jobs to the six workloads measured in the Zeus power
// trace, since the Philly trace records no model or dataset.
//
// Rule (deterministic, documented in sim/trace/README.md):
//   1. For each job, h = SplitMix64(seed XOR SplitMix64(job.id)).
//   2. workload = kWorkloads[h % 6]: a uniform choice among the six, fixed by
//      (seed, job id) alone, so it does not depend on the other jobs, their
//      order, or the `limit` the trace was loaded with.
//   3. default_batch_size = Zeus's default batch size b0 for that workload
//      (see ZeusDefaultBatchSize).
// Job size (GPUs, duration) does not influence the choice: the simulator
// scales a job's work to its trace duration, which is its own assumption.
//
// Workload names are "<dataset>/<network>" using exactly the strings in the
// `dataset` and `network` columns of summary_power_*.csv (Zeus NSDI'23 trace,
// ml-energy/zeus, Apache-2.0).
#ifndef JOULE_SIM_TRACE_WORKLOAD_MAPPING_H_
#define JOULE_SIM_TRACE_WORKLOAD_MAPPING_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "sim/trace/philly_trace.h"

namespace joule::sim {

// The six measured workloads, in the order the mapping indexes them.
inline constexpr std::array<absl::string_view, 6> kWorkloads = {
    "cifar100/shufflenetv2",          "imagenet/resnet50",
    "librispeech/deepspeech2",        "movielens-1m/ncf",
    "sentiment140/bert_base_uncased", "squad/bert_base_uncased",
};

struct MappedJob {
  TraceJob job;
  // One of kWorkloads.
  std::string workload;
  // Zeus's default batch size for `workload` (ZeusDefaultBatchSize).
  int32_t default_batch_size = 0;
};

// SplitMix64 finalizer (Steele, Lea & Flood, "Fast splittable pseudorandom
// number generators", OOPSLA 2014): a bijective 64-bit mix, so distinct
// inputs give well-spread, distinct outputs. The simulator's seeded choices
// all derive from it.
uint64_t SplitMix64(uint64_t x);

// Zeus's default (initial) batch size b0 per workload, from
// examples/research_reproducibility/zeus_nsdi23/run_alibaba.py
// (get_job_with_defaults) in ml-energy/zeus: cifar100 1024, imagenet 256,
// librispeech 192 (run_alibaba.py uses min(256, largest measured batch size),
// which is 192 on V100 and A40; run_single.py's default b_0 is also 192),
// movielens-1m 1024, sentiment140 128, squad 32. Zeus caps b0 at the largest
// batch size measured on the GPU; the simulator must do the same per GPU model
// (e.g. on RTX 6000 librispeech tops out at 128 and sentiment140 at 128).
// Returns 0 for an unknown workload.
int32_t ZeusDefaultBatchSize(absl::string_view workload);

// Maps every job by the rule above; output order equals input order.
std::vector<MappedJob> MapWorkloads(const std::vector<TraceJob>& jobs,
                                    uint64_t seed);

}  // namespace joule::sim

#endif  // JOULE_SIM_TRACE_WORKLOAD_MAPPING_H_
