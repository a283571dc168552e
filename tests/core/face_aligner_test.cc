#include "core/face_aligner.h"

#include <cmath>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

namespace faceid {
namespace {

std::array<cv::Point2f, 5> Apply(const cv::Mat& m, const std::array<cv::Point2f, 5>& pts) {
  std::array<cv::Point2f, 5> out;
  for (int i = 0; i < 5; ++i) {
    out[i].x = static_cast<float>(m.at<double>(0, 0) * pts[i].x + m.at<double>(0, 1) * pts[i].y +
                                  m.at<double>(0, 2));
    out[i].y = static_cast<float>(m.at<double>(1, 0) * pts[i].x + m.at<double>(1, 1) * pts[i].y +
                                  m.at<double>(1, 2));
  }
  return out;
}

TEST(FaceAlignerTest, TemplateScalesWithCropSize) {
  const auto t112 = AlignmentTemplate(112);
  const auto t224 = AlignmentTemplate(224);
  EXPECT_NEAR(t112[0].x, 38.2946f, 1e-4);
  EXPECT_NEAR(t112[4].y, 92.2041f, 1e-4);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(t224[i].x, 2 * t112[i].x, 1e-4);
    EXPECT_NEAR(t224[i].y, 2 * t112[i].y, 1e-4);
  }
}

TEST(FaceAlignerTest, SimilarityRecoversRotationScaleAndShift) {
  const auto dst = AlignmentTemplate(112);
  // Source: the template turned by 30 degrees, scaled by 3 and moved.
  const double angle = 30 * CV_PI / 180, scale = 3.0;
  const cv::Mat forward = (cv::Mat_<double>(2, 3) << scale * std::cos(angle),
                           -scale * std::sin(angle), 400, scale * std::sin(angle),
                           scale * std::cos(angle), 250);
  const auto src = Apply(forward, dst);
  const cv::Mat m = SimilarityTransform(src, dst);
  const auto back = Apply(m, src);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(back[i].x, dst[i].x, 1e-3);
    EXPECT_NEAR(back[i].y, dst[i].y, 1e-3);
  }
  EXPECT_NEAR(std::hypot(m.at<double>(0, 0), m.at<double>(1, 0)), 1 / scale, 1e-6);
}

TEST(FaceAlignerTest, SimilarityNeverReflects) {
  auto src = AlignmentTemplate(112);
  for (auto& p : src) p.x = 200 - p.x;  // mirrored face
  const cv::Mat m = SimilarityTransform(src, AlignmentTemplate(112));
  const double det =
      m.at<double>(0, 0) * m.at<double>(1, 1) - m.at<double>(0, 1) * m.at<double>(1, 0);
  EXPECT_GT(det, 0);
}

TEST(FaceAlignerTest, LandmarksOnTheTemplateGiveTheTopLeftCropExactly) {
  cv::Mat img(200, 300, CV_8UC3);
  cv::randu(img, 0, 255);
  const cv::Mat crop = AlignToTemplate(img, AlignmentTemplate(112), 112);
  ASSERT_EQ(crop.size(), cv::Size(112, 112));
  EXPECT_EQ(cv::norm(crop, img(cv::Rect(0, 0, 112, 112)), cv::NORM_INF), 0);
}

TEST(FaceAlignerTest, FaceOffThePhotoIsPaddedBlack) {
  cv::Mat img(100, 100, CV_8UC3, cv::Scalar(200, 200, 200));
  auto pts = AlignmentTemplate(112);
  for (auto& p : pts) p -= cv::Point2f(60, 60);  // face centre near the top-left corner
  const cv::Mat crop = AlignToTemplate(img, pts, 112);
  EXPECT_EQ(crop.at<cv::Vec3b>(2, 2), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(crop.at<cv::Vec3b>(110, 110), cv::Vec3b(200, 200, 200));
}

TEST(FaceAlignerTest, LargeShrinkAveragesFineDetail) {
  // 1-px black/white stripes; a 10x shrink must give mid grey, not stripes or one colour.
  cv::Mat img(1200, 1200, CV_8UC3);
  for (int x = 0; x < img.cols; ++x) {
    img.col(x).setTo(x % 2 ? cv::Scalar(255, 255, 255) : cv::Scalar(0, 0, 0));
  }
  const cv::Mat m = (cv::Mat_<double>(2, 3) << 0.1, 0, 0, 0, 0.1, 0);
  const cv::Mat crop = WarpToCrop(img, m, 112);
  cv::Mat grey;
  cv::cvtColor(crop(cv::Rect(10, 10, 90, 90)), grey, cv::COLOR_BGR2GRAY);
  double lo = 0, hi = 0;
  cv::minMaxLoc(grey, &lo, &hi);
  EXPECT_GT(lo, 110);
  EXPECT_LT(hi, 145);
}

}  // namespace
}  // namespace faceid
