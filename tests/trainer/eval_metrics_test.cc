// Evaluation metrics on synthetic vectors with known answers.
#include "trainer/eval_metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace faceid {
namespace {

// Identity `l` lives near axis l of a `dim`-dimensional space; `noise` tilts it toward
// the next axis.
LabeledVectors AxisClusters(int identities, int per_identity, int dim, float noise) {
  LabeledVectors set;
  for (int l = 0; l < identities; ++l) {
    for (int i = 0; i < per_identity; ++i) {
      std::vector<float> v(dim, 0.f);
      v[l] = 1.f;
      v[(l + 1) % dim] = noise * float(i % 3);
      set.vectors.push_back(v);
      set.labels.push_back(l);
    }
  }
  return set;
}

TEST(EnrolledCountTest, FiveOrHalfBelowTen) {
  EXPECT_EQ(EnrolledCount(30), 5);
  EXPECT_EQ(EnrolledCount(10), 5);
  EXPECT_EQ(EnrolledCount(9), 4);
  EXPECT_EQ(EnrolledCount(3), 1);
  EXPECT_EQ(EnrolledCount(1), 0);
}

TEST(Rank1Test, PerfectWhenIdentitiesAreSeparated) {
  std::int64_t probes = 0;
  EXPECT_DOUBLE_EQ(Rank1(AxisClusters(4, 12, 8, 0.1f), &probes), 1.0);
  EXPECT_EQ(probes, 4 * 7);
}

TEST(Rank1Test, CountsWrongNearestNeighbour) {
  // Two people, 4 images each: enrolled 2 each. Person 1's last probe sits on person 0's axis.
  LabeledVectors set;
  set.vectors = {{1, 0}, {1, 0.1f}, {1, 0}, {1, 0}, {0, 1}, {0.1f, 1}, {0, 1}, {1, 0.05f}};
  set.labels = {0, 0, 0, 0, 1, 1, 1, 1};
  std::int64_t probes = 0;
  EXPECT_DOUBLE_EQ(Rank1(set, &probes), 3.0 / 4.0);
  EXPECT_EQ(probes, 4);
}

TEST(RocAucTest, KnownValues) {
  EXPECT_DOUBLE_EQ(RocAuc({0.9f, 0.8f}, {0.1f, 0.2f}), 1.0);
  EXPECT_DOUBLE_EQ(RocAuc({0.1f}, {0.9f}), 0.0);
  // genuine {0.5, 0.9} vs impostor {0.5, 0.1}: pairs won 0.5 + 1 + 1 + 1 = 3.5 of 4.
  EXPECT_DOUBLE_EQ(RocAuc({0.5f, 0.9f}, {0.5f, 0.1f}), 3.5 / 4.0);
}

// Regression: a diverged model gives NaN similarities, and the tie loop of RocAuc never
// advanced past a NaN (NaN == NaN is false): `faceid-train fit --lr 1e10` hung for ever.
// NaN now ranks below every number.
TEST(RocAucTest, NanScoresEndAndRankLowest) {
  const float nan = std::nanf("");
  EXPECT_DOUBLE_EQ(RocAuc({nan, nan}, {nan}), 0.5);
  EXPECT_DOUBLE_EQ(RocAuc({0.9f, 0.8f}, {nan, 0.1f}), 1.0);
  EXPECT_DOUBLE_EQ(RocAuc({nan}, {0.1f}), 0.0);
  EXPECT_DOUBLE_EQ(TenFoldAccuracy(std::vector<float>(10, nan), std::vector<float>(10, nan)), 0.5);
  EXPECT_FLOAT_EQ(ThresholdAtFar({0.2f, nan, 0.4f}, 0.0), std::nextafter(0.4f, 2.f));
}

TEST(ThresholdAtFarTest, AdmitsAtMostTheAllowedShare) {
  std::vector<float> impostor;
  for (int i = 0; i < 1000; ++i) impostor.push_back(float(i) / 1000.f);
  const float t = ThresholdAtFar(impostor, 1e-2);
  int accepted = 0;
  for (float s : impostor) accepted += s >= t ? 1 : 0;
  EXPECT_EQ(accepted, 10);
  EXPECT_GT(t, 0.989f);
  EXPECT_LE(t, 0.990f);
}

TEST(TarAtFarTest, KnownShareOfGenuineAboveThreshold) {
  std::vector<float> impostor;
  for (int i = 0; i < 1000; ++i) impostor.push_back(float(i) / 1000.f);  // t at 1e-2 ~ 0.99
  const std::vector<float> genuine = {0.995f, 0.999f, 0.5f, 0.98f};
  EXPECT_DOUBLE_EQ(TarAtFar(genuine, impostor, 1e-2), 0.5);
  EXPECT_DOUBLE_EQ(TarAtFar(genuine, impostor, 1e-3), 0.25);  // t just above 0.998
}

TEST(TenFoldAccuracyTest, SeparableIsPerfect) {
  std::vector<float> g, i;
  for (int k = 0; k < 100; ++k) {
    g.push_back(0.6f + 0.001f * k);
    i.push_back(0.1f + 0.001f * k);
  }
  EXPECT_DOUBLE_EQ(TenFoldAccuracy(g, i), 1.0);
}

TEST(TenFoldAccuracyTest, GenuinePairsBelowEveryImpostorAreTheOnlyErrors) {
  // 10 of 200 pairs can never be right: every fold threshold lies between 0.1 and 0.9.
  std::vector<float> g(90, 0.9f), i(100, 0.1f);
  g.insert(g.end(), 10, 0.05f);
  EXPECT_NEAR(TenFoldAccuracy(g, i), 0.95, 1e-12);
}

TEST(IntraInterRatioTest, ZeroForPointClustersAndKnownForSpread) {
  EXPECT_DOUBLE_EQ(IntraInterRatio(AxisClusters(3, 4, 3, 0.f)), 0.0);
  // Two identities on axes x and y, each as two unit vectors at +-a around its axis.
  const float a = 0.6f, b = 0.8f;
  LabeledVectors set;
  set.vectors = {{b, a}, {b, -a}, {-a, b}, {a, b}};
  set.labels = {0, 0, 1, 1};
  // centres (0.8, 0) and (0, 0.8): intra 0.6, inter 0.8 * sqrt(2).
  EXPECT_NEAR(IntraInterRatio(set), 0.6 / (0.8 * std::sqrt(2.0)), 1e-6);
}

TEST(BalancedPairsTest, AllGenuineAndAsManyImpostors) {
  const PairScores pairs = BalancedPairs(AxisClusters(3, 4, 3, 0.f));
  EXPECT_EQ(pairs.genuine.size(), 3u * 6u);
  EXPECT_EQ(pairs.impostor.size(), pairs.genuine.size());
  for (float s : pairs.genuine) EXPECT_NEAR(s, 1.f, 1e-6);
  for (float s : pairs.impostor) EXPECT_NEAR(s, 0.f, 1e-6);
}

TEST(BalancedPairsTest, CapsGenuinePairsPerPerson) {
  EXPECT_EQ(BalancedPairs(AxisClusters(2, 30, 2, 0.f), 100).genuine.size(), 200u);
}

TEST(ImpostorScoresTest, AllPairsBelowCapElseDrawn) {
  const LabeledVectors set = AxisClusters(3, 4, 3, 0.f);
  EXPECT_EQ(ImpostorScores(set).size(), 48u);  // 3 pairs of people x 16
  EXPECT_EQ(ImpostorScores(set, 10).size(), 10u);
}

TEST(EvaluateTest, SeparatedClustersScorePerfectly) {
  const EvalResult r = Evaluate(AxisClusters(5, 10, 8, 0.1f));
  EXPECT_DOUBLE_EQ(r.rank1, 1.0);
  EXPECT_DOUBLE_EQ(r.auc, 1.0);
  EXPECT_DOUBLE_EQ(r.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(r.tar_far_1e3, 1.0);
  EXPECT_EQ(r.images, 50);
  EXPECT_EQ(r.identities, 5);
  EXPECT_EQ(r.ToJson().at("tar_far_1e-2").get<double>(), 1.0);
}

TEST(EvaluateTest, IsDeterministic) {
  LabeledVectors set = AxisClusters(6, 9, 4, 0.4f);
  EXPECT_EQ(Evaluate(set).ToJson(), Evaluate(set).ToJson());
}

}  // namespace
}  // namespace faceid
