// Deterministic synthetic data for the example workloads.
//
// The workloads must produce the same data for the same (seed, shard) on every
// replica and every run, so that a shard moved to another replica yields the
// same samples and batch_infer's checksums can be compared across runs. The
// standard library's distributions are implementation-defined, so this file
// brings its own generator (SplitMix64) and Gaussian sampler (Box-Muller).
//
// Threading: value types and const methods only; safe to share read-only.

#ifndef JOULE_EXAMPLES_SYNTHETIC_DATA_H_
#define JOULE_EXAMPLES_SYNTHETIC_DATA_H_

#include <cstdint>
#include <vector>

namespace joule::examples {

// Combines a seed with a stream identifier into a well-mixed seed, so that
// nearby seeds (1, 2, 3) and nearby shards still give unrelated streams.
uint64_t MixSeed(uint64_t seed, uint64_t stream);

// SplitMix64: tiny, fast, and good enough for synthetic data; chosen because
// its output is fully specified (unlike std::normal_distribution's).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next();
  // Uniform in [0, 1).
  double Uniform();
  // Standard normal via Box-Muller (one value per call; the second one is
  // dropped to keep the sequence independent of call history).
  double Gaussian();
  // Uniform integer in [0, n).
  int Below(int n);

 private:
  uint64_t state_;
};

// Samples stored row-major: row i is features [i * num_features, (i+1) * ...).
struct Dataset {
  int num_features = 0;
  std::vector<float> features;
  std::vector<int> labels;

  int size() const { return static_cast<int>(labels.size()); }
  const float* row(int i) const { return features.data() + i * num_features; }
};

// A mixture of Gaussian clusters, one per class: learnable by a small MLP but
// noisy enough that the loss keeps falling for a few epochs.
//
// Algorithm:
//  1. Cluster centers are drawn once from the seed: each coordinate uniform in
//     [-spread, spread].
//  2. A sample from stream s picks its class uniformly, then adds isotropic
//     Gaussian noise with standard deviation `noise` to that class's center.
//  3. Shard k is stream MixSeed(seed, k) of its own; the validation set is a
//     separate stream no shard can collide with.
class ClusterMixture {
 public:
  static constexpr int kDefaultFeatures = 32;
  static constexpr int kDefaultClasses = 10;

  explicit ClusterMixture(uint64_t seed, int num_features = kDefaultFeatures,
                          int num_classes = kDefaultClasses,
                          double spread = 1.0, double noise = 1.0);

  // The `num_samples` samples of shard `shard`; the same for the same seed.
  Dataset Shard(int shard, int num_samples) const;
  // A held-out set drawn from the same distribution as every shard.
  Dataset Validation(int num_samples) const;

  int num_features() const { return num_features_; }
  int num_classes() const { return num_classes_; }

 private:
  Dataset Generate(uint64_t stream_seed, int num_samples) const;

  uint64_t seed_;
  int num_features_;
  int num_classes_;
  double noise_;
  std::vector<float> centers_;  // num_classes x num_features, row-major.
};

}  // namespace joule::examples

#endif  // JOULE_EXAMPLES_SYNTHETIC_DATA_H_
