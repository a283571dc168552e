// The faceid trainer: folders of face photos -> an embedding model file the server loads as is.
//
// RunFit lists and splits the datasets by identity, aligns every image through FacePipeline
// (cached on disk), trains EmbeddingNet with a linear head and the chosen losses, validates
// on the held-out identities after each epoch, checkpoints, and finally writes the model file
// with the calibrated threshold and the test metrics. This header does not include LibTorch.
// Not thread-safe: one RunFit per process at a time (it installs a SIGINT handler).
//
// Run folder layout (`out_dir`):
//   model.faceid          final model (best validation AUC), core model format
//   cache/                aligned-crop cache (default; see --cache-dir)
//   run/split.json        identity split, {"seed":N,"datasets":[...]}
//   run/metrics.jsonl     one JSON object per step ("type":"step") and per epoch ("epoch")
//   run/last.ckpt         checkpoint: weights, optimizer, epoch and step, RNG state, split
//   run/best.pt           weights of the best epoch so far
//   run/eval.json         test metrics, ROC points, score histograms, 2-D projection
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "trainer/eval_metrics.h"

namespace faceid {

struct FitOptions {
  std::vector<std::string> data;  // "DIR" or "DIR:crops", at least one
  std::string out_dir;
  std::string cache_dir;  // empty = out_dir/cache
  int epochs = 10;
  int batch = 64;
  double lr = 0.1;             // SGD, momentum 0.9, linear warm-up then cosine decay
  double weight_decay = 5e-4;  // network and head only, never the centres
  int warmup_epochs = 1;
  int embedding_dim = 128;
  int image_size = 64;               // network input side, pixels
  std::string preset = "cpu-small";  // cpu-small | gpu-large (core/model_info.h)
  std::string loss = "center";       // softmax | smooth | center | triplet
  double center_weight = 0.01;       // lambda
  double center_lr = 0.5;            // plain SGD rate of the centres
  double smoothing = 0.0;            // epsilon; "smooth" uses 0.1 when left at 0
  double margin = 0.2;               // triplet margin on cosine similarity
  int triplet_k = 4;                 // images per person in a triplet batch (P = batch / K)
  std::vector<double> split = {0.7, 0.15, 0.15};
  std::string device = "auto";  // auto | cpu | cuda
  int threads = 0;              // torch/OpenMP threads, 0 = all cores
  int loader_threads = 2;       // batch preparation threads (batches do not depend on it)
  int align_threads = 2;
  std::uint64_t seed = 0;
  std::string resume;  // checkpoint to continue from
  bool augment = true;
  int min_images = 2;
  int max_people = 0;             // per dataset, 0 = all
  int max_images_per_person = 0;  // 0 = all
  std::int64_t max_steps = 0;     // stop (checkpoint saved) after this many steps in total
  double time_budget_s = 0;       // stop (checkpoint saved) after this much training time
  bool progress_tty = false;      // draw the in-place bar (set by main when stdout is a TTY)
  double progress_every_s = 10;   // plain progress line period when not on a TTY
};

struct FitResult {
  std::string model_path;
  EvalResult val;  // of the kept model
  EvalResult test;
  float threshold = 0;
  std::int64_t steps = 0;  // global steps done, resumed ones included
  std::int64_t train_images = 0;
  std::int64_t train_identities = 0;
  std::int64_t skipped_images = 0;
  double images_per_s = 0;   // training throughput of this process, loader included
  bool interrupted = false;  // SIGINT: checkpoint written, no model file
};

// Errors: INVALID_ARGUMENT for bad options, an empty dataset or too few people to train;
// NOT_FOUND for a missing data folder or checkpoint; FAILED_PRECONDITION for --device cuda
// without CUDA or a checkpoint that does not match the data/options; INTERNAL when writing
// the run folder fails or LibTorch throws (with the step it failed in).
StatusOr<FitResult> RunFit(const FitOptions& options);

// SHA-256 (hex) of every weight and buffer in a checkpoint written by RunFit (network, head,
// centres), in a fixed order: equal digests mean bit-identical weights. NOT_FOUND /
// INVALID_ARGUMENT for a missing or unreadable checkpoint.
StatusOr<std::string> CheckpointWeightsDigest(const std::string& path);

}  // namespace faceid
