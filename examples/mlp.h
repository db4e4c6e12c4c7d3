// A small multi-layer perceptron with hand-written forward and backward
// passes, for the example workloads.
//
// Shape: 32 inputs -> 64 ReLU -> 32 ReLU -> 10 logits, softmax cross-entropy.
// It is meant to burn real CPU (or, in spirit, accelerator) time in a way
// whose cost scales with the batch size, and to learn something measurable,
// not to be fast: plain loops over std::vector<float>, no BLAS.
//
// Per-sample results do not depend on how samples are grouped into batches
// (every output is summed over its inputs in the same order), so
// batch_infer's checksums are the same at any batch size.
//
// Threading: not thread-safe; one instance per thread.

#ifndef JOULE_EXAMPLES_MLP_H_
#define JOULE_EXAMPLES_MLP_H_

#include <cstdint>
#include <vector>

#include "examples/synthetic_data.h"

namespace joule::examples {

// One fully connected layer; weights are out x in, row-major.
struct DenseLayer {
  int inputs = 0;
  int outputs = 0;
  std::vector<float> weights;
  std::vector<float> bias;
};

struct Evaluation {
  double loss = 0.0;      // Mean cross-entropy.
  double accuracy = 0.0;  // Share of argmax == label.
};

class Mlp {
 public:
  static constexpr int kInputs = 32;
  static constexpr int kHidden1 = 64;
  static constexpr int kHidden2 = 32;
  static constexpr int kClasses = 10;

  // He-initialized weights drawn from `seed`, zero biases.
  explicit Mlp(uint64_t seed);

  // Logits for `n` samples (row-major n x kInputs) into `logits` (n x kClasses).
  void Forward(const float* inputs, int n, std::vector<float>* logits);

  // Mean loss of the batch and its gradients, stored in this object for
  // ApplyGradients(). Labels must be in [0, kClasses).
  double ComputeGradients(const float* inputs, const int* labels, int n);
  // SGD with momentum: v = momentum * v - lr * g; w += v.
  void ApplyGradients(float learning_rate, float momentum);
  // ComputeGradients + ApplyGradients; returns the batch's mean loss.
  double TrainStep(const float* inputs, const int* labels, int n,
                   float learning_rate, float momentum);

  // Loss and accuracy over a whole data set (evaluated in chunks).
  Evaluation Evaluate(const Dataset& data);

  std::vector<DenseLayer>& layers() { return layers_; }
  // Gradients from the last ComputeGradients(), same shapes as layers().
  const std::vector<DenseLayer>& gradients() const { return gradients_; }

 private:
  // Runs the forward pass keeping every layer's output, for backprop.
  void ForwardKeep(const float* inputs, int n);

  std::vector<DenseLayer> layers_;
  std::vector<DenseLayer> gradients_;
  std::vector<DenseLayer> velocity_;
  // activations_[0] is a copy of the input, activations_[i] the output of
  // layer i-1 (after ReLU for hidden layers, raw logits for the last).
  std::vector<std::vector<float>> activations_;
  std::vector<float> delta_;
  std::vector<float> next_delta_;
};

// Numerically stable softmax cross-entropy of one row of logits.
double CrossEntropy(const float* logits, int classes, int label);
// Index of the largest logit (first one on ties).
int ArgMax(const float* logits, int classes);

}  // namespace joule::examples

#endif  // JOULE_EXAMPLES_MLP_H_
