#include "examples/synthetic_data.h"

#include <cmath>

namespace joule::examples {
namespace {

// Stream tags keep the centers, the shards and the validation set apart even
// when a shard index equals a tag.
constexpr uint64_t kCentersStream = 0x63656e7465727321ULL;
constexpr uint64_t kShardStream = 0x7368617264730000ULL;
constexpr uint64_t kValidationStream = 0x76616c6964617465ULL;

constexpr double kTwoPi = 6.283185307179586;

}  // namespace

uint64_t MixSeed(uint64_t seed, uint64_t stream) {
  // Two rounds of the SplitMix64 finalizer over both inputs.
  SplitMix64 mixer(seed ^ (stream * 0x9e3779b97f4a7c15ULL));
  mixer.Next();
  return mixer.Next() ^ stream;
}

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double SplitMix64::Uniform() {
  // The top 53 bits fill a double's mantissa exactly.
  return static_cast<double>(Next() >> 11) * 0x1.0p-53;
}

double SplitMix64::Gaussian() {
  // 1 - Uniform() is in (0, 1], so the log is finite.
  const double u1 = 1.0 - Uniform();
  const double u2 = Uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

int SplitMix64::Below(int n) {
  // Modulo bias is below 2^-40 for the small n used here.
  return static_cast<int>(Next() % static_cast<uint64_t>(n));
}

ClusterMixture::ClusterMixture(uint64_t seed, int num_features,
                               int num_classes, double spread, double noise)
    : seed_(seed),
      num_features_(num_features),
      num_classes_(num_classes),
      noise_(noise),
      centers_(static_cast<size_t>(num_classes) * num_features) {
  SplitMix64 rng(MixSeed(seed, kCentersStream));
  for (float& c : centers_) {
    c = static_cast<float>((2.0 * rng.Uniform() - 1.0) * spread);
  }
}

Dataset ClusterMixture::Generate(uint64_t stream_seed, int num_samples) const {
  Dataset data;
  data.num_features = num_features_;
  data.features.resize(static_cast<size_t>(num_samples) * num_features_);
  data.labels.resize(num_samples);
  SplitMix64 rng(stream_seed);
  for (int i = 0; i < num_samples; ++i) {
    const int label = rng.Below(num_classes_);
    data.labels[i] = label;
    const float* center = centers_.data() + label * num_features_;
    float* out = data.features.data() + static_cast<size_t>(i) * num_features_;
    for (int f = 0; f < num_features_; ++f) {
      out[f] = center[f] + static_cast<float>(noise_ * rng.Gaussian());
    }
  }
  return data;
}

Dataset ClusterMixture::Shard(int shard, int num_samples) const {
  return Generate(MixSeed(MixSeed(seed_, kShardStream), static_cast<uint64_t>(shard)),
                  num_samples);
}

Dataset ClusterMixture::Validation(int num_samples) const {
  return Generate(MixSeed(seed_, kValidationStream), num_samples);
}

}  // namespace joule::examples
