// Test doubles for the server suites: a face finder and an embedder that need no models.
//
// Synthetic images are black canvases with filled rectangles; each rectangle is a "face".
// FakeEmbedder maps a crop's mean colour, quantised to 32 levels per channel, to a fixed
// random unit vector, plus a little per-photo noise: the same colour is the same person
// (similarity about 0.99), different colours are different people (similarity near 0).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "core/embedder.h"
#include "server/face_finder.h"

namespace faceid::testing {

inline constexpr int kFakeDim = 64;

// Finds the rectangles of a synthetic image (connected non-black regions) as faces.
class FakeFaceFinder final : public FaceFinder {
 public:
  StatusOr<PipelineResult> Find(std::string_view bytes, FaceMode mode, int max_faces,
                                bool for_enrollment) const override;
};

class FakeEmbedder final : public Embedder {
 public:
  explicit FakeEmbedder(std::string version = "fake-v1", int dim = kFakeDim);
  StatusOr<std::vector<std::vector<float>>> Embed(const std::vector<cv::Mat>& crops) const override;
  const ModelInfo& info() const override { return info_; }
  std::string device() const override { return "cpu"; }

  // Each Embed call sleeps this long first (for overload tests).
  void set_delay(std::chrono::milliseconds delay) { delay_ms_ = static_cast<int>(delay.count()); }
  int calls() const { return calls_.load(); }

 private:
  ModelInfo info_;
  std::atomic<int> delay_ms_{0};
  mutable std::atomic<int> calls_{0};
};

// A PNG of size `width` x `height` with one face rectangle per colour (BGR, 0..255), laid out
// left to right; `variant` shifts the rectangles and jitters the colour slightly so two
// variants are different photos of the same people. Colours are best chosen from
// PersonColour().
std::string MakeFacesImage(const std::vector<cv::Scalar>& colours, int variant = 0, int width = 320,
                           int height = 200);
// A distinct colour for person number `n` (0..63), at the centre of its quantisation bin.
cv::Scalar PersonColour(int n);
// A black PNG: no face.
std::string MakeBlankImage();

}  // namespace faceid::testing
