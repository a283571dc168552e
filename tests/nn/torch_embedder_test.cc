#include "core/nn/torch_embedder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "core/nn/embedder_factory.h"
#include "core/nn/model_file.h"
#include "nn_test_util.h"

namespace faceid {
namespace {

double Norm(const std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += double{x} * x;
  return std::sqrt(sum);
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += double{a[i]} * b[i];
  return sum;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float diff = 0.f;
  for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
  return diff;
}

std::vector<std::vector<float>> EmbedOrDie(const Embedder& embedder,
                                           const std::vector<cv::Mat>& crops) {
  StatusOr<std::vector<std::vector<float>>> out = embedder.Embed(crops);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : std::vector<std::vector<float>>();
}

TEST(TorchEmbedderTest, EmbeddingsAreUnitNormDistinctAndDeterministic) {
  const std::unique_ptr<Embedder> embedder = MakeTinyRandomEmbedder(1);
  EXPECT_EQ(embedder->device(), "cpu");
  const std::vector<cv::Mat> crops = RandomCrops(4, 112, 11);
  const auto first = EmbedOrDie(*embedder, crops);
  const auto second = EmbedOrDie(*embedder, crops);
  ASSERT_EQ(first.size(), 4u);
  for (std::size_t i = 0; i < first.size(); ++i) {
    ASSERT_EQ(first[i].size(), 128u);
    EXPECT_NEAR(Norm(first[i]), 1.0, 1e-5);
    EXPECT_EQ(first[i], second[i]) << "crop " << i;
  }
  EXPECT_LT(Dot(first[0], first[1]), 0.99999);
}

// Regression: with LibTorch's default BatchNorm statistics the untrained model mapped every
// face to nearly one direction (mean cosine 0.93 between different people's chips), so tests
// using it could not tell people apart at any sensible threshold.
TEST(TorchEmbedderTest, TinyRandomModelSpreadsRealFacesApart) {
  const std::filesystem::path root = std::filesystem::path(FACEID_DATA_DIR) / "dlib_johns";
  std::vector<cv::Mat> crops;
  for (const char* person : {"John_Savage", "John_Simm"}) {
    std::vector<std::filesystem::path> files;
    for (const auto& file : std::filesystem::directory_iterator(root / person)) {
      files.push_back(file.path());
    }
    std::sort(files.begin(), files.end());
    ASSERT_GE(files.size(), 5u) << root / person;
    for (int i = 0; i < 5; ++i) {
      crops.push_back(cv::imread(files[i].string(), cv::IMREAD_COLOR));
      ASSERT_FALSE(crops.back().empty()) << files[i];
    }
  }
  ASSERT_EQ(crops.size(), 10u);
  const auto mean_cosine_between_people = [&](const Embedder& embedder) {
    const auto embeddings = EmbedOrDie(embedder, crops);
    double mean = 0;
    for (int i = 0; i < 5; ++i) {
      for (int j = 5; j < 10; ++j) mean += Dot(embeddings.at(i), embeddings.at(j)) / 25;
    }
    return mean;
  };
  EXPECT_LT(mean_cosine_between_people(*MakeTinyRandomEmbedder()), 0.8);

  // The same weights with the default statistics show the collapse this guards against.
  LoadedModel model = MakeTinyRandomModel();
  for (const auto& module : model.net->modules(/*include_self=*/false)) {
    if (auto* bn = module->as<torch::nn::BatchNorm2d>()) bn->reset_running_stats();
    if (auto* bn = module->as<torch::nn::BatchNorm1d>()) bn->reset_running_stats();
  }
  StatusOr<std::unique_ptr<Embedder>> uncalibrated = MakeTorchEmbedder(model.info, model.net);
  ASSERT_TRUE(uncalibrated.ok()) << uncalibrated.status();
  EXPECT_GT(mean_cosine_between_people(**uncalibrated), 0.85);
}

TEST(TorchEmbedderTest, BatchedEqualsOneByOne) {
  const std::unique_ptr<Embedder> embedder = MakeTinyRandomEmbedder(2);
  // More than one internal batch, with crops of mixed sizes.
  std::vector<cv::Mat> crops = RandomCrops(kMaxEmbedBatch + 6, 112, 12);
  crops[3] = RandomCrops(1, 64, 13)[0];
  crops[kMaxEmbedBatch + 1] = RandomCrops(1, 150, 14)[0];
  const auto batched = EmbedOrDie(*embedder, crops);
  ASSERT_EQ(batched.size(), crops.size());
  for (const std::size_t i :
       {std::size_t{0}, std::size_t{3}, std::size_t{kMaxEmbedBatch - 1},
        std::size_t{kMaxEmbedBatch}, std::size_t{kMaxEmbedBatch + 1}, crops.size() - 1}) {
    const auto single = EmbedOrDie(*embedder, {crops[i]});
    ASSERT_EQ(single.size(), 1u);
    EXPECT_LT(MaxAbsDiff(single[0], batched[i]), 1e-5) << "crop " << i;
  }
}

TEST(TorchEmbedderTest, ConcurrentCallsEqualSerialResults) {
  const std::unique_ptr<Embedder> embedder = MakeTinyRandomEmbedder(3);
  constexpr int kThreads = 4;
  constexpr int kRounds = 3;
  std::vector<std::vector<cv::Mat>> inputs;
  std::vector<std::vector<std::vector<float>>> serial;
  for (int t = 0; t < kThreads; ++t) {
    inputs.push_back(RandomCrops(1 + t, 112, 100 + t));
    serial.push_back(EmbedOrDie(*embedder, inputs.back()));
  }
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        const auto out = embedder->Embed(inputs[t]);
        if (!out.ok() || out->size() != serial[t].size()) {
          ++mismatches[t];
          continue;
        }
        for (std::size_t i = 0; i < out->size(); ++i) {
          if (MaxAbsDiff((*out)[i], serial[t][i]) > 1e-5) ++mismatches[t];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST(TorchEmbedderTest, EmptyInputGivesEmptyOutputAndBadCropsAreInvalid) {
  const std::unique_ptr<Embedder> embedder = MakeTinyRandomEmbedder();
  const auto empty = embedder->Embed({});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());

  std::vector<cv::Mat> crops = RandomCrops(2, 112, 1);
  crops.push_back(cv::Mat());
  EXPECT_EQ(embedder->Embed(crops).status().code(), absl::StatusCode::kInvalidArgument);
  crops.back() = cv::Mat(112, 112, CV_8UC1, cv::Scalar(7));
  const Status gray = embedder->Embed(crops).status();
  EXPECT_EQ(gray.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(gray.message().find("crop 2"), std::string::npos) << gray;
  crops.back() = cv::Mat(112, 112, CV_32FC3, cv::Scalar(0.5, 0.5, 0.5));
  EXPECT_EQ(embedder->Embed(crops).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TorchEmbedderTest, WrittenTinyModelLoadsAndEmbedsLikeTheInMemoryOne) {
  TempDir dir("torch_embedder_test");
  const std::string path = dir.File("tiny.faceid");
  ASSERT_TRUE(WriteTinyRandomModel(path, 4).ok());
  StatusOr<std::unique_ptr<Embedder>> loaded = LoadEmbedder(path, "cpu");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const std::unique_ptr<Embedder> in_memory = MakeTinyRandomEmbedder(4);
  EXPECT_EQ((*loaded)->info().version, in_memory->info().version);
  EXPECT_EQ((*loaded)->info().network.embedding_dim, 128);

  const std::vector<cv::Mat> crops = RandomCrops(3, 112, 21);
  const auto a = EmbedOrDie(**loaded, crops);
  const auto b = EmbedOrDie(*in_memory, crops);
  ASSERT_EQ(a.size(), 3u);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]);
}

TEST(TorchEmbedderTest, DeviceChoice) {
  TempDir dir("torch_embedder_device");
  const std::string path = dir.File("tiny.faceid");
  ASSERT_TRUE(WriteTinyRandomModel(path).ok());
  EXPECT_EQ(LoadEmbedder(path, "tpu").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadEmbedder(dir.File("missing.faceid")).status().code(), absl::StatusCode::kNotFound);
  StatusOr<std::unique_ptr<Embedder>> automatic = LoadEmbedder(path, "auto");
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  StatusOr<std::unique_ptr<Embedder>> cuda = LoadEmbedder(path, "cuda");
  if (torch::cuda::is_available()) {
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    EXPECT_EQ((*cuda)->device(), "cuda");
    EXPECT_EQ((*automatic)->device(), "cuda");
    // The GPU result matches the CPU one closely.
    const std::vector<cv::Mat> crops = RandomCrops(2, 112, 31);
    const auto on_gpu = EmbedOrDie(**cuda, crops);
    const auto on_cpu = EmbedOrDie(*MakeTinyRandomEmbedder(), crops);
    for (std::size_t i = 0; i < crops.size(); ++i)
      EXPECT_LT(MaxAbsDiff(on_gpu[i], on_cpu[i]), 1e-3);
  } else {
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition) << cuda.status();
    EXPECT_EQ((*automatic)->device(), "cpu");
  }
}

TEST(TorchEmbedderTest, MakeTorchEmbedderCopiesTheWeights) {
  LoadedModel model = MakeTinyRandomModel(5);
  StatusOr<std::unique_ptr<Embedder>> embedder = MakeTorchEmbedder(model.info, model.net, "cpu");
  ASSERT_TRUE(embedder.ok()) << embedder.status();
  const std::vector<cv::Mat> crops = RandomCrops(2, 112, 41);
  const auto before = EmbedOrDie(**embedder, crops);

  // Training the original afterwards changes neither the embedder nor its mode.
  model.net->train();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model.net->parameters()) p.add_(0.1);
  }
  EXPECT_TRUE(model.net->is_training());
  EXPECT_EQ(EmbedOrDie(**embedder, crops), before);
  EXPECT_EQ(MakeTorchEmbedder(model.info, EmbeddingNet(nullptr)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TorchEmbedderTest, SetTorchThreadsValidatesAndApplies) {
  EXPECT_EQ(SetTorchThreads(0).code(), absl::StatusCode::kInvalidArgument);
  const int before = torch::get_num_threads();
  ASSERT_TRUE(SetTorchThreads(2).ok());
  EXPECT_EQ(torch::get_num_threads(), 2);
  ASSERT_TRUE(SetTorchThreads(before).ok());
}

}  // namespace
}  // namespace faceid
