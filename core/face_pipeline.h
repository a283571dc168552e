// FacePipeline: the one preprocessing path of faceid, shared by trainer and server.
//
//   bytes -> DecodeImage -> detect faces (dlib HOG, or OpenCV cascade) -> 68 landmarks
//         -> similarity transform of 5 points to a fixed template -> aligned square crop
//
// The same input bytes and options give the same crop, byte for byte, wherever it runs.
// Thread-safe: one instance serves many threads (detectors are pooled internally; the
// 68-point model is loaded once per instance).
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
  // dlib pyramid upsampling steps before HOG detection; each doubles the image side and finds
  // faces half as small (HOG's smallest face is about 80 px without upsampling).
  int upsample = 1;
  // Detection runs on a copy downscaled so its longer side is at most this many pixels;
  // boxes are mapped back. 0 disables downscaling.
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
  // Loads the landmark model (and the cascade when chosen). NOT_FOUND / INVALID_ARGUMENT
  // with the path when a model file is missing or unreadable.
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

  // Same on an already decoded upright BGR image.
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
// Used by training and serving alike.
cv::Mat CropToNetworkInput(const cv::Mat& crop_bgr, int input_size);

}  // namespace faceid
