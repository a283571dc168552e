// EmbeddingNet: the compact residual CNN that maps a network input to an embedding.
//
// Input [N, 3, S, S] float32 in [-1, 1] (see CropToNetworkInput), S = options.input_size.
// Output [N, embedding_dim], not normalised (the trainer's head and centre loss work on the
// raw feature; serving L2-normalises it). The classifier head and the centres are the
// trainer's, not part of this module. Include only in LibTorch translation units.
#pragma once

#include <vector>

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include "core/model_info.h"

namespace faceid {

// Not thread-safe for training. In eval mode under torch::InferenceMode, concurrent forward()
// calls on one instance are safe: nothing in the module is written.
class EmbeddingNetImpl : public torch::nn::Module {
 public:
  // Throws c10::Error when `options` are inconsistent (empty or mismatched stage lists,
  // non-positive sizes, unknown architecture); ModelInfo::FromJson checks files' ranges.
  explicit EmbeddingNetImpl(const NetworkOptions& options);

  torch::Tensor forward(torch::Tensor input);

  const NetworkOptions& options() const { return options_; }

 private:
  NetworkOptions options_;
  torch::nn::Sequential body_{nullptr};   // stem + residual stages
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear embedding_{nullptr};  // pooled features -> embedding_dim
  torch::nn::BatchNorm1d embedding_bn_{nullptr};
};
TORCH_MODULE(EmbeddingNet);

// Batch of crops -> [N, 3, S, S] float32 tensor on `device` via CropToNetworkInput.
// `crops`: CV_8UC3 BGR images of any size (resized to input_size); an empty list gives
// [0, 3, S, S]. Throws c10::Error for an empty crop or another pixel type (callers that take
// user input validate it first, as the Embedder does).
torch::Tensor CropsToTensor(const std::vector<cv::Mat>& crops, int input_size,
                            const torch::Device& device);

}  // namespace faceid
