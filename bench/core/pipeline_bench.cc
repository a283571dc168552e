// Prints the figures of the core image path (not a test; nothing here asserts):
//   1. detection recall / precision on the hand-labelled scenes/multi_face photos
//      (dlib's XML boxes, IoU >= 0.5, greedy one-to-one matching), upsample 0, 1 and 2;
//   2. the LFW centred-face rate (the named person is the face over the image centre) and
//      what happens when it is missed;
//   3. per-image time of decode, detect + landmarks + align, and landmarks + align alone,
//      on a 640x480 and a 4000x3000 photo (real scenes upscaled), with and without
//      detection on a downscaled copy, and the accuracy cost of downscaling.
// Run: build-core/bin/core_pipeline_bench [lfw_people=300]. Timings are medians of a few
// runs on whatever else shares the machine.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <dlib/image_processing/shape_predictor.h>
#include <dlib/opencv/cv_image.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/face_aligner.h"
#include "core/face_pipeline.h"

namespace {

namespace fs = std::filesystem;
using faceid::FaceMode;
using faceid::FacePipeline;
using faceid::PipelineOptions;
using Clock = std::chrono::steady_clock;

const std::string kData = FACEID_DATA_DIR;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// file name without the dlib_ prefix -> hand-labelled boxes
std::map<std::string, std::vector<cv::Rect>> ReadBoxes() {
  std::map<std::string, std::vector<cv::Rect>> out;
  const std::regex image_re("<image file='([^']+)'");
  const std::regex box_re("<box top='(\\d+)' left='(\\d+)' width='(\\d+)' height='(\\d+)'");
  for (const char* xml : {"dlib_face_boxes_training.xml", "dlib_face_boxes_testing_filtered.xml"}) {
    std::ifstream in(kData + "/scenes/" + xml);
    std::string line, current;
    while (std::getline(in, line)) {
      std::smatch m;
      if (std::regex_search(line, m, image_re)) current = m[1];
      if (std::regex_search(line, m, box_re)) {
        out[current].push_back(cv::Rect(std::stoi(m[2]), std::stoi(m[1]), std::stoi(m[3]),
                                        std::stoi(m[4])));
      }
    }
  }
  return out;
}

double Iou(const cv::Rect& a, const cv::Rect& b) {
  const double inter = (a & b).area();
  return inter / (a.area() + b.area() - inter);
}

// Greedy one-to-one matching; returns the number of true positives.
int Matches(const std::vector<cv::Rect>& truth, const std::vector<cv::Rect>& found) {
  std::vector<bool> used(found.size(), false);
  int tp = 0;
  for (const cv::Rect& t : truth) {
    int best = -1;
    double best_iou = 0.5;
    for (std::size_t i = 0; i < found.size(); ++i) {
      const double iou = Iou(t, found[i]);
      if (!used[i] && iou >= best_iou) {
        best = static_cast<int>(i);
        best_iou = iou;
      }
    }
    if (best >= 0) {
      used[best] = true;
      ++tp;
    }
  }
  return tp;
}

std::unique_ptr<FacePipeline> MakePipeline(int upsample, int max_side) {
  PipelineOptions o;
  o.landmark_model_path = FACEID_LANDMARK_MODEL;
  o.upsample = upsample;
  o.max_detect_side_px = max_side;
  auto p = FacePipeline::Create(o);
  if (!p.ok()) {
    std::fprintf(stderr, "pipeline: %s\n", p.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(p).value();
}

std::vector<cv::Rect> Boxes(const faceid::PipelineResult& r) {
  std::vector<cv::Rect> out;
  for (const auto& f : r.faces) out.push_back(f.box);
  return out;
}

struct Scene {
  std::string name;
  cv::Mat bgr;
  std::vector<cv::Rect> truth;
};

// Recall and precision of `p` on `scenes`, each optionally scaled by `factor` first.
void PrintAccuracy(const char* label, const FacePipeline& p, const std::vector<Scene>& scenes,
                   double factor) {
  int truth = 0, found = 0, tp = 0;
  double ms = 0;
  for (const Scene& s : scenes) {
    cv::Mat img = s.bgr;
    std::vector<cv::Rect> boxes = s.truth;
    if (factor != 1.0) {
      cv::resize(s.bgr, img, cv::Size(), factor, factor, cv::INTER_CUBIC);
      for (cv::Rect& b : boxes) {
        b = cv::Rect(cvRound(b.x * factor), cvRound(b.y * factor), cvRound(b.width * factor),
                     cvRound(b.height * factor));
      }
    }
    const auto t0 = Clock::now();
    const auto r = p.ProcessImage(img, FaceMode::kDetect);
    ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!r.ok()) continue;
    truth += static_cast<int>(boxes.size());
    found += static_cast<int>(r->faces.size());
    tp += Matches(boxes, Boxes(*r));
  }
  std::printf("  %-44s recall %2d/%2d = %.2f  precision %2d/%2d = %.2f  %.0f ms/image\n", label,
              tp, truth, truth ? double(tp) / truth : 0.0, tp, found,
              found ? double(tp) / found : 0.0, ms / scenes.size());
}

template <typename F>
double MedianMs(int runs, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void PrintTiming(const char* label, const cv::Mat& photo, const dlib::shape_predictor& sp) {
  std::vector<uchar> jpeg;
  cv::imencode(".jpg", photo, jpeg, {cv::IMWRITE_JPEG_QUALITY, 92});
  const std::string bytes(jpeg.begin(), jpeg.end());
  const int runs = photo.cols > 2000 ? 3 : 5;
  const double decode_ms = MedianMs(runs, [&] { (void)faceid::DecodeImage(bytes); });
  std::printf("  %s (%dx%d, %zu KB JPEG): decode %.1f ms\n", label, photo.cols, photo.rows,
              bytes.size() / 1024, decode_ms);
  for (const int max_side : {1024, 0}) {
    for (const int upsample : {0, 1}) {
      // Full-resolution HOG with upsampling on 12 Mpx takes tens of seconds: skipped.
      if (max_side == 0 && upsample == 1 && photo.cols > 2000) continue;
      auto p = MakePipeline(upsample, max_side);
      faceid::PipelineResult last;
      const double total_ms = MedianMs(runs, [&] {
        auto r = p->ProcessImage(photo, FaceMode::kDetect);
        if (r.ok()) last = *std::move(r);
      });
      // Landmarks + alignment alone: the pipeline's calls (dlib shape predictor, then
      // AlignToTemplate) on the boxes it found; eye corners stand in for the eye centres.
      const double align_ms = MedianMs(runs, [&] {
        for (const auto& f : last.faces) {
          const dlib::rectangle rect(f.box.x, f.box.y, f.box.br().x - 1, f.box.br().y - 1);
          const auto shape = sp(dlib::cv_image<dlib::bgr_pixel>(photo), rect);
          std::array<cv::Point2f, 5> points;
          for (int i = 0; i < 5; ++i) {
            const unsigned part = std::array<unsigned, 5>{36, 42, 30, 48, 54}[i];
            points[i] = cv::Point2f(shape.part(part).x(), shape.part(part).y());
          }
          (void)faceid::AlignToTemplate(photo, points, 112);
        }
      });
      std::printf("    max_detect_side %4d upsample %d: detect+landmarks+align %7.1f ms, "
                  "of which landmarks+align %.1f ms (%zu faces)\n",
                  max_side, upsample, total_ms, align_ms, last.faces.size());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int lfw_people = argc > 1 ? std::atoi(argv[1]) : 300;

  std::vector<Scene> scenes;
  for (const auto& [name, boxes] : ReadBoxes()) {
    Scene s{name, cv::imread(kData + "/scenes/multi_face/dlib_" + name), boxes};
    if (!s.bgr.empty()) scenes.push_back(s);
  }
  int total_boxes = 0;
  for (const Scene& s : scenes) total_boxes += static_cast<int>(s.truth.size());
  std::printf("1. Detection on %zu labelled scenes/multi_face photos (%d faces), IoU >= 0.5\n",
              scenes.size(), total_boxes);
  for (const int upsample : {0, 1, 2}) {
    auto p = MakePipeline(upsample, 1024);
    const std::string label = "HOG upsample " + std::to_string(upsample);
    PrintAccuracy(label.c_str(), *p, scenes, 1.0);
  }

  std::printf("2. LFW centred face, first photo of the first %d people (sorted)\n", lfw_people);
  for (const int upsample : {0, 1}) {
    auto p = MakePipeline(upsample, 1024);
    std::vector<std::string> dirs;
    for (const auto& e : fs::directory_iterator(kData + "/lfw_deepfunneled")) {
      dirs.push_back(e.path().string());
    }
    std::sort(dirs.begin(), dirs.end());
    int n = 0, centred = 0, none = 0, off_centre = 0, multi = 0;
    for (int i = 0; i < lfw_people && i < static_cast<int>(dirs.size()); ++i) {
      std::vector<std::string> photos;
      for (const auto& e : fs::directory_iterator(dirs[i])) photos.push_back(e.path().string());
      std::sort(photos.begin(), photos.end());
      const auto r = p->Process(ReadBytes(photos[0]), FaceMode::kDetect);
      if (!r.ok()) continue;
      ++n;
      if (r->faces.size() > 1) ++multi;
      if (r->faces.empty()) {
        ++none;
      } else if (r->faces[0].box.contains(cv::Point(125, 125))) {
        ++centred;
      } else {
        ++off_centre;
      }
    }
    std::printf("  upsample %d: largest face is the centred one %d/%d = %.3f; no face %d; "
                "largest face off-centre %d; photos with >1 face %d\n",
                upsample, centred, n, n ? double(centred) / n : 0.0, none, off_centre, multi);
  }

  dlib::shape_predictor sp;
  dlib::deserialize(FACEID_LANDMARK_MODEL) >> sp;
  std::printf("3. Per-image time (median)\n");
  const cv::Mat scene = cv::imread(kData + "/scenes/multi_face/dlib_2008_001322.jpg");
  cv::Mat vga, big;
  cv::resize(scene, vga, cv::Size(640, 480), 0, 0, cv::INTER_CUBIC);
  cv::resize(scene, big, cv::Size(4000, 3000), 0, 0, cv::INTER_CUBIC);
  PrintTiming("640x480", vga, sp);
  PrintTiming("4000x3000", big, sp);

  std::printf("4. Accuracy cost of downscaled detection: the labelled scenes upscaled x8\n");
  {
    auto down = MakePipeline(1, 1024);
    PrintAccuracy("x8, max_detect_side 1024, upsample 1", *down, scenes, 8.0);
    auto full = MakePipeline(0, 0);
    PrintAccuracy("x8, full resolution, upsample 0", *full, scenes, 8.0);
  }
  return 0;
}
