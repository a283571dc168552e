// Factories for the LibTorch Embedder. This header does not include LibTorch, so the server
// and other torch-free translation units can create embedders.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/embedder.h"
#include "core/status.h"

namespace faceid {

// Loads a model file (errors as LoadModel in model_file.h) into an Embedder that batches
// under inference mode. `device`: "auto" (CUDA when available, else CPU), "cpu" or "cuda"
// (FAILED_PRECONDITION when CUDA is not available).
StatusOr<std::unique_ptr<Embedder>> LoadEmbedder(const std::string& path,
                                                 const std::string& device = "auto");

// Embedder over MakeTinyRandomModel(seed), on CPU.
std::unique_ptr<Embedder> MakeTinyRandomEmbedder(std::uint64_t seed = 0);

// Writes MakeTinyRandomModel(seed) to `path` (for test fixtures and smoke runs).
Status WriteTinyRandomModel(const std::string& path, std::uint64_t seed = 0);

}  // namespace faceid
