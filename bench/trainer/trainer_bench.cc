// trainer_bench: figures for the trainer issue (prints them; never part of `make test`).
//
//   trainer_bench export-crops --run RUN --cache-dir C --out crops.bin
//       writes the aligned training crops of a fit run (RUN/split.json) as raw uint8 BGR
//       [N, crop, crop, 3] plus crops.bin.labels (one label per line) for the python twin.
//   trainer_bench lbph --run RUN --cache-dir C [--max-images-per-person N]
//       OpenCV LBPH recognizer on the run's test people under the faceid rank-1 protocol
//       (first 5 enrolled, half below 10 images), next to the run's own test rank-1. Pass
//       the run's --max-images-per-person so both see the same images.
//   trainer_bench embed-speed --model M --run RUN --cache-dir C
//       embedding extraction images/s at batch 1 and batch 64 on the test crops.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <opencv2/face.hpp>
#include <opencv2/imgproc.hpp>
#include <string>

#include "core/face_pipeline.h"
#include "core/nn/embedder_factory.h"
#include "trainer/dataset.h"
#include "trainer/eval_metrics.h"

namespace {

using namespace faceid;

std::string Arg(int argc, char** argv, const std::string& name) {
  for (int i = 2; i + 1 < argc; ++i) {
    if (argv[i] == name) return argv[i + 1];
  }
  return "";
}

int MaxImages(int argc, char** argv) {
  const std::string v = Arg(argc, argv, "--max-images-per-person");
  return v.empty() ? 0 : std::stoi(v);
}

int Fail(const Status& s) {
  std::fprintf(stderr, "trainer_bench: %s\n", std::string(s.message()).c_str());
  return 1;
}

// Aligned images of one part (0 train, 1 val, 2 test) of a run's split.
// `max_images` must match the run's --max-images-per-person so both see the same images.
StatusOr<AlignedSet> LoadPart(const std::string& run, const std::string& cache, int part,
                              int max_images) {
  std::ifstream in(run + "/split.json");
  if (!in) return absl::NotFoundError("no " + run + "/split.json");
  FACEID_ASSIGN_OR_RETURN(Split split, Split::FromJson(nlohmann::json::parse(in)));
  FACEID_ASSIGN_OR_RETURN(auto pipeline, FacePipeline::Create(PipelineOptions()));
  std::vector<std::pair<DatasetSpec, PersonImages>> people;
  for (const auto& ds : split.datasets) {
    const DatasetSpec spec{ds.path, ds.crops};
    FACEID_ASSIGN_OR_RETURN(DatasetListing listing, ListDataset(spec, {1, 0, max_images}));
    const auto& names = part == 0 ? ds.train : part == 1 ? ds.val : ds.test;
    for (auto& p : SelectPeople(listing, names)) people.emplace_back(spec, std::move(p));
  }
  AlignOptions options;
  options.cache_dir = cache;
  options.min_images = 2;
  return AlignPeople(*pipeline, people, options);
}

int ExportCrops(int argc, char** argv) {
  auto set =
      LoadPart(Arg(argc, argv, "--run"), Arg(argc, argv, "--cache-dir"), 0, MaxImages(argc, argv));
  if (!set.ok()) return Fail(set.status());
  const std::string out = Arg(argc, argv, "--out");
  std::ofstream data(out, std::ios::binary), labels(out + ".labels");
  for (const auto& image : set->images) {
    cv::Mat c = image.crop.isContinuous() ? image.crop : image.crop.clone();
    data.write(reinterpret_cast<const char*>(c.data), std::streamsize(c.total() * c.elemSize()));
    labels << image.label << "\n";
  }
  std::printf("exported %zu crops of %zu people to %s\n", set->images.size(), set->names.size(),
              out.c_str());
  return 0;
}

int Lbph(int argc, char** argv) {
  const std::string run = Arg(argc, argv, "--run");
  auto set = LoadPart(run, Arg(argc, argv, "--cache-dir"), 2, MaxImages(argc, argv));
  if (!set.ok()) return Fail(set.status());
  std::map<int, std::vector<const AlignedImage*>> by_label;
  for (const auto& image : set->images) by_label[image.label].push_back(&image);
  std::vector<cv::Mat> enrolled;
  std::vector<int> enrolled_labels;
  std::vector<const AlignedImage*> probes;
  for (const auto& [label, images] : by_label) {
    const int k = EnrolledCount(int(images.size()));
    for (int i = 0; i < int(images.size()); ++i) {
      if (i < k) {
        cv::Mat grey;
        cv::cvtColor(images[i]->crop, grey, cv::COLOR_BGR2GRAY);
        enrolled.push_back(grey);
        enrolled_labels.push_back(label);
      } else {
        probes.push_back(images[i]);
      }
    }
  }
  auto lbph = cv::face::LBPHFaceRecognizer::create();
  lbph->train(enrolled, enrolled_labels);
  int right = 0;
  for (const auto* probe : probes) {
    cv::Mat grey;
    cv::cvtColor(probe->crop, grey, cv::COLOR_BGR2GRAY);
    right += lbph->predict(grey) == probe->label ? 1 : 0;
  }
  double model_rank1 = -1;
  std::ifstream eval_in(run + "/eval.json");
  if (eval_in) model_rank1 = nlohmann::json::parse(eval_in)["test"]["rank1"].get<double>();
  std::printf("test people %zu, probes %zu: LBPH rank-1 %.4f, faceid model rank-1 %.4f\n",
              by_label.size(), probes.size(), probes.empty() ? 0.0 : double(right) / probes.size(),
              model_rank1);
  return 0;
}

int EmbedSpeed(int argc, char** argv) {
  auto embedder = LoadEmbedder(Arg(argc, argv, "--model"), "cpu");
  if (!embedder.ok()) return Fail(embedder.status());
  auto set =
      LoadPart(Arg(argc, argv, "--run"), Arg(argc, argv, "--cache-dir"), 2, MaxImages(argc, argv));
  if (!set.ok()) return Fail(set.status());
  std::vector<cv::Mat> crops;
  for (const auto& image : set->images) crops.push_back(image.crop);
  for (int batch : {1, 64}) {
    const auto start = std::chrono::steady_clock::now();
    std::size_t done = 0;
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 5) {
      std::vector<cv::Mat> part;
      for (int i = 0; i < batch; ++i) part.push_back(crops[(done + i) % crops.size()]);
      auto out = (*embedder)->Embed(part);
      if (!out.ok()) return Fail(out.status());
      done += part.size();
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("embedding batch %d: %.1f images/s\n", batch, done / s);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "export-crops") return ExportCrops(argc, argv);
  if (cmd == "lbph") return Lbph(argc, argv);
  if (cmd == "embed-speed") return EmbedSpeed(argc, argv);
  std::fprintf(stderr, "usage: trainer_bench export-crops|lbph|embed-speed (see the source)\n");
  return 2;
}
