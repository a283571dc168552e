#include "tests/server/fakes.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <thread>

namespace faceid::testing {

namespace {

constexpr int kMinFaceSide = 20;
constexpr float kNoise = 0.1f;

std::vector<float> RandomUnit(std::uint64_t seed, int dim) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(dim);
  for (float& x : v) x = normal(rng);
  return v;
}

void Normalise(std::vector<float>* v) {
  double norm = 0;
  for (float x : *v) norm += x * x;
  norm = std::sqrt(norm);
  for (float& x : *v) x = static_cast<float>(x / norm);
}

}  // namespace

StatusOr<PipelineResult> FakeFaceFinder::Find(std::string_view bytes, FaceMode mode, int max_faces,
                                              bool for_enrollment) const {
  cv::Mat image;
  if (!bytes.empty()) {
    cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
    image = cv::imdecode(buffer, cv::IMREAD_COLOR);
  }
  if (image.empty()) return absl::InvalidArgumentError("not a decodable image");
  PipelineResult result;
  result.image_width = image.cols;
  result.image_height = image.rows;
  if (mode == FaceMode::kWholeImage) {
    AlignedFace face;
    face.box = cv::Rect(0, 0, image.cols, image.rows);
    face.score = 1.f;
    cv::resize(image, face.crop, cv::Size(112, 112), 0, 0, cv::INTER_AREA);
    result.faces.push_back(std::move(face));
    return result;
  }
  cv::Mat grey, mask, labels, stats, centroids;
  cv::cvtColor(image, grey, cv::COLOR_BGR2GRAY);
  cv::threshold(grey, mask, 5, 255, cv::THRESH_BINARY);
  const int n = cv::connectedComponentsWithStats(mask, labels, stats, centroids);
  bool dropped = false;
  for (int i = 1; i < n; ++i) {
    cv::Rect box(stats.at<int>(i, cv::CC_STAT_LEFT), stats.at<int>(i, cv::CC_STAT_TOP),
                 stats.at<int>(i, cv::CC_STAT_WIDTH), stats.at<int>(i, cv::CC_STAT_HEIGHT));
    if (for_enrollment && std::min(box.width, box.height) < kMinFaceSide) {
      dropped = true;
      continue;
    }
    AlignedFace face;
    face.box = box;
    face.score = 2.f;
    for (int p = 0; p < 5; ++p) {
      face.landmarks.points[p] =
          cv::Point2f(box.x + box.width * (0.2f + 0.15f * p), box.y + box.height * 0.5f);
    }
    cv::resize(image(box), face.crop, cv::Size(112, 112), 0, 0, cv::INTER_AREA);
    result.faces.push_back(std::move(face));
  }
  if (result.faces.empty() && dropped) return absl::InvalidArgumentError("face too small");
  std::sort(result.faces.begin(), result.faces.end(),
            [](const AlignedFace& a, const AlignedFace& b) { return a.box.area() > b.box.area(); });
  if (max_faces > 0 && static_cast<int>(result.faces.size()) > max_faces) {
    result.faces.resize(max_faces);
  }
  return result;
}

FakeEmbedder::FakeEmbedder(std::string version, int dim) {
  info_.name = "fake";
  info_.version = std::move(version);
  info_.network.embedding_dim = dim;
  info_.pipeline_version = kPipelineVersion;
  info_.threshold = 0.5f;
}

StatusOr<std::vector<std::vector<float>>> FakeEmbedder::Embed(
    const std::vector<cv::Mat>& crops) const {
  ++calls_;
  if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_.load()));
  const int dim = info_.network.embedding_dim;
  std::vector<std::vector<float>> out;
  for (const cv::Mat& crop : crops) {
    if (crop.empty() || crop.type() != CV_8UC3) {
      return absl::InvalidArgumentError("crop must be a non-empty CV_8UC3 image");
    }
    const cv::Scalar mean = cv::mean(crop);
    const std::uint64_t person = static_cast<std::uint64_t>(mean[0] / 32) * 64 +
                                 static_cast<std::uint64_t>(mean[1] / 32) * 8 +
                                 static_cast<std::uint64_t>(mean[2] / 32);
    const std::uint64_t photo =
        static_cast<std::uint64_t>(mean[0] * 1000 + mean[1] * 100 + mean[2] * 10);
    // The model version changes the vectors, as a retrained model would.
    const std::uint64_t model = std::hash<std::string>()(info_.version);
    std::vector<float> v = RandomUnit(person * 7919 + model, dim);
    const std::vector<float> noise = RandomUnit(photo + 1'000'003, dim);
    for (int i = 0; i < dim; ++i) v[i] += kNoise * noise[i];
    Normalise(&v);
    out.push_back(std::move(v));
  }
  return out;
}

cv::Scalar PersonColour(int n) {
  return cv::Scalar(16 + 32 * (n % 8), 16 + 32 * ((n / 8) % 8), 16 + 32 * ((n * 3) % 8));
}

std::string MakeFacesImage(const std::vector<cv::Scalar>& colours, int variant, int width,
                           int height) {
  cv::Mat image(height, width, CV_8UC3, cv::Scalar(0, 0, 0));
  const int slot = width / std::max<int>(1, static_cast<int>(colours.size()));
  for (std::size_t i = 0; i < colours.size(); ++i) {
    const int side = std::min(slot - 10, height - 20) - (variant % 5);
    const int x = static_cast<int>(i) * slot + 2 + variant % 4;
    const int y = 5 + variant % 7;
    const double jitter = (variant % 7) - 3;
    const cv::Scalar c(colours[i][0] + jitter, colours[i][1] - jitter, colours[i][2] + jitter);
    cv::rectangle(image, cv::Rect(x, y, side, side), c, cv::FILLED);
  }
  std::vector<unsigned char> png;
  cv::imencode(".png", image, png);
  return std::string(png.begin(), png.end());
}

std::string MakeBlankImage() {
  cv::Mat image(100, 100, CV_8UC3, cv::Scalar(0, 0, 0));
  std::vector<unsigned char> png;
  cv::imencode(".png", image, png);
  return std::string(png.begin(), png.end());
}

}  // namespace faceid::testing
