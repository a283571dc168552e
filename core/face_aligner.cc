#include "core/face_aligner.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <opencv2/imgproc.hpp>

namespace faceid {
namespace {

// Where the five landmarks land in a 112 x 112 crop (the widely used ArcFace template);
// scaled by crop_size / 112 for other sizes. Order as in FaceLandmarks5.
constexpr float kTemplateSide = 112.f;
constexpr float kTemplate[5][2] = {{38.2946f, 51.6963f},
                                   {73.5318f, 51.5014f},
                                   {56.0252f, 71.7366f},
                                   {41.5493f, 92.3655f},
                                   {70.7299f, 92.2041f}};

// Crop pixels that fall outside the photo (faces touching its border) are this colour.
const cv::Scalar kPadColour(0, 0, 0);

}  // namespace

std::array<cv::Point2f, 5> AlignmentTemplate(int crop_size) {
  std::array<cv::Point2f, 5> points;
  const float scale = crop_size / kTemplateSide;
  for (int i = 0; i < 5; ++i) points[i] = {kTemplate[i][0] * scale, kTemplate[i][1] * scale};
  return points;
}

cv::Mat SimilarityTransform(const std::array<cv::Point2f, 5>& src,
                            const std::array<cv::Point2f, 5>& dst) {
  double sx = 0, sy = 0, dx = 0, dy = 0;
  for (int i = 0; i < 5; ++i) {
    sx += src[i].x;
    sy += src[i].y;
    dx += dst[i].x;
    dy += dst[i].y;
  }
  sx /= 5;
  sy /= 5;
  dx /= 5;
  dy /= 5;
  double a = 0, b = 0, norm = 0;
  for (int i = 0; i < 5; ++i) {
    const double px = src[i].x - sx, py = src[i].y - sy;
    const double qx = dst[i].x - dx, qy = dst[i].y - dy;
    a += px * qx + py * qy;
    b += px * qy - py * qx;
    norm += px * px + py * py;
  }
  // Five coincident points cannot be aligned: fall back to the identity scale.
  const double c = norm > 1e-9 ? a / norm : 1.0;
  const double s = norm > 1e-9 ? b / norm : 0.0;
  cv::Mat m = (cv::Mat_<double>(2, 3) << c, -s, dx - (c * sx - s * sy), s, c,
               dy - (s * sx + c * sy));
  return m;
}

cv::Mat WarpToCrop(const cv::Mat& bgr, const cv::Mat& m, int size) {
  cv::Mat crop;
  const double scale = std::hypot(m.at<double>(0, 0), m.at<double>(1, 0));
  cv::Mat inverse;
  cv::invertAffineTransform(m, inverse);
  const float side = static_cast<float>(size);
  const std::vector<cv::Point2f> corners = {{0.f, 0.f}, {side, 0.f}, {0.f, side}, {side, side}};
  std::vector<cv::Point2f> source;
  cv::transform(corners, source, inverse);
  const double k = 2.0 * scale;  // shrink factor of the first step
  const int margin = static_cast<int>(std::ceil(2.0 / std::max(k, 1e-6))) + 2;
  cv::Rect region = cv::boundingRect(source);
  region = cv::Rect(region.x - margin, region.y - margin, region.width + 2 * margin,
                    region.height + 2 * margin) &
           cv::Rect(0, 0, bgr.cols, bgr.rows);
  if (scale >= 0.5 || region.width < 2 || region.height < 2) {
    cv::warpAffine(bgr, crop, m, cv::Size(size, size), cv::INTER_LINEAR, cv::BORDER_CONSTANT,
                   kPadColour);
    return crop;
  }
  cv::Mat small;
  cv::resize(bgr(region), small,
             cv::Size(std::max(1, static_cast<int>(std::lround(region.width * k))),
                      std::max(1, static_cast<int>(std::lround(region.height * k)))),
             0, 0, cv::INTER_AREA);
  // A small-image pixel p maps to region.tl + (p + 0.5) / kx - 0.5 in the photo (resize's
  // pixel-centre convention); fold that into `m`.
  const double kx = static_cast<double>(small.cols) / region.width;
  const double ky = static_cast<double>(small.rows) / region.height;
  const double ox = region.x + 0.5 / kx - 0.5, oy = region.y + 0.5 / ky - 0.5;
  cv::Mat m_small(2, 3, CV_64F);
  for (int r = 0; r < 2; ++r) {
    const double a = m.at<double>(r, 0), b = m.at<double>(r, 1);
    m_small.at<double>(r, 0) = a / kx;
    m_small.at<double>(r, 1) = b / ky;
    m_small.at<double>(r, 2) = a * ox + b * oy + m.at<double>(r, 2);
  }
  cv::warpAffine(small, crop, m_small, cv::Size(size, size), cv::INTER_LINEAR,
                 cv::BORDER_CONSTANT, kPadColour);
  return crop;
}

cv::Mat AlignToTemplate(const cv::Mat& bgr, const std::array<cv::Point2f, 5>& landmarks,
                        int crop_size) {
  return WarpToCrop(bgr, SimilarityTransform(landmarks, AlignmentTemplate(crop_size)),
                    crop_size);
}

}  // namespace faceid
