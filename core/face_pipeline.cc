#include "core/face_pipeline.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>
#include <new>
#include <utility>

#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_processing/shape_predictor.h>
#include <dlib/opencv/cv_image.h>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>

#include "core/face_aligner.h"

namespace faceid {
namespace {

struct Detection {
  cv::Rect box;  // upright full-resolution image coordinates
  float score = 0.f;
};

cv::Point2f Mean(const dlib::full_object_detection& shape, unsigned first, unsigned last) {
  double x = 0, y = 0;
  for (unsigned i = first; i <= last; ++i) {
    x += shape.part(i).x();
    y += shape.part(i).y();
  }
  const double n = last - first + 1;
  return {static_cast<float>(x / n), static_cast<float>(y / n)};
}

Status ValidateOptions(const PipelineOptions& o) {
  if (o.crop_size < 16 || o.crop_size > 1024) {
    return absl::InvalidArgumentError("crop_size must be 16..1024 px, got " +
                                      std::to_string(o.crop_size));
  }
  if (o.upsample < 0 || o.upsample > 3) {
    return absl::InvalidArgumentError("upsample must be 0..3, got " + std::to_string(o.upsample));
  }
  if (o.max_detect_side_px != 0 && o.max_detect_side_px < 64) {
    return absl::InvalidArgumentError("max_detect_side_px must be 0 (off) or at least 64, got " +
                                      std::to_string(o.max_detect_side_px));
  }
  if (o.min_face_px < 0) return absl::InvalidArgumentError("min_face_px must be >= 0");
  return absl::OkStatus();
}

bool FileReadable(const std::string& path) { return std::ifstream(path).good(); }

}  // namespace

// Owns the read-only landmark model and the pools of detectors (dlib's and OpenCV's
// detectors keep scratch buffers, so each is used by one thread at a time).
class FacePipeline::Impl {
 public:
  explicit Impl(const PipelineOptions& options) : options_(options) {}

  Status Load() {
    if (!FileReadable(options_.landmark_model_path)) {
      return absl::NotFoundError("landmark model not found or unreadable: " +
                                 options_.landmark_model_path +
                                 " (it comes with the Debian package libdlib-data)");
    }
    try {
      dlib::deserialize(options_.landmark_model_path) >> predictor_;
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError("landmark model " + options_.landmark_model_path +
                                        " is not a dlib shape predictor: " + e.what());
    }
    if (predictor_.num_parts() != 68) {
      return absl::InvalidArgumentError("landmark model " + options_.landmark_model_path +
                                        " has " + std::to_string(predictor_.num_parts()) +
                                        " points, 68 are needed");
    }
    if (options_.detector == DetectorBackend::kOpenCvCascade) {
      if (!FileReadable(options_.cascade_path)) {
        return absl::NotFoundError("face cascade not found or unreadable: " +
                                   options_.cascade_path + " (Debian package opencv-data)");
      }
      auto cascade = std::make_unique<cv::CascadeClassifier>();
      if (!cascade->load(options_.cascade_path)) {
        return absl::InvalidArgumentError("not an OpenCV cascade file: " + options_.cascade_path);
      }
      cascades_.push_back(std::move(cascade));
    }
    return absl::OkStatus();
  }

  StatusOr<PipelineResult> Run(const cv::Mat& bgr, FaceMode mode, int max_faces,
                               bool for_enrollment) {
    if (bgr.empty() || bgr.type() != CV_8UC3) {
      return absl::InvalidArgumentError("ProcessImage needs a non-empty 8-bit BGR image");
    }
    PipelineResult result;
    result.image_width = bgr.cols;
    result.image_height = bgr.rows;
    if (mode == FaceMode::kWholeImage) {
      result.faces.push_back(WholeImageFace(bgr));
    } else {
      std::vector<Detection> detections =
          options_.detector == DetectorBackend::kDlibHog ? DetectHog(bgr) : DetectCascade(bgr);
      SortLargestFirst(detections);
      const cv::Mat bgr_continuous = bgr.isContinuous() ? bgr : bgr.clone();
      for (const Detection& d : detections) result.faces.push_back(AlignFace(bgr_continuous, d));
    }

    if (for_enrollment) {
      const std::size_t found = result.faces.size();
      const int min_px = options_.min_face_px;
      result.faces.erase(std::remove_if(result.faces.begin(), result.faces.end(),
                                        [min_px](const AlignedFace& f) {
                                          return std::min(f.box.width, f.box.height) < min_px;
                                        }),
                         result.faces.end());
      if (found > 0 && result.faces.empty()) {
        return absl::InvalidArgumentError(
            "face too small: " + std::to_string(found) + " face(s) found, all below " +
            std::to_string(min_px) + " px; upload a closer or larger photo");
      }
    }
    if (max_faces > 0 && result.faces.size() > static_cast<std::size_t>(max_faces)) {
      result.faces.resize(max_faces);
    }
    return result;
  }

 private:
  // The image is shrunk so its longer side is at most max_detect_side_px (INTER_AREA), then
  // enlarged 2^upsample times (bilinear) for the HOG scan; `scale` maps back to the input.
  cv::Mat DetectionImage(const cv::Mat& bgr, int upsample, double* scale) const {
    cv::Mat grey;
    cv::cvtColor(bgr, grey, cv::COLOR_BGR2GRAY);
    *scale = 1.0;
    const int longer = std::max(bgr.cols, bgr.rows);
    if (options_.max_detect_side_px > 0 && longer > options_.max_detect_side_px) {
      *scale = static_cast<double>(options_.max_detect_side_px) / longer;
      cv::Mat small;
      cv::resize(grey, small,
                 cv::Size(std::max(1, static_cast<int>(std::lround(bgr.cols * *scale))),
                          std::max(1, static_cast<int>(std::lround(bgr.rows * *scale)))),
                 0, 0, cv::INTER_AREA);
      grey = small;
    }
    for (int i = 0; i < upsample; ++i) {
      cv::Mat up;
      cv::resize(grey, up, cv::Size(grey.cols * 2, grey.rows * 2), 0, 0, cv::INTER_LINEAR);
      grey = up;
      *scale *= 2;
    }
    return grey;
  }

  static cv::Rect MapBack(double left, double top, double right, double bottom, double scale) {
    const int x0 = static_cast<int>(std::lround(left / scale));
    const int y0 = static_cast<int>(std::lround(top / scale));
    const int x1 = static_cast<int>(std::lround(right / scale));
    const int y1 = static_cast<int>(std::lround(bottom / scale));
    return {x0, y0, std::max(1, x1 - x0), std::max(1, y1 - y0)};
  }

  std::vector<Detection> DetectHog(const cv::Mat& bgr) {
    double scale = 1.0;
    const cv::Mat grey = DetectionImage(bgr, options_.upsample, &scale);
    std::unique_ptr<dlib::frontal_face_detector> detector = TakeHog();
    std::vector<dlib::rect_detection> found;
    try {
      (*detector)(dlib::cv_image<unsigned char>(grey), found);
    } catch (...) {
      GiveBack(std::move(detector));
      throw;
    }
    GiveBack(std::move(detector));
    std::vector<Detection> out;
    for (const dlib::rect_detection& d : found) {
      // dlib rectangles are inclusive: right/bottom + 1 is the exclusive edge.
      out.push_back({MapBack(d.rect.left(), d.rect.top(), d.rect.right() + 1.0,
                             d.rect.bottom() + 1.0, scale),
                     static_cast<float>(d.detection_confidence)});
    }
    return out;
  }

  std::vector<Detection> DetectCascade(const cv::Mat& bgr) {
    double scale = 1.0;
    cv::Mat grey = DetectionImage(bgr, /*upsample=*/0, &scale);
    cv::equalizeHist(grey, grey);
    std::unique_ptr<cv::CascadeClassifier> cascade = TakeCascade();
    std::vector<cv::Rect> boxes;
    std::vector<int> neighbours;
    try {
      cascade->detectMultiScale(grey, boxes, neighbours, /*scaleFactor=*/1.1,
                                /*minNeighbors=*/5, 0, cv::Size(24, 24));
    } catch (...) {
      GiveBack(std::move(cascade));
      throw;
    }
    GiveBack(std::move(cascade));
    std::vector<Detection> out;
    for (std::size_t i = 0; i < boxes.size(); ++i) {
      const cv::Rect& b = boxes[i];
      // The score is the number of merged raw detections, a rough confidence.
      out.push_back({MapBack(b.x, b.y, b.x + b.width, b.y + b.height, scale),
                     static_cast<float>(i < neighbours.size() ? neighbours[i] : 0)});
    }
    return out;
  }

  static void SortLargestFirst(std::vector<Detection>& d) {
    std::stable_sort(d.begin(), d.end(), [](const Detection& a, const Detection& b) {
      if (a.box.area() != b.box.area()) return a.box.area() > b.box.area();
      if (a.box.y != b.box.y) return a.box.y < b.box.y;
      return a.box.x < b.box.x;
    });
  }

  AlignedFace AlignFace(const cv::Mat& bgr, const Detection& d) const {
    const dlib::rectangle rect(d.box.x, d.box.y, d.box.x + d.box.width - 1,
                               d.box.y + d.box.height - 1);
    // The shape predictor reads pixels outside the image as 0, so border faces are safe.
    const dlib::full_object_detection shape =
        predictor_(dlib::cv_image<dlib::bgr_pixel>(bgr), rect);
    AlignedFace face;
    face.box = d.box;
    face.score = d.score;
    face.landmarks.points = {Mean(shape, 36, 41), Mean(shape, 42, 47),
                             cv::Point2f(shape.part(30).x(), shape.part(30).y()),
                             cv::Point2f(shape.part(48).x(), shape.part(48).y()),
                             cv::Point2f(shape.part(54).x(), shape.part(54).y())};
    face.crop = AlignToTemplate(bgr, face.landmarks.points, options_.crop_size);
    return face;
  }

  // Centre square of the image (the shorter side), resized to crop_size.
  AlignedFace WholeImageFace(const cv::Mat& bgr) const {
    const int side = std::min(bgr.cols, bgr.rows);
    AlignedFace face;
    face.box = cv::Rect((bgr.cols - side) / 2, (bgr.rows - side) / 2, side, side);
    face.score = 1.f;
    const int interpolation = side > options_.crop_size ? cv::INTER_AREA : cv::INTER_LINEAR;
    cv::resize(bgr(face.box), face.crop, cv::Size(options_.crop_size, options_.crop_size), 0, 0,
               interpolation);
    return face;
  }

  std::unique_ptr<dlib::frontal_face_detector> TakeHog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!hogs_.empty()) {
        auto d = std::move(hogs_.back());
        hogs_.pop_back();
        return d;
      }
    }
    // Copying the prototype is far cheaper than get_frontal_face_detector(), which
    // deserializes the model: threads arriving together at a fresh server would otherwise
    // each pay that, at once, on their first request.
    return std::make_unique<dlib::frontal_face_detector>(hog_prototype_);
  }

  void GiveBack(std::unique_ptr<dlib::frontal_face_detector> d) {
    std::lock_guard<std::mutex> lock(mu_);
    hogs_.push_back(std::move(d));
  }

  std::unique_ptr<cv::CascadeClassifier> TakeCascade() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!cascades_.empty()) {
        auto c = std::move(cascades_.back());
        cascades_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<cv::CascadeClassifier>();
    // Load() proved the file loads; if it vanished since, detection finds nothing.
    c->load(options_.cascade_path);
    return c;
  }

  void GiveBack(std::unique_ptr<cv::CascadeClassifier> c) {
    std::lock_guard<std::mutex> lock(mu_);
    cascades_.push_back(std::move(c));
  }

  const PipelineOptions options_;
  dlib::shape_predictor predictor_;  // read-only after Load(): shared by all threads
  // Only ever copied (never run), so concurrent reads are safe.
  const dlib::frontal_face_detector hog_prototype_ = dlib::get_frontal_face_detector();
  std::mutex mu_;
  std::vector<std::unique_ptr<dlib::frontal_face_detector>> hogs_;  // GUARDED_BY(mu_)
  std::vector<std::unique_ptr<cv::CascadeClassifier>> cascades_;    // GUARDED_BY(mu_)
};

StatusOr<std::unique_ptr<FacePipeline>> FacePipeline::Create(const PipelineOptions& options) {
  FACEID_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>(options);
  FACEID_RETURN_IF_ERROR(impl->Load());
  return std::unique_ptr<FacePipeline>(new FacePipeline(options, std::move(impl)));
}

FacePipeline::FacePipeline(const PipelineOptions& options, std::unique_ptr<Impl> impl)
    : options_(options), impl_(std::move(impl)) {}

FacePipeline::~FacePipeline() = default;

StatusOr<PipelineResult> FacePipeline::Process(std::string_view bytes, FaceMode mode,
                                               int max_faces, bool for_enrollment) const {
  FACEID_ASSIGN_OR_RETURN(const DecodedImage decoded, DecodeImage(bytes, options_.limits));
  return ProcessImage(decoded.bgr, mode, max_faces, for_enrollment);
}

StatusOr<PipelineResult> FacePipeline::ProcessImage(const cv::Mat& bgr, FaceMode mode,
                                                    int max_faces, bool for_enrollment) const {
  try {
    return impl_->Run(bgr, mode, max_faces, for_enrollment);
  } catch (const cv::Exception& e) {
    return absl::InternalError(std::string("face pipeline: OpenCV failed: ") + e.what());
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("face pipeline: out of memory");
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("face pipeline failed: ") + e.what());
  }
}

cv::Mat CropToNetworkInput(const cv::Mat& crop_bgr, int input_size) {
  if (crop_bgr.empty() || crop_bgr.type() != CV_8UC3 || input_size < 1) return cv::Mat();
  cv::Mat resized;
  if (crop_bgr.cols == input_size && crop_bgr.rows == input_size) {
    resized = crop_bgr;
  } else {
    cv::resize(crop_bgr, resized, cv::Size(input_size, input_size), 0, 0, cv::INTER_AREA);
  }
  cv::Mat rgb;
  cv::cvtColor(resized, rgb, cv::COLOR_BGR2RGB);
  cv::Mat out;
  rgb.convertTo(out, CV_32FC3, 2.0 / 255.0, -1.0);
  return out;
}

}  // namespace faceid
