// The faceid model file: one file the trainer writes and the server loads as is.
//
// Layout (little-endian):
//   "FACEIDMF"                 8-byte magic
//   uint32 format_version      kModelFormatVersion; a newer version is refused
//   uint64 metadata_bytes      then that many bytes of UTF-8 JSON (ModelInfo::ToJson)
//   uint64 weights_bytes       then that many bytes of torch::save(EmbeddingNet) archive
//   32 bytes SHA-256 of everything before it (detects truncation and corruption)
// Include only in LibTorch translation units.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

#include "core/embedder.h"
#include "core/model_info.h"
#include "core/nn/embedding_net.h"
#include "core/status.h"

namespace faceid {

inline constexpr std::uint32_t kModelFormatVersion = 1;

struct LoadedModel {
  ModelInfo info;
  EmbeddingNet net{nullptr};  // in eval mode, on CPU
};

// Writes atomically (temp file + rename). Fills info.version from the weights' hash.
Status SaveModel(const std::string& path, ModelInfo info, EmbeddingNet net);

// NOT_FOUND for a missing file; INVALID_ARGUMENT for a wrong magic, a truncated or corrupt
// file, or bad metadata; FAILED_PRECONDITION for a future format version.
StatusOr<LoadedModel> LoadModel(const std::string& path);

// A randomly initialised CpuSmall model (fixed seed): threshold 0.5, pipeline_version
// kPipelineVersion. For tests that need a model but not a trained one.
LoadedModel MakeTinyRandomModel(std::uint64_t seed = 0);

}  // namespace faceid
