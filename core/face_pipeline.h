// FacePipeline: the one preprocessing path of faceid, shared by trainer and server.
//
//   bytes -> DecodeImage -> detect faces (dlib HOG, or OpenCV cascade) -> 68 landmarks
//         -> similarity transform of 5 points to a fixed template -> aligned square crop
//
// The same input bytes and options give the same crop, byte for byte, wherever it runs.
// Thread-safe: one instance serves many threads (detectors are pooled internally; the
// 68-point model is loaded once per instance).
//
// Alignment (kPipelineVersion "faceid-align-v1"):
//  - five points from the 68: eye centres = mean of points 36-41 and 42-47, nose tip = 30,
//    mouth corners = 48 and 54;
//  - least-squares similarity transform (rotation, uniform scale, shift; closed form, no
//    RANSAC) onto the ArcFace template for 112 x 112, scaled by crop_size / 112:
//    (38.29, 51.70) (73.53, 51.50) (56.03, 71.74) (41.55, 92.37) (70.73, 92.20);
//  - bilinear warp; crop pixels outside the photo are black (0, 0, 0). A face more than
//    twice the crop size is first shrunk (INTER_AREA, its region only) so the warp does not
//    alias.
// Whole-image mode: the centred square of side min(width, height) is resized to crop_size
// (INTER_AREA when shrinking, bilinear when enlarging); att_orl's 92 x 112 loses 10 rows at
// the top and bottom.
// Detection: HOG on a grey copy shrunk to max_detect_side_px (INTER_AREA), enlarged 2x per
// upsample step (bilinear); boxes are mapped back to the upright image and sorted by area,
// largest first (ties: top, then left).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

#include "core/image_decoder.h"
#include "core/status.h"

namespace faceid {

// Identifies the alignment (template, crop size, interpolation). Bump when any of it changes:
// caches and model files record it, and the server refuses a model trained with another.
inline constexpr char kPipelineVersion[] = "faceid-align-v1";

enum class DetectorBackend { kDlibHog, kOpenCvCascade };

struct PipelineOptions {
  DecodeLimits limits;
  DetectorBackend detector = DetectorBackend::kDlibHog;
  // Upsampling steps before HOG detection (0..3); each doubles the image side and finds faces
  // half as small (HOG's smallest face is about 80 px without upsampling). Default 1: on the
  // labelled scenes/multi_face photos (29 faces of 37-90 px) recall is 0.38 with 0 and 1.00
  // with 1, at about 3x the detection time (bench/core).
  int upsample = 1;
  // Detection runs on a copy downscaled so its longer side is at most this many pixels;
  // boxes are mapped back. 0 disables downscaling; otherwise at least 64.
  int max_detect_side_px = 1024;
  // Faces whose box side is below this are not returned by Process() when
  // `for_enrollment` is set (too small to recognise reliably).
  int min_face_px = 40;
  int crop_size = 112;  // side of the aligned crop, pixels
  std::string landmark_model_path = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat";
  std::string cascade_path = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";
};

enum class FaceMode {
  kDetect,     // find faces with the detector
  kWholeImage  // the input is already a face crop: the whole image is the face
};

struct FaceLandmarks5 {
  // left eye centre, right eye centre, nose tip, left mouth corner, right mouth corner
  // ("left" = smaller x in the image), pixels of the upright image.
  std::array<cv::Point2f, 5> points;
};

struct AlignedFace {
  cv::Rect box;              // detector box in the upright image (may cross its border)
  float score = 0.f;         // detector score (1.0 in kWholeImage mode)
  FaceLandmarks5 landmarks;  // zero in kWholeImage mode
  cv::Mat crop;              // CV_8UC3 BGR, crop_size x crop_size, aligned
};

struct PipelineResult {
  int image_width = 0;   // upright image
  int image_height = 0;
  std::vector<AlignedFace> faces;  // sorted by box area, largest first; may be empty
};

class FacePipeline {
 public:
  // Loads the landmark model (about 0.5 s; and the cascade when chosen). NOT_FOUND with the
  // path when a model file is missing or unreadable, INVALID_ARGUMENT when it is not a
  // 68-point dlib shape predictor / OpenCV cascade, or when an option is out of range
  // (crop_size 16..1024, upsample 0..3, min_face_px >= 0, max_detect_side_px 0 or >= 64).
  static StatusOr<std::unique_ptr<FacePipeline>> Create(const PipelineOptions& options);
  ~FacePipeline();

  FacePipeline(const FacePipeline&) = delete;
  FacePipeline& operator=(const FacePipeline&) = delete;

  // Decodes `bytes` and returns its faces. `max_faces` 0 = all, 1 = only the largest.
  // `for_enrollment` drops faces below min_face_px (INVALID_ARGUMENT "face too small" if that
  // leaves none while some were found). No face is OK with an empty list. Decode errors are
  // passed through.
  StatusOr<PipelineResult> Process(std::string_view bytes, FaceMode mode, int max_faces = 0,
                                   bool for_enrollment = false) const;

  // Same on an already decoded upright BGR image (CV_8UC3, else INVALID_ARGUMENT). A library
  // failure inside detection or alignment comes back as INTERNAL (RESOURCE_EXHAUSTED when
  // out of memory); no exception escapes.
  StatusOr<PipelineResult> ProcessImage(const cv::Mat& bgr, FaceMode mode, int max_faces = 0,
                                        bool for_enrollment = false) const;

  const PipelineOptions& options() const { return options_; }

 private:
  class Impl;
  FacePipeline(const PipelineOptions& options, std::unique_ptr<Impl> impl);

  PipelineOptions options_;
  std::unique_ptr<Impl> impl_;
};

// Network input from an aligned crop: resized (INTER_AREA) to input_size x input_size,
// BGR -> RGB, float32 scaled to [-1, 1] ((v / 255 - 0.5) / 0.5). Returns CV_32FC3, HWC.
// Used by training and serving alike. Returns an empty Mat when `crop_bgr` is empty or not
// CV_8UC3, or input_size < 1.
cv::Mat CropToNetworkInput(const cv::Mat& crop_bgr, int input_size);

}  // namespace faceid
