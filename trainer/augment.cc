#include "trainer/augment.h"

#include <opencv2/imgproc.hpp>

namespace faceid {

namespace {

// Uniform in [-1, 1], the same on every platform (std distributions are not).
double Symmetric(std::mt19937_64& rng) {
  return double(rng() >> 11) / double(1ull << 53) * 2.0 - 1.0;
}

}  // namespace

cv::Mat AugmentCrop(const cv::Mat& crop, const AugmentOptions& options, std::mt19937_64& rng) {
  const bool flip = options.flip && (rng() & 1u);
  const double scale = 1.0 + options.max_scale * Symmetric(rng);
  const double dx = options.max_shift_frac * crop.cols * Symmetric(rng);
  const double dy = options.max_shift_frac * crop.rows * Symmetric(rng);
  const double brightness = options.max_brightness * 255.0 * Symmetric(rng);
  const double contrast = 1.0 + options.max_contrast * Symmetric(rng);

  const cv::Point2f centre(crop.cols / 2.0f, crop.rows / 2.0f);
  cv::Mat m = cv::getRotationMatrix2D(centre, 0.0, scale);
  m.at<double>(0, 2) += dx;
  m.at<double>(1, 2) += dy;
  if (flip) {
    // x' = (cols - 1) - x applied after the similarity.
    m.row(0) *= -1.0;
    m.at<double>(0, 2) += crop.cols - 1;
  }
  cv::Mat out;
  cv::warpAffine(crop, out, m, crop.size(), cv::INTER_LINEAR, cv::BORDER_REFLECT101);

  const cv::Scalar mean = cv::mean(out);
  const double grey = (mean[0] + mean[1] + mean[2]) / 3.0;
  out.convertTo(out, CV_8UC3, contrast, (1.0 - contrast) * grey + brightness);
  return out;
}

}  // namespace faceid
