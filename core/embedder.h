// Embedder: aligned face crops -> L2-normalised embeddings.
//
// The interface the server and the evaluation code use; the LibTorch implementation lives in
// core/nn (LoadEmbedder), and tests may use a fake. Implementations are thread-safe: many
// threads may call Embed() at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "core/model_info.h"
#include "core/status.h"

namespace faceid {

class Embedder {
 public:
  virtual ~Embedder() = default;

  // `crops`: N aligned CV_8UC3 BGR crops of info().crop_size (other sizes are resized).
  // Returns N vectors of info().network.embedding_dim floats, each of unit L2 norm, in input
  // order. An empty input gives an empty output. INVALID_ARGUMENT for an empty or non-8UC3
  // crop.
  virtual StatusOr<std::vector<std::vector<float>>> Embed(
      const std::vector<cv::Mat>& crops) const = 0;

  virtual const ModelInfo& info() const = 0;

  // "cpu" or "cuda".
  virtual std::string device() const = 0;
};

}  // namespace faceid
