#include "examples/mlp.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace joule::examples {
namespace {

constexpr uint64_t kWeightsStream = 0x77656967687473ULL;

DenseLayer MakeLayer(int inputs, int outputs) {
  DenseLayer layer;
  layer.inputs = inputs;
  layer.outputs = outputs;
  layer.weights.assign(static_cast<size_t>(inputs) * outputs, 0.0f);
  layer.bias.assign(outputs, 0.0f);
  return layer;
}

// out[i][o] = b[o] + sum_k in[i][k] * w[o][k]; optionally ReLU. The inner
// loop runs over k in the same order for every row, whatever n is.
void DenseForward(const DenseLayer& layer, const float* in, int n, bool relu,
                  float* out) {
  for (int i = 0; i < n; ++i) {
    const float* x = in + static_cast<size_t>(i) * layer.inputs;
    float* y = out + static_cast<size_t>(i) * layer.outputs;
    for (int o = 0; o < layer.outputs; ++o) {
      const float* w = layer.weights.data() + static_cast<size_t>(o) * layer.inputs;
      float sum = 0.0f;
      for (int k = 0; k < layer.inputs; ++k) sum += x[k] * w[k];
      sum += layer.bias[o];
      y[o] = relu ? std::max(sum, 0.0f) : sum;
    }
  }
}

}  // namespace

double CrossEntropy(const float* logits, int classes, int label) {
  const float max_logit = *std::max_element(logits, logits + classes);
  double sum = 0.0;
  for (int c = 0; c < classes; ++c) sum += std::exp(logits[c] - max_logit);
  return std::log(sum) - (logits[label] - max_logit);
}

int ArgMax(const float* logits, int classes) {
  return static_cast<int>(std::max_element(logits, logits + classes) - logits);
}

Mlp::Mlp(uint64_t seed) {
  const int sizes[] = {kInputs, kHidden1, kHidden2, kClasses};
  SplitMix64 rng(MixSeed(seed, kWeightsStream));
  for (int l = 0; l < 3; ++l) {
    DenseLayer layer = MakeLayer(sizes[l], sizes[l + 1]);
    // He initialization keeps ReLU activations from shrinking or growing
    // layer by layer; the linear output layer gets the smaller LeCun scale so
    // the first logits are modest and the loss starts near ln(10).
    const bool output_layer = l == 2;
    const double scale = std::sqrt((output_layer ? 1.0 : 2.0) / sizes[l]);
    for (float& w : layer.weights) w = static_cast<float>(scale * rng.Gaussian());
    gradients_.push_back(MakeLayer(sizes[l], sizes[l + 1]));
    velocity_.push_back(MakeLayer(sizes[l], sizes[l + 1]));
    layers_.push_back(std::move(layer));
  }
  activations_.resize(layers_.size() + 1);
}

void Mlp::ForwardKeep(const float* inputs, int n) {
  activations_[0].assign(inputs, inputs + static_cast<size_t>(n) * kInputs);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const DenseLayer& layer = layers_[l];
    activations_[l + 1].resize(static_cast<size_t>(n) * layer.outputs);
    const bool hidden = l + 1 < layers_.size();
    DenseForward(layer, activations_[l].data(), n, hidden,
                 activations_[l + 1].data());
  }
}

void Mlp::Forward(const float* inputs, int n, std::vector<float>* logits) {
  ForwardKeep(inputs, n);
  *logits = activations_.back();
}

double Mlp::ComputeGradients(const float* inputs, const int* labels, int n) {
  assert(n > 0);
  ForwardKeep(inputs, n);

  // Output layer: d(mean CE)/d(logit) = (softmax - onehot) / n.
  const std::vector<float>& logits = activations_.back();
  delta_.assign(static_cast<size_t>(n) * kClasses, 0.0f);
  double loss = 0.0;
  for (int i = 0; i < n; ++i) {
    const float* z = logits.data() + static_cast<size_t>(i) * kClasses;
    float* d = delta_.data() + static_cast<size_t>(i) * kClasses;
    const float max_logit = *std::max_element(z, z + kClasses);
    double sum = 0.0;
    for (int c = 0; c < kClasses; ++c) {
      d[c] = std::exp(z[c] - max_logit);
      sum += d[c];
    }
    for (int c = 0; c < kClasses; ++c) {
      d[c] = static_cast<float>(d[c] / sum) / n;
    }
    d[labels[i]] -= 1.0f / n;
    loss += std::log(sum) - (z[labels[i]] - max_logit);
  }

  // Walk back through the layers; delta_ holds dLoss/d(pre-activation) of
  // layer l, which for hidden layers is the upstream gradient masked by ReLU.
  for (int l = static_cast<int>(layers_.size()) - 1; l >= 0; --l) {
    const DenseLayer& layer = layers_[l];
    DenseLayer& grad = gradients_[l];
    const std::vector<float>& in = activations_[l];
    std::fill(grad.weights.begin(), grad.weights.end(), 0.0f);
    std::fill(grad.bias.begin(), grad.bias.end(), 0.0f);
    for (int i = 0; i < n; ++i) {
      const float* d = delta_.data() + static_cast<size_t>(i) * layer.outputs;
      const float* x = in.data() + static_cast<size_t>(i) * layer.inputs;
      for (int o = 0; o < layer.outputs; ++o) {
        if (d[o] == 0.0f) continue;
        float* gw = grad.weights.data() + static_cast<size_t>(o) * layer.inputs;
        for (int k = 0; k < layer.inputs; ++k) gw[k] += d[o] * x[k];
        grad.bias[o] += d[o];
      }
    }
    if (l == 0) break;
    // Gradient w.r.t. this layer's input, masked by the previous ReLU (its
    // output `in` is zero exactly where the unit was inactive).
    next_delta_.assign(static_cast<size_t>(n) * layer.inputs, 0.0f);
    for (int i = 0; i < n; ++i) {
      const float* d = delta_.data() + static_cast<size_t>(i) * layer.outputs;
      float* nd = next_delta_.data() + static_cast<size_t>(i) * layer.inputs;
      for (int o = 0; o < layer.outputs; ++o) {
        if (d[o] == 0.0f) continue;
        const float* w = layer.weights.data() + static_cast<size_t>(o) * layer.inputs;
        for (int k = 0; k < layer.inputs; ++k) nd[k] += d[o] * w[k];
      }
      const float* x = in.data() + static_cast<size_t>(i) * layer.inputs;
      for (int k = 0; k < layer.inputs; ++k) {
        if (x[k] <= 0.0f) nd[k] = 0.0f;
      }
    }
    delta_.swap(next_delta_);
  }
  return loss / n;
}

void Mlp::ApplyGradients(float learning_rate, float momentum) {
  for (size_t l = 0; l < layers_.size(); ++l) {
    auto update = [&](std::vector<float>& param, const std::vector<float>& grad,
                      std::vector<float>& velocity) {
      for (size_t j = 0; j < param.size(); ++j) {
        velocity[j] = momentum * velocity[j] - learning_rate * grad[j];
        param[j] += velocity[j];
      }
    };
    update(layers_[l].weights, gradients_[l].weights, velocity_[l].weights);
    update(layers_[l].bias, gradients_[l].bias, velocity_[l].bias);
  }
}

double Mlp::TrainStep(const float* inputs, const int* labels, int n,
                      float learning_rate, float momentum) {
  const double loss = ComputeGradients(inputs, labels, n);
  ApplyGradients(learning_rate, momentum);
  return loss;
}

Evaluation Mlp::Evaluate(const Dataset& data) {
  Evaluation eval;
  if (data.size() == 0) return eval;
  constexpr int kChunk = 256;
  std::vector<float> logits;
  int correct = 0;
  for (int start = 0; start < data.size(); start += kChunk) {
    const int n = std::min(kChunk, data.size() - start);
    Forward(data.row(start), n, &logits);
    for (int i = 0; i < n; ++i) {
      const float* z = logits.data() + static_cast<size_t>(i) * kClasses;
      const int label = data.labels[start + i];
      eval.loss += CrossEntropy(z, kClasses, label);
      if (ArgMax(z, kClasses) == label) ++correct;
    }
  }
  eval.loss /= data.size();
  eval.accuracy = static_cast<double>(correct) / data.size();
  return eval;
}

}  // namespace joule::examples
