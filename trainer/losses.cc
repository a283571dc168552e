#include "trainer/losses.h"

namespace faceid {

torch::Tensor CrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels) {
  return torch::nll_loss(torch::log_softmax(logits, 1), labels);
}

torch::Tensor SmoothedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                   double epsilon) {
  const torch::Tensor log_p = torch::log_softmax(logits, 1);
  const torch::Tensor nll = -log_p.gather(1, labels.unsqueeze(1)).squeeze(1);
  const torch::Tensor uniform = -log_p.mean(1);
  return ((1.0 - epsilon) * nll + epsilon * uniform).mean();
}

CenterLossImpl::CenterLossImpl(std::int64_t num_classes, std::int64_t dim) {
  centers_ = register_module("centers", torch::nn::Embedding(num_classes, dim));
  torch::NoGradGuard no_grad;
  centers_->weight.normal_(0.0, 0.01);
}

torch::Tensor CenterLossImpl::forward(const torch::Tensor& features, const torch::Tensor& labels) {
  const torch::Tensor diff = features - centers_(labels);
  return 0.5 * diff.pow(2).sum(1).mean();
}

void CenterLossImpl::RescaleCenterGradient(const torch::Tensor& labels, double lambda) {
  torch::Tensor grad = centers_->weight.grad();
  if (!grad.defined() || labels.numel() == 0 || lambda <= 0) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor counts =
      torch::bincount(labels, /*weights=*/{}, centers_->weight.size(0)).to(grad.dtype());
  const torch::Tensor scale = double(labels.numel()) / (lambda * (1.0 + counts));
  grad.mul_(scale.unsqueeze(1));
}

torch::Tensor TripletLoss(const torch::Tensor& anchor, const torch::Tensor& positive,
                          const torch::Tensor& negative, double margin) {
  namespace F = torch::nn::functional;
  const auto options = F::CosineSimilarityFuncOptions().dim(1);
  const torch::Tensor ap = F::cosine_similarity(anchor, positive, options);
  const torch::Tensor an = F::cosine_similarity(anchor, negative, options);
  return torch::clamp_min(margin + an - ap, 0.0).mean();
}

torch::Tensor BatchHardTripletLoss(const torch::Tensor& features, const torch::Tensor& labels,
                                   double margin) {
  const torch::Tensor unit = torch::nn::functional::normalize(
      features, torch::nn::functional::NormalizeFuncOptions().dim(1).eps(1e-12));
  const torch::Tensor sim = unit.matmul(unit.t());
  const torch::Tensor same = labels.unsqueeze(0) == labels.unsqueeze(1);
  const torch::Tensor self = torch::eye(
      labels.size(0), torch::TensorOptions().dtype(torch::kBool).device(labels.device()));
  const torch::Tensor positive_mask = same & ~self;
  const torch::Tensor negative_mask = ~same;
  // Least similar positive: masked entries pushed above every cosine.
  const torch::Tensor hardest_positive = std::get<0>(sim.masked_fill(~positive_mask, 3.0).min(1));
  const torch::Tensor hardest_negative = std::get<0>(sim.masked_fill(~negative_mask, -3.0).max(1));
  const torch::Tensor valid = positive_mask.any(1) & negative_mask.any(1);
  if (!valid.any().item<bool>()) return features.sum() * 0.0;
  const torch::Tensor loss = torch::clamp_min(margin + hardest_negative - hardest_positive, 0.0);
  return loss.masked_select(valid).mean();
}

double Accuracy(const torch::Tensor& logits, const torch::Tensor& labels) {
  if (labels.numel() == 0) return 0;
  return logits.argmax(1).eq(labels).to(torch::kFloat64).mean().item<double>();
}

}  // namespace faceid
