// Training report: report.png from a run folder (metrics.jsonl, eval.json). No LibTorch.
//
// A 1600x1000 picture, white background, five panels, each with title, axis labels, ticks
// and a legend outside the plot box: (a) loss terms per epoch (cross-entropy, centre and
// triplet when not all zero, total; the raw centre loss on its own right axis), (b) train
// accuracy and validation AUC / rank-1 per epoch, (c) test ROC, TAR over log FAR, with FAR
// 1e-3 and 1e-2 marked, (d) genuine vs impostor cosine similarity histograms with the
// threshold, (e) a 2-D PCA projection of ~10 validation people, one colour per person, named
// on the right. Drawn with PLplot's C++ binding into memory (Cairo "memcairo" device, Debian
// plplot-driver-cairo) and encoded as PNG by OpenCV; PLplot opens no file or window and
// prints nothing on success. Thread-safe: calls are serialised, as PLplot has global state.
#pragma once

#include <string>

#include "core/status.h"

namespace faceid {

// Reads `run_dir`/metrics.jsonl (required) and `run_dir`/eval.json (optional: the ROC,
// histogram and projection panels say "no data" without it) and writes `output_png`.
// NOT_FOUND when metrics.jsonl is missing; INVALID_ARGUMENT when it has no epoch line or a
// malformed line (with its number); INTERNAL when PLplot cannot draw (e.g. its Cairo
// driver is not installed: the message names the package) or the PNG cannot be written.
Status WriteReport(const std::string& run_dir, const std::string& output_png);

}  // namespace faceid
