#include "agent/kubelet/pod_energy_metrics.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "common/proto_time.h"

namespace joule {
namespace {

// How many overflowed containers are remembered, per allowed series.
constexpr size_t kOverflowMemory = 4;

}  // namespace

PodEnergyMetrics::PodEnergyMetrics(prometheus::Registry& registry, std::string node,
                                   Options options)
    : node_(std::move(node)),
      options_(options),
      overflow_key_("", kOverflowPod, ""),
      energy_(prometheus::BuildCounter()
                  .Name("joule_pod_gpu_energy_joules_total")
                  .Help("GPU energy of a Kubernetes container that holds GPUs outside "
                        "Joule (kubelet PodResources), in joules; pod=\"_overflow\" "
                        "collects containers beyond the series cap.")
                  .Register(registry)),
      gpus_(prometheus::BuildGauge()
                .Name("joule_pod_gpus")
                .Help("GPUs a Kubernetes container holds outside Joule (kubelet "
                      "PodResources) at the last sample.")
                .Register(registry)),
      overflow_(prometheus::BuildCounter()
                    .Name("joule_pod_series_overflow_total")
                    .Help("Kubernetes containers whose GPU energy went to the "
                          "pod=\"_overflow\" series because the per-pod series cap "
                          "was reached.")
                    .Register(registry)) {
  // Present from the start, so that rates and alerts see it at 0.
  overflow_.Add({{"node", node_}});
}

PodEnergyMetrics::Series& PodEnergyMetrics::Create(const Key& key) {
  const prometheus::Labels labels = {{"node", node_},
                                     {"namespace", std::get<0>(key)},
                                     {"pod", std::get<1>(key)},
                                     {"container", std::get<2>(key)}};
  Series& series = series_[key];
  series.energy = &energy_.Add(labels);
  series.gpus = &gpus_.Add(labels);
  return series;
}

PodEnergyMetrics::Series& PodEnergyMetrics::SeriesFor(const Key& key, absl::Time now) {
  auto own = series_.find(key);
  if (own != series_.end()) return own->second;
  auto overflowed = overflowed_.find(key);
  if (overflowed == overflowed_.end()) {
    const int own_series = static_cast<int>(series_.size() - series_.count(overflow_key_));
    if (own_series < options_.max_series) return Create(key);
    overflow_.Add({{"node", node_}}).Increment();
    if (overflowed_.size() < kOverflowMemory * static_cast<size_t>(std::max(options_.max_series, 1))) {
      overflowed_[key] = now;
    }
  } else {
    overflowed->second = now;
  }
  auto series = series_.find(overflow_key_);
  return series != series_.end() ? series->second : Create(overflow_key_);
}

void PodEnergyMetrics::OnSample(const v1::NodeSample& sample) {
  const absl::Time now = FromProtoTime(sample.time());
  absl::MutexLock lock(&mu_);
  // GPUs held at this sample, by series.
  std::map<Series*, int> held;
  for (const v1::DeviceSample& device : sample.devices()) {
    if (device.kind() != v1::DEVICE_KIND_GPU) continue;
    // Cumulative since the agent started: the first sample's total is what
    // the GPU used until then.
    auto last = last_energy_j_.find(device.index());
    const double previous = last == last_energy_j_.end() ? 0 : last->second;
    const double delta = std::max(0.0, device.energy_j() - previous);
    last_energy_j_[device.index()] = device.energy_j();
    if (!device.has_held_by()) continue;
    const v1::KubernetesContainer& holder = device.held_by();
    Series& series =
        SeriesFor(Key(holder.namespace_(), holder.pod(), holder.container()), now);
    series.last_held = now;
    if (delta > 0) series.energy->Increment(delta);
    ++held[&series];
  }
  for (auto it = series_.begin(); it != series_.end();) {
    Series& series = it->second;
    auto count = held.find(&series);
    if (count == held.end() && series.last_held + options_.retention <= now) {
      energy_.Remove(series.energy);
      gpus_.Remove(series.gpus);
      it = series_.erase(it);
      continue;
    }
    series.gpus->Set(count == held.end() ? 0 : count->second);
    ++it;
  }
  for (auto it = overflowed_.begin(); it != overflowed_.end();) {
    it = it->second + options_.retention <= now ? overflowed_.erase(it) : std::next(it);
  }
}

int PodEnergyMetrics::series() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(series_.size() - series_.count(overflow_key_));
}

}  // namespace joule
