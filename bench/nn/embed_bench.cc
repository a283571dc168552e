// Embedding extraction throughput (images/s) of a CpuSmall model on CPU, through the same
// Embedder the server uses (crop -> network input -> forward -> L2 normalisation), at batch 1
// and batched, for each thread count. Uses a randomly initialised model: speed does not
// depend on the weights.
//
//   OMP_WAIT_POLICY=PASSIVE nn_embed_bench [--seconds S] [--threads 1,2] [--batches 1,32]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/nn/embedder_factory.h"
#include "core/nn/torch_embedder.h"

namespace {

std::vector<int> ParseList(const char* text) {
  std::vector<int> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) values.push_back(std::atoi(item.c_str()));
  return values;
}

std::vector<cv::Mat> Crops(int count, int size) {
  cv::RNG rng(1);
  std::vector<cv::Mat> crops;
  for (int i = 0; i < count; ++i) {
    cv::Mat crop(size, size, CV_8UC3);
    rng.fill(crop, cv::RNG::UNIFORM, 0, 256);
    crops.push_back(crop);
  }
  return crops;
}

// Mean cosine similarity of same-person and different-person pairs of the dlib_johns face
// chips under the (untrained) tiny random model: what tests that use it can expect.
void PrintTinyModelSeparation(const faceid::Embedder& embedder) {
  const std::filesystem::path root = std::filesystem::path(FACEID_DATA_DIR) / "dlib_johns";
  std::vector<cv::Mat> crops;
  std::vector<std::string> people;
  std::error_code error;
  for (const auto& person : std::filesystem::directory_iterator(root, error)) {
    for (const auto& file : std::filesystem::directory_iterator(person.path())) {
      cv::Mat image = cv::imread(file.path().string(), cv::IMREAD_COLOR);
      if (image.empty()) continue;
      crops.push_back(image);
      people.push_back(person.path().filename().string());
    }
  }
  if (crops.size() < 2) {
    std::printf("tiny model separation: no face chips under %s\n", root.c_str());
    return;
  }
  const auto embeddings = embedder.Embed(crops);
  if (!embeddings.ok()) return;
  double same = 0, different = 0;
  int same_pairs = 0, different_pairs = 0;
  for (std::size_t i = 0; i < crops.size(); ++i) {
    for (std::size_t j = i + 1; j < crops.size(); ++j) {
      double cosine = 0;
      for (std::size_t k = 0; k < (*embeddings)[i].size(); ++k) {
        cosine += (*embeddings)[i][k] * (*embeddings)[j][k];
      }
      if (people[i] == people[j]) {
        same += cosine;
        ++same_pairs;
      } else {
        different += cosine;
        ++different_pairs;
      }
    }
  }
  std::printf(
      "tiny random model on %zu dlib_johns chips: mean cosine same person %.4f (%d pairs), "
      "different people %.4f (%d pairs)\n",
      crops.size(), same / std::max(1, same_pairs), same_pairs,
      different / std::max(1, different_pairs), different_pairs);
}

// Size of a CpuSmall model file and the time to read its metadata and to load it.
void PrintModelFileFigures() {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("faceid_nn_bench_" + std::to_string(::getpid()) + ".faceid"))
                               .string();
  if (!faceid::WriteTinyRandomModel(path).ok()) return;
  using Clock = std::chrono::steady_clock;
  const auto time_ms = [](auto&& fn) {
    const Clock::time_point start = Clock::now();
    const bool ok = fn();
    return ok ? std::chrono::duration<double, std::milli>(Clock::now() - start).count() : -1.0;
  };
  const double info_ms = time_ms([&] { return faceid::ReadModelInfo(path).ok(); });
  const double load_ms = time_ms([&] { return faceid::LoadEmbedder(path, "cpu").ok(); });
  std::printf("model file %ju bytes: ReadModelInfo %.1f ms, LoadEmbedder %.1f ms\n",
              static_cast<std::uintmax_t>(std::filesystem::file_size(path)), info_ms, load_ms);
  std::filesystem::remove(path);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3.0;
  std::vector<int> thread_counts = {1, 2};
  std::vector<int> batch_sizes = {1, 32};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seconds") == 0) {
      seconds = std::atof(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--threads") == 0) {
      thread_counts = ParseList(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--batches") == 0) {
      batch_sizes = ParseList(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }

  for (const auto& [name, options] : {std::pair{"CpuSmall", faceid::NetworkOptions::CpuSmall()},
                                      std::pair{"GpuLarge", faceid::NetworkOptions::GpuLarge()}}) {
    faceid::EmbeddingNet net(options);
    std::int64_t parameters = 0;
    for (const auto& p : net->parameters()) parameters += p.numel();
    std::printf("%s: %lld parameters, input %d px, embedding %d\n", name,
                static_cast<long long>(parameters), options.input_size, options.embedding_dim);
  }

  const std::unique_ptr<faceid::Embedder> embedder = faceid::MakeTinyRandomEmbedder();
  const faceid::ModelInfo& info = embedder->info();
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  std::printf(
      "model CpuSmall: input %d px, embedding %d, crops %d px, device %s, "
      "OMP_WAIT_POLICY=%s\n",
      info.network.input_size, info.network.embedding_dim, info.crop_size,
      embedder->device().c_str(), wait_policy ? wait_policy : "(unset)");
  std::printf("%-8s %-6s %12s %14s\n", "threads", "batch", "images/s", "ms/batch");

  for (const int threads : thread_counts) {
    if (!faceid::SetTorchThreads(threads).ok()) return 2;
    for (const int batch : batch_sizes) {
      const std::vector<cv::Mat> crops = Crops(batch, info.crop_size);
      for (int warm = 0; warm < 3; ++warm) {
        if (!embedder->Embed(crops).ok()) return 1;
      }
      using Clock = std::chrono::steady_clock;
      const Clock::time_point start = Clock::now();
      int batches = 0;
      double elapsed = 0;
      do {
        if (!embedder->Embed(crops).ok()) return 1;
        ++batches;
        elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      } while (elapsed < seconds);
      std::printf("%-8d %-6d %12.1f %14.2f\n", threads, batch, batches * batch / elapsed,
                  1000.0 * elapsed / batches);
    }
  }
  PrintTinyModelSeparation(*embedder);
  PrintModelFileFigures();
  return 0;
}
