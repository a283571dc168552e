// Training losses of faceid: softmax cross-entropy, label smoothing, center loss, triplet.
//
// All take raw (not normalised) tensors on any device and return a scalar tensor that
// carries gradient. Pure functions, except CenterLoss, which owns the class centres (a
// torch::nn::Module; like any module, one instance is used by one training thread).
// Include only in LibTorch translation units.
#pragma once

#include <torch/torch.h>

namespace faceid {

// Mean over the batch of -log softmax(logits)[y]. logits [B, C] float, labels [B] int64 in
// [0, C).
torch::Tensor CrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels);

// Mean over the batch of -(1 - epsilon) * log p_y - epsilon * sum_i (1 / C) * log p_i, with p =
// softmax(logits); epsilon in [0, 1]. epsilon 0 equals CrossEntropy.
torch::Tensor SmoothedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                   double epsilon);

// Center loss (Wen et al. 2016): (1 / B) * sum_b 1/2 * ||x_b - c_{y_b}||^2 over a batch of B
// features x [B, D] with labels y [B] int64 in [0, C). The centres are the rows of a trainable
// torch::nn::Embedding(C, D) registered as "centers", so the optimizer moves them toward their
// class means. The weight lambda is applied by the caller. Exclude centers()->parameters()
// from weight decay (it would shrink them to zero) and give them their own learning rate.
class CenterLossImpl : public torch::nn::Module {
 public:
  // Centres start at small random values (normal, std 0.01) from torch's generator.
  CenterLossImpl(std::int64_t num_classes, std::int64_t dim);

  torch::Tensor forward(const torch::Tensor& features, const torch::Tensor& labels);

  // Call after backward of lambda * forward(features, labels) and before the optimizer step.
  // Rescales each centre's gradient row j by B / (lambda * (1 + n_j)), n_j the count of label j
  // in the batch, so that plain SGD at rate alpha performs the update of Wen et al. (eq. 4):
  // c_j -= alpha * sum_{b: y_b = j} (c_j - x_b) / (1 + n_j). Without it the centres would move at
  // alpha * lambda / B per sample (about 1e-4 for lambda 0.01, B 64), stay near zero, and the
  // loss would only shrink feature norms instead of clustering. The features' gradient is
  // unchanged. No-op when the centres have no gradient.
  void RescaleCenterGradient(const torch::Tensor& labels, double lambda);

  torch::nn::Embedding& centers() { return centers_; }

 private:
  torch::nn::Embedding centers_{nullptr};
};
TORCH_MODULE(CenterLoss);

// Mean over triplets of max(0, margin + cos(a, n) - cos(a, p)). anchor, positive, negative
// [T, D].
torch::Tensor TripletLoss(const torch::Tensor& anchor, const torch::Tensor& positive,
                          const torch::Tensor& negative, double margin);

// Batch-hard triplet loss for a P x K batch: for every anchor, its least similar positive
// and its most similar negative in the batch give one triplet of TripletLoss. Anchors
// without a positive or a negative in the batch are skipped; 0 when none is left.
torch::Tensor BatchHardTripletLoss(const torch::Tensor& features, const torch::Tensor& labels,
                                   double margin);

// Share of rows whose arg-max equals the label.
double Accuracy(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace faceid
