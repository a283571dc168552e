#include "core/nn/embedding_net.h"

#include <gtest/gtest.h>

#include "nn_test_util.h"

namespace faceid {
namespace {

std::int64_t CountParameters(EmbeddingNet& net) {
  std::int64_t count = 0;
  for (const auto& p : net->parameters()) count += p.numel();
  return count;
}

TEST(EmbeddingNetTest, CpuSmallHasAboutOnePointThreeMillionParameters) {
  EmbeddingNet net(NetworkOptions::CpuSmall());
  const std::int64_t count = CountParameters(net);
  EXPECT_GT(count, 1'200'000);
  EXPECT_LT(count, 1'500'000);
}

TEST(EmbeddingNetTest, OutputHasEmbeddingDimPerInput) {
  torch::manual_seed(1);
  EmbeddingNet net(NetworkOptions::CpuSmall());
  net->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor out = net->forward(torch::rand({3, 3, 64, 64}) * 2 - 1);
  EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{3, 128}));
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
}

TEST(EmbeddingNetTest, GpuLargePresetBuildsAndRunsAt112) {
  EmbeddingNet net(NetworkOptions::GpuLarge());
  net->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor out = net->forward(torch::zeros({1, 3, 112, 112}));
  EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{1, 512}));
}

TEST(EmbeddingNetTest, ReluVariantHasNoPreluParameters) {
  NetworkOptions options = NetworkOptions::CpuSmall();
  options.prelu = false;
  EmbeddingNet relu(options);
  EmbeddingNet prelu(NetworkOptions::CpuSmall());
  // One PReLU weight per channel: stem 32 + 2 per block (32 + 64 + 128 + 256).
  EXPECT_EQ(CountParameters(prelu) - CountParameters(relu), 32 + 2 * (32 + 64 + 128 + 256));
}

TEST(EmbeddingNetTest, TrainingStepReducesALoss) {
  torch::manual_seed(2);
  EmbeddingNet net(NetworkOptions::CpuSmall());
  net->train();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  const torch::Tensor input = torch::rand({8, 3, 64, 64}) * 2 - 1;
  const torch::Tensor target = torch::randn({8, 128});
  float first = 0.f;
  float last = 0.f;
  for (int step = 0; step < 5; ++step) {
    sgd.zero_grad();
    torch::Tensor loss = torch::mse_loss(net->forward(input), target);
    loss.backward();
    sgd.step();
    (step == 0 ? first : last) = loss.item<float>();
  }
  EXPECT_LT(last, first);
}

TEST(EmbeddingNetTest, InconsistentOptionsThrow) {
  NetworkOptions options = NetworkOptions::CpuSmall();
  options.blocks_per_stage = {1, 1};
  EXPECT_THROW(EmbeddingNet{options}, c10::Error);
  options = NetworkOptions::CpuSmall();
  options.architecture = "vgg";
  EXPECT_THROW(EmbeddingNet{options}, c10::Error);
}

TEST(CropsToTensorTest, ConvertsBgrToRgbInMinusOneToOne) {
  // BGR (0, 128, 255) -> RGB (255, 128, 0) -> (1.0, 128/127.5 - 1, -1.0).
  const cv::Mat crop(10, 10, CV_8UC3, cv::Scalar(0, 128, 255));
  const torch::Tensor t = CropsToTensor({crop, crop}, 64, torch::kCPU);
  ASSERT_EQ(t.sizes(), (std::vector<std::int64_t>{2, 3, 64, 64}));
  EXPECT_NEAR(t[1][0][5][7].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(t[1][1][5][7].item<float>(), 128.0f / 127.5f - 1.0f, 1e-6);
  EXPECT_NEAR(t[1][2][5][7].item<float>(), -1.0f, 1e-6);
}

TEST(CropsToTensorTest, KeepsPixelPositions) {
  cv::Mat crop(64, 64, CV_8UC3, cv::Scalar(0, 0, 0));
  crop.at<cv::Vec3b>(3, 50) = cv::Vec3b(255, 255, 255);
  const torch::Tensor t = CropsToTensor({crop}, 64, torch::kCPU);
  EXPECT_NEAR(t[0][0][3][50].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(t[0][0][50][3].item<float>(), -1.0f, 1e-6);
}

TEST(CropsToTensorTest, EmptyListGivesEmptyBatchAndBadCropThrows) {
  EXPECT_EQ(CropsToTensor({}, 64, torch::kCPU).sizes(), (std::vector<std::int64_t>{0, 3, 64, 64}));
  EXPECT_THROW(CropsToTensor({cv::Mat()}, 64, torch::kCPU), c10::Error);
  EXPECT_THROW(CropsToTensor({cv::Mat(8, 8, CV_8UC1)}, 64, torch::kCPU), c10::Error);
}

}  // namespace
}  // namespace faceid
