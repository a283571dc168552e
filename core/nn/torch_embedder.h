// The LibTorch Embedder over an in-memory network, for code that holds an EmbeddingNet (the
// trainer's evaluation) rather than a model file. Torch-free code uses embedder_factory.h.
// Include only in LibTorch translation units.
#pragma once

#include <memory>
#include <string>

#include "core/embedder.h"
#include "core/model_info.h"
#include "core/nn/embedding_net.h"
#include "core/status.h"

namespace faceid {

// An Embedder over a deep copy of `net`'s current weights (so training `net` afterwards does
// not change the embedder, and the embedder's eval mode does not touch `net`). `info` gives the
// metadata info() returns; its `network` is replaced by net->options(). `device` as in
// LoadEmbedder: "auto", "cpu" or "cuda" (FAILED_PRECONDITION when CUDA is not available),
// INVALID_ARGUMENT for another name or a null net; INTERNAL if LibTorch fails to copy.
//
// The embedder is thread-safe without a lock: each Embed() runs its own forward pass under
// torch::InferenceMode on the shared eval-mode module, which no call writes. Batches of at
// most kMaxEmbedBatch crops are run at a time. It does not change torch's thread count
// (see SetTorchThreads in embedder_factory.h); concurrent calls share torch's one intra-op
// (OpenMP) pool, so many request threads times many torch threads oversubscribe a small
// machine: there, 1 or 2 torch threads and OMP_WAIT_POLICY=PASSIVE work best.
StatusOr<std::unique_ptr<Embedder>> MakeTorchEmbedder(ModelInfo info, EmbeddingNet net,
                                                      const std::string& device = "auto");

inline constexpr int kMaxEmbedBatch = 64;

}  // namespace faceid
