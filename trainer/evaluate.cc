#include "trainer/evaluate.h"

#include <algorithm>

namespace faceid {

Status EmbedSet(const Embedder& embedder, const AlignedSet& set, LabeledVectors* out,
                int batch_size) {
  out->vectors.clear();
  out->labels.clear();
  for (std::size_t start = 0; start < set.images.size(); start += std::size_t(batch_size)) {
    const std::size_t end = std::min(set.images.size(), start + std::size_t(batch_size));
    std::vector<cv::Mat> crops;
    for (std::size_t i = start; i < end; ++i) crops.push_back(set.images[i].crop);
    auto vectors = embedder.Embed(crops);
    if (!vectors.ok()) {
      return Status(vectors.status().code(), "embedding " + set.images[start].path + " .. " +
                                                 set.images[end - 1].path + ": " +
                                                 std::string(vectors.status().message()));
    }
    for (std::size_t i = start; i < end; ++i) {
      out->vectors.push_back(std::move((*vectors)[i - start]));
      out->labels.push_back(set.images[i].label);
    }
  }
  return absl::OkStatus();
}

StatusOr<EvalResult> EvaluateEmbedder(const Embedder& embedder, const AlignedSet& set) {
  if (set.names.size() < 2) {
    return absl::InvalidArgumentError(
        "evaluation needs at least two people with aligned images, "
        "got " +
        std::to_string(set.names.size()));
  }
  LabeledVectors vectors;
  FACEID_RETURN_IF_ERROR(EmbedSet(embedder, set, &vectors));
  return Evaluate(vectors);
}

}  // namespace faceid
