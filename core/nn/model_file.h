// The faceid model file: one file the trainer writes and the server loads as is.
//
// Layout (little-endian):
//   "FACEIDMF"                 8-byte magic
//   uint32 format_version      kModelFormatVersion; a newer version is refused
//   uint64 metadata_bytes      then that many bytes of UTF-8 JSON (ModelInfo::ToJson)
//   uint64 weights_bytes       then that many bytes of torch::save(EmbeddingNet) archive
//   32 bytes SHA-256 of everything before it (detects truncation and corruption)
// kModelFormatVersion and the torch-free reader/writer of this container are in
// core/model_info.h.
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

struct LoadedModel {
  ModelInfo info;
  EmbeddingNet net{nullptr};  // in eval mode, on CPU
};

// Writes atomically (temp file + fsync + rename). Fills info.version from the weights' hash
// and info.network from net->options(). Errors carry the errno's code: NOT_FOUND for a
// missing directory, PERMISSION_DENIED, RESOURCE_EXHAUSTED for a full disk; INTERNAL if
// LibTorch cannot serialise the net; INVALID_ARGUMENT for a null net, a non-finite
// threshold or NaN / infinite weights. Not thread-safe with respect to training `net`.
Status SaveModel(const std::string& path, ModelInfo info, EmbeddingNet net);

// NOT_FOUND for a missing file; PERMISSION_DENIED when it cannot be opened; INVALID_ARGUMENT
// for a directory, a wrong magic, a truncated or corrupt file, bad metadata, or weights that
// do not fit the declared network (missing tensors or other shapes) or that hold NaN or
// infinite values (a diverged training); FAILED_PRECONDITION for
// a future format version. Thread-safe.
StatusOr<LoadedModel> LoadModel(const std::string& path);

// A randomly initialised CpuSmall model (fixed seed): threshold 0.5, pipeline_version
// kPipelineVersion, in eval mode. For tests that need a model but not a trained one. The same
// seed gives the same weights and info.version; torch's global RNG state is left as it was.
// Thread-safe; deterministic unless another thread draws from torch's global generator at
// the same moment (module initialisation offers no private generator).
LoadedModel MakeTinyRandomModel(std::uint64_t seed = 0);

}  // namespace faceid
