// FaceAligner: five landmarks -> the aligned square crop of pipeline "faceid-align-v1".
//
// The template is the widely used ArcFace one for 112 x 112, scaled by crop_size / 112:
// left eye (38.29, 51.70), right eye (73.53, 51.50), nose tip (56.03, 71.74), left mouth
// corner (41.55, 92.37), right mouth corner (70.73, 92.20) ("left" = smaller x). The
// transform is the least-squares similarity (rotation, uniform scale, shift, no reflection)
// in closed form, so it depends on the points only: same points, same crop, byte for byte.
// Crop pixels outside the photo are black. Stateless functions, thread-safe.
#pragma once

#include <array>

#include <opencv2/core.hpp>

namespace faceid {

// The five template points for a crop_size x crop_size crop, pixels.
std::array<cv::Point2f, 5> AlignmentTemplate(int crop_size);

// 2 x 3 CV_64F matrix of the least-squares similarity mapping `src` onto `dst` (points in
// FaceLandmarks5 order). Five coincident source points give scale 1, rotation 0.
cv::Mat SimilarityTransform(const std::array<cv::Point2f, 5>& src,
                            const std::array<cv::Point2f, 5>& dst);

// Warps `bgr` (CV_8UC3) by the image -> crop transform `m` into a size x size crop, bilinear,
// black outside the photo. When `m` shrinks by more than 2x (a face much larger than the
// crop), the region the crop reads from is first shrunk with INTER_AREA so the final
// bilinear step scales by 0.5 and does not alias.
cv::Mat WarpToCrop(const cv::Mat& bgr, const cv::Mat& m, int size);

// The aligned crop for `landmarks` (pixels of `bgr`): SimilarityTransform onto
// AlignmentTemplate(crop_size), then WarpToCrop.
cv::Mat AlignToTemplate(const cv::Mat& bgr, const std::array<cv::Point2f, 5>& landmarks,
                        int crop_size);

}  // namespace faceid
