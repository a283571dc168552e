// Training report: report.png from a run folder (metrics.jsonl, eval.json). No LibTorch.
//
// Panels: loss terms per epoch, training accuracy and validation AUC / rank-1 per epoch,
// test ROC curve (log FAR), genuine vs impostor similarity histograms, and a 2-D PCA
// projection of ~10 validation people coloured by person. Drawn with OpenCV (axes, ticks,
// labels and legends on every panel). Thread-compatible.
#pragma once

#include <string>

#include "core/status.h"

namespace faceid {

// Reads `run_dir`/metrics.jsonl (required) and `run_dir`/eval.json (optional: the ROC,
// histogram and projection panels say "no data" without it) and writes `output_png`.
// NOT_FOUND when metrics.jsonl is missing; INVALID_ARGUMENT when it has no epoch line or a
// malformed line (with its number); INTERNAL when the PNG cannot be written.
Status WriteReport(const std::string& run_dir, const std::string& output_png);

}  // namespace faceid
