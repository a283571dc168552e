// Runs the evaluation protocol (trainer/eval_metrics.h) with an Embedder on aligned images.
// No LibTorch. Thread-compatible (the Embedder itself is thread-safe).
#pragma once

#include "core/embedder.h"
#include "core/status.h"
#include "trainer/dataset.h"
#include "trainer/eval_metrics.h"

namespace faceid {

// Embeds every image of `set` in batches of `batch_size` and fills `out` (labels as in
// `set`). Embedder errors are passed through with the failing image's path.
Status EmbedSet(const Embedder& embedder, const AlignedSet& set, LabeledVectors* out,
                int batch_size = 64);

// EmbedSet + Evaluate. INVALID_ARGUMENT when `set` has fewer than two identities.
StatusOr<EvalResult> EvaluateEmbedder(const Embedder& embedder, const AlignedSet& set);

}  // namespace faceid
