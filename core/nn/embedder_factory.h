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
// (FAILED_PRECONDITION when CUDA is not available); INVALID_ARGUMENT for another name.
// The embedder is thread-safe without a lock (see core/nn/torch_embedder.h).
StatusOr<std::unique_ptr<Embedder>> LoadEmbedder(const std::string& path,
                                                 const std::string& device = "auto");

// Embedder over MakeTinyRandomModel(seed), on CPU.
std::unique_ptr<Embedder> MakeTinyRandomEmbedder(std::uint64_t seed = 0);

// Writes MakeTinyRandomModel(seed) to `path` (for test fixtures and smoke runs). Errors as
// SaveModel: the errno's code (NOT_FOUND for a missing directory, PERMISSION_DENIED, ...).
Status WriteTinyRandomModel(const std::string& path, std::uint64_t seed = 0);

// Sets LibTorch's intra-op thread count for the whole process (which also sets OpenMP's, so
// FAISS in the same process follows it). LibTorch may start with 1 thread whatever the core
// count; programs call this once at start. With other jobs on the cores, also run with
// OMP_WAIT_POLICY=PASSIVE. INVALID_ARGUMENT when `num_threads` < 1.
Status SetTorchThreads(int num_threads);

}  // namespace faceid
