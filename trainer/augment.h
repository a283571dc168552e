// Training-time augmentation of aligned face crops. No LibTorch.
//
// Horizontal flip, small shift/scale jitter and brightness/contrast, all drawn from the
// caller's generator, so a batch is a pure function of its seed. Thread-safe (no state).
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <random>

namespace faceid {

struct AugmentOptions {
  bool flip = true;              // mirror with probability 1/2
  double max_shift_frac = 0.06;  // shift up to this share of the side, each axis
  double max_scale = 0.08;       // scale in [1 - s, 1 + s]
  double max_brightness = 0.15;  // add up to +-this share of 255
  double max_contrast = 0.15;    // multiply around the mean by [1 - c, 1 + c]
};

// Returns an augmented copy of `crop` (CV_8UC3, same size); `crop` is not modified.
cv::Mat AugmentCrop(const cv::Mat& crop, const AugmentOptions& options, std::mt19937_64& rng);

}  // namespace faceid
