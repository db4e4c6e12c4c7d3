#include "sim/trace/workload_mapping.h"

#include <utility>

namespace joule::sim {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

int32_t ZeusDefaultBatchSize(absl::string_view workload) {
  if (workload == "cifar100/shufflenetv2") return 1024;
  if (workload == "imagenet/resnet50") return 256;
  if (workload == "librispeech/deepspeech2") return 192;
  if (workload == "movielens-1m/ncf") return 1024;
  if (workload == "sentiment140/bert_base_uncased") return 128;
  if (workload == "squad/bert_base_uncased") return 32;
  return 0;
}

std::vector<MappedJob> MapWorkloads(const std::vector<TraceJob>& jobs,
                                    uint64_t seed) {
  std::vector<MappedJob> mapped;
  mapped.reserve(jobs.size());
  for (const TraceJob& job : jobs) {
    const uint64_t h =
        SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(job.id)));
    const absl::string_view workload = kWorkloads[h % kWorkloads.size()];
    MappedJob m;
    m.job = job;
    m.workload = std::string(workload);
    m.default_batch_size = ZeusDefaultBatchSize(workload);
    mapped.push_back(std::move(m));
  }
  return mapped;
}

}  // namespace joule::sim
