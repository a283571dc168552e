// Helpers shared by the nn suites: seeded synthetic crops and temp directories.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

namespace faceid {

// `count` random CV_8UC3 crops of side `size`, the same for the same seed.
inline std::vector<cv::Mat> RandomCrops(int count, int size, std::uint64_t seed) {
  cv::RNG rng(seed);
  std::vector<cv::Mat> crops;
  for (int i = 0; i < count; ++i) {
    cv::Mat crop(size, size, CV_8UC3);
    rng.fill(crop, cv::RNG::UNIFORM, 0, 256);
    crops.push_back(crop);
  }
  return crops;
}

// A fresh directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& tag)
      : path_(std::filesystem::temp_directory_path() /
              ("faceid_" + tag + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace faceid
