// Losses against values computed by hand on tiny tensors.
#include "trainer/losses.h"

#include <gtest/gtest.h>

#include <cmath>

namespace faceid {
namespace {

torch::Tensor Logits() { return torch::tensor({{1.0f, 2.0f, 3.0f}, {0.5f, 0.5f, 2.0f}}); }
torch::Tensor Labels() { return torch::tensor({2, 0}, torch::kInt64); }

// log softmax of one row, by hand.
double LogP(std::vector<double> row, int k) {
  double z = 0;
  for (double v : row) z += std::exp(v);
  return row[k] - std::log(z);
}

TEST(CrossEntropyTest, MatchesHandComputedMean) {
  const double expected = -(LogP({1, 2, 3}, 2) + LogP({0.5, 0.5, 2}, 0)) / 2.0;
  EXPECT_NEAR(CrossEntropy(Logits(), Labels()).item<double>(), expected, 1e-6);
}

TEST(SmoothedCrossEntropyTest, MatchesFormula) {
  const double eps = 0.1;
  auto row_loss = [&](std::vector<double> row, int y) {
    double uniform = 0;
    for (int i = 0; i < 3; ++i) uniform += LogP(row, i) / 3.0;
    return -(1 - eps) * LogP(row, y) - eps * uniform;
  };
  const double expected = (row_loss({1, 2, 3}, 2) + row_loss({0.5, 0.5, 2}, 0)) / 2.0;
  EXPECT_NEAR(SmoothedCrossEntropy(Logits(), Labels(), eps).item<double>(), expected, 1e-6);
}

TEST(SmoothedCrossEntropyTest, ZeroEpsilonEqualsCrossEntropy) {
  EXPECT_NEAR(SmoothedCrossEntropy(Logits(), Labels(), 0.0).item<double>(),
              CrossEntropy(Logits(), Labels()).item<double>(), 1e-7);
}

TEST(CenterLossTest, MatchesHalfSquaredDistanceMean) {
  CenterLoss loss(2, 2);
  {
    torch::NoGradGuard no_grad;
    loss->centers()->weight.copy_(torch::tensor({{0.0f, 0.0f}, {1.0f, 1.0f}}));
  }
  const torch::Tensor x = torch::tensor({{1.0f, 0.0f}, {3.0f, 1.0f}, {0.0f, 2.0f}});
  const torch::Tensor y = torch::tensor({0, 1, 0}, torch::kInt64);
  // 1/2 * (1 + 4 + 4) / 3
  EXPECT_NEAR(loss->forward(x, y).item<double>(), 1.5, 1e-6);
}

TEST(CenterLossTest, LossIsZeroWhenFeaturesEqualTheirCenters) {
  CenterLoss loss(3, 4);
  const torch::Tensor y = torch::tensor({2, 0, 2}, torch::kInt64);
  const torch::Tensor x = loss->centers()->weight.index_select(0, y).detach().clone();
  EXPECT_NEAR(loss->forward(x, y).item<double>(), 0.0, 1e-9);
}

TEST(CenterLossTest, CentersReceiveGradientAndMoveTowardClassMeans) {
  torch::manual_seed(0);
  CenterLoss loss(2, 2);
  const torch::Tensor x = torch::tensor({{2.0f, 0.0f}, {4.0f, 0.0f}, {0.0f, -3.0f}});
  const torch::Tensor y = torch::tensor({0, 0, 1}, torch::kInt64);
  const torch::Tensor means = torch::tensor({{3.0f, 0.0f}, {0.0f, -3.0f}});
  torch::optim::SGD sgd(loss->parameters(), torch::optim::SGDOptions(0.5));
  const double before = (loss->centers()->weight - means).norm().item<double>();
  sgd.zero_grad();
  loss->forward(x, y).backward();
  const torch::Tensor grad = loss->centers()->weight.grad();
  ASSERT_TRUE(grad.defined());
  // d/dc_0 of (1/3) * sum 1/2 |x - c_0|^2 = (2 c_0 - x_0 - x_1) / 3.
  const torch::Tensor c0 = loss->centers()->weight[0].detach();
  EXPECT_TRUE(torch::allclose(grad[0], (2 * c0 - x[0] - x[1]) / 3.0, 1e-5, 1e-6));
  for (int i = 0; i < 50; ++i) {
    sgd.step();
    sgd.zero_grad();
    loss->forward(x, y).backward();
  }
  const double after = (loss->centers()->weight - means).norm().item<double>();
  EXPECT_LT(after, 0.05 * before);
}

TEST(CenterLossTest, RescaledGradientGivesWenUpdate) {
  // lambda 0.1, batch of 3: class 0 twice, class 1 once, class 2 absent.
  CenterLoss loss(3, 2);
  {
    torch::NoGradGuard no_grad;
    loss->centers()->weight.copy_(torch::tensor({{0.0f, 0.0f}, {1.0f, 1.0f}, {5.0f, 5.0f}}));
  }
  const torch::Tensor x = torch::tensor({{2.0f, 0.0f}, {4.0f, 0.0f}, {1.0f, -2.0f}});
  const torch::Tensor y = torch::tensor({0, 0, 1}, torch::kInt64);
  const double lambda = 0.1, alpha = 0.5;
  torch::optim::SGD sgd(loss->parameters(), torch::optim::SGDOptions(alpha));
  sgd.zero_grad();
  (lambda * loss->forward(x, y)).backward();
  loss->RescaleCenterGradient(y, lambda);
  sgd.step();
  // c_0 -= 0.5 * ((0-2) + (0-4), 0) / 3 = (1, 0); c_1 -= 0.5 * (0, 3) / 2 = (1, 0.25); c_2 stays.
  const torch::Tensor expected = torch::tensor({{1.0f, 0.0f}, {1.0f, 0.25f}, {5.0f, 5.0f}});
  EXPECT_TRUE(torch::allclose(loss->centers()->weight, expected, 1e-5, 1e-6))
      << loss->centers()->weight;
}

TEST(CenterLossTest, RescaleLeavesFeatureGradientAlone) {
  CenterLoss loss(2, 2);
  const torch::Tensor x = torch::tensor({{2.0f, 0.0f}, {0.0f, 1.0f}}).requires_grad_(true);
  const torch::Tensor y = torch::tensor({0, 1}, torch::kInt64);
  (0.01 * loss->forward(x, y)).backward();
  const torch::Tensor before = x.grad().clone();
  loss->RescaleCenterGradient(y, 0.01);
  EXPECT_TRUE(torch::equal(x.grad(), before));
  // d/dx_b of 0.01 * (1/2) * sum 1/2 |x - c|^2 = 0.005 * (x_b - c_b)
  const torch::Tensor c = loss->centers()->weight.index_select(0, y).detach();
  EXPECT_TRUE(torch::allclose(before, 0.005 * (x.detach() - c), 1e-5, 1e-7));
}

TEST(TripletLossTest, MatchesHandComputedCosines) {
  const torch::Tensor a = torch::tensor({{1.0f, 0.0f}});
  const torch::Tensor p = torch::tensor({{1.0f, 1.0f}});  // cos = 0.7071
  const torch::Tensor n = torch::tensor({{0.0f, 1.0f}});  // cos = 0
  EXPECT_NEAR(TripletLoss(a, p, n, 0.9).item<double>(), 0.9 - std::sqrt(0.5), 1e-6);
}

TEST(TripletLossTest, ZeroOnceTheMarginHolds) {
  const torch::Tensor a = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}});
  const torch::Tensor p = torch::tensor({{2.0f, 0.1f}, {0.0f, 3.0f}});
  const torch::Tensor n = torch::tensor({{0.0f, 1.0f}, {1.0f, 0.0f}});
  EXPECT_EQ(TripletLoss(a, p, n, 0.5).item<double>(), 0.0);
}

TEST(BatchHardTripletLossTest, UsesHardestPositiveAndNegative) {
  // Two people, two images each. For anchor 0: positive 1 (cos 0), negatives 2 (cos 1), 3.
  const torch::Tensor f = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {1.0f, 0.0f}, {-1.0f, 0.0f}});
  const torch::Tensor y = torch::tensor({0, 0, 1, 1}, torch::kInt64);
  // anchor0: 0.2 + 1 - 0 = 1.2; anchor1: hardest neg cos(1, {2,3}) = 0 -> 0.2 + 0 - 0 = 0.2
  // anchor2: pos 3 cos -1, neg max(cos(2,0)=1, cos(2,1)=0) = 1 -> 0.2 + 1 + 1 = 2.2
  // anchor3: pos 2 cos -1, neg max(-1, 0) = 0 -> 0.2 + 0 + 1 = 1.2
  EXPECT_NEAR(BatchHardTripletLoss(f, y, 0.2).item<double>(), (1.2 + 0.2 + 2.2 + 1.2) / 4, 1e-6);
}

TEST(BatchHardTripletLossTest, ZeroWhenClassesAreSeparatedByTheMargin) {
  const torch::Tensor f = torch::tensor({{1.0f, 0.0f}, {1.0f, 0.1f}, {0.0f, 1.0f}, {0.1f, 1.0f}});
  const torch::Tensor y = torch::tensor({0, 0, 1, 1}, torch::kInt64);
  EXPECT_EQ(BatchHardTripletLoss(f, y, 0.5).item<double>(), 0.0);
}

TEST(AccuracyTest, CountsArgmaxMatches) { EXPECT_NEAR(Accuracy(Logits(), Labels()), 0.5, 1e-12); }

}  // namespace
}  // namespace faceid
