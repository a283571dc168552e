#include "trainer/eval_metrics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <utility>

namespace faceid {

namespace {

std::vector<std::vector<float>> Normalised(const std::vector<std::vector<float>>& vectors) {
  std::vector<std::vector<float>> out = vectors;
  for (auto& v : out) {
    double norm = 0;
    for (float x : v) norm += double(x) * x;
    norm = std::sqrt(norm);
    if (norm > 0) {
      for (float& x : v) x = float(x / norm);
    }
  }
  return out;
}

float Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) s += double(a[i]) * b[i];
  return float(s);
}

// Indices of each label's vectors, in input order, by label.
std::map<int, std::vector<int>> ByLabel(const std::vector<int>& labels) {
  std::map<int, std::vector<int>> groups;
  for (int i = 0; i < int(labels.size()); ++i) groups[labels[i]].push_back(i);
  return groups;
}

std::uint64_t Draw(std::mt19937_64& rng, std::uint64_t n) { return rng() % n; }

// Score order with NaN below every number: a strict weak order even when a broken model
// produces NaN similarities, so sorting stays defined and the tie loops below end.
bool ScoreLess(float a, float b) { return std::isnan(a) ? !std::isnan(b) : a < b; }
bool SameScore(float a, float b) { return !ScoreLess(a, b) && !ScoreLess(b, a); }

// Draws `count` pairs (i, j) of vectors with different labels.
std::vector<float> DrawImpostors(const std::vector<std::vector<float>>& unit,
                                 const std::vector<int>& labels, std::int64_t count) {
  std::vector<float> scores;
  const std::uint64_t n = unit.size();
  if (n < 2 || count <= 0) return scores;
  std::mt19937_64 rng(0);
  scores.reserve(count);
  // Bounded so a set with a single identity cannot loop forever.
  for (std::int64_t attempts = 0; std::int64_t(scores.size()) < count && attempts < count * 50;
       ++attempts) {
    const std::uint64_t i = Draw(rng, n);
    const std::uint64_t j = Draw(rng, n);
    if (labels[i] == labels[j]) continue;
    scores.push_back(Dot(unit[i], unit[j]));
  }
  return scores;
}

}  // namespace

nlohmann::json EvalResult::ToJson() const {
  return {{"rank1", rank1},
          {"auc", auc},
          {"accuracy", accuracy},
          {"tar_far_1e-2", tar_far_1e2},
          {"tar_far_1e-3", tar_far_1e3},
          {"threshold_far_1e-3", threshold_far_1e3},
          {"intra_inter", intra_inter},
          {"images", images},
          {"identities", identities},
          {"probes", probes},
          {"genuine_pairs", genuine_pairs},
          {"impostor_pairs", impostor_pairs}};
}

float CosineSimilarity(const std::vector<float>& a, const std::vector<float>& b) {
  double na = 0, nb = 0;
  for (float x : a) na += double(x) * x;
  for (float x : b) nb += double(x) * x;
  if (na == 0 || nb == 0) return 0.f;
  return float(Dot(a, b) / std::sqrt(na * nb));
}

int EnrolledCount(int count) { return count >= 10 ? 5 : count / 2; }

double Rank1(const LabeledVectors& set, std::int64_t* probes) {
  const auto unit = Normalised(set.vectors);
  std::vector<int> enrolled, probe;
  for (const auto& [label, indices] : ByLabel(set.labels)) {
    const int k = EnrolledCount(int(indices.size()));
    for (int i = 0; i < int(indices.size()); ++i) (i < k ? enrolled : probe).push_back(indices[i]);
  }
  if (probes) *probes = std::int64_t(probe.size());
  if (probe.empty() || enrolled.empty()) return 0;
  std::int64_t right = 0;
  for (int p : probe) {
    int best = -1;
    float best_score = -2.f;
    for (int e : enrolled) {
      const float s = Dot(unit[p], unit[e]);
      if (s > best_score) {
        best_score = s;
        best = e;
      }
    }
    if (set.labels[best] == set.labels[p]) ++right;
  }
  return double(right) / double(probe.size());
}

PairScores BalancedPairs(const LabeledVectors& set, int max_genuine_per_person) {
  const auto unit = Normalised(set.vectors);
  PairScores out;
  std::mt19937_64 rng(0);
  for (const auto& [label, indices] : ByLabel(set.labels)) {
    std::vector<std::pair<int, int>> pairs;
    for (std::size_t a = 0; a < indices.size(); ++a) {
      for (std::size_t b = a + 1; b < indices.size(); ++b)
        pairs.emplace_back(indices[a], indices[b]);
    }
    if (int(pairs.size()) > max_genuine_per_person) {
      std::shuffle(pairs.begin(), pairs.end(), rng);
      pairs.resize(max_genuine_per_person);
    }
    for (const auto& [a, b] : pairs) out.genuine.push_back(Dot(unit[a], unit[b]));
  }
  out.impostor = DrawImpostors(unit, set.labels, std::int64_t(out.genuine.size()));
  return out;
}

std::vector<float> ImpostorScores(const LabeledVectors& set, std::int64_t max_pairs) {
  const auto unit = Normalised(set.vectors);
  const std::int64_t n = std::int64_t(unit.size());
  std::int64_t total = 0;
  for (const auto& [label, indices] : ByLabel(set.labels)) {
    total += std::int64_t(indices.size()) * (n - std::int64_t(indices.size()));
  }
  total /= 2;
  if (total > max_pairs) return DrawImpostors(unit, set.labels, max_pairs);
  std::vector<float> scores;
  scores.reserve(total);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = i + 1; j < n; ++j) {
      if (set.labels[i] != set.labels[j]) scores.push_back(Dot(unit[i], unit[j]));
    }
  }
  return scores;
}

double RocAuc(const std::vector<float>& genuine, const std::vector<float>& impostor) {
  if (genuine.empty() || impostor.empty()) return 0.5;
  // Mann-Whitney U from the ranks of the pooled scores, ties sharing their mean rank.
  std::vector<std::pair<float, bool>> all;
  all.reserve(genuine.size() + impostor.size());
  for (float g : genuine) all.emplace_back(g, true);
  for (float i : impostor) all.emplace_back(i, false);
  std::sort(all.begin(), all.end(),
            [](const auto& a, const auto& b) { return ScoreLess(a.first, b.first); });
  double genuine_rank_sum = 0;
  for (std::size_t i = 0; i < all.size();) {
    std::size_t j = i;
    while (j < all.size() && SameScore(all[j].first, all[i].first)) ++j;
    const double mean_rank = (double(i + 1) + double(j)) / 2.0;
    for (std::size_t k = i; k < j; ++k) {
      if (all[k].second) genuine_rank_sum += mean_rank;
    }
    i = j;
  }
  const double ng = double(genuine.size()), ni = double(impostor.size());
  return (genuine_rank_sum - ng * (ng + 1) / 2.0) / (ng * ni);
}

namespace {

struct Pair {
  float score;
  bool genuine;
};

// Threshold (accept = score >= t) with the highest accuracy on `pairs`, midway between the
// scores it separates.
float BestThreshold(std::vector<Pair> pairs) {
  std::sort(pairs.begin(), pairs.end(),
            [](const Pair& a, const Pair& b) { return ScoreLess(a.score, b.score); });
  // Threshold at pairs[i].score accepts pairs[i..]; start with everything accepted.
  std::int64_t correct = 0;
  for (const Pair& p : pairs) correct += p.genuine ? 1 : 0;
  std::int64_t best = correct;
  float best_t = pairs.empty() ? 0.f : pairs.front().score;
  for (std::size_t i = 0; i < pairs.size();) {
    std::size_t j = i;
    while (j < pairs.size() && SameScore(pairs[j].score, pairs[i].score)) {
      correct += pairs[j].genuine ? -1 : 1;
      ++j;
    }
    if (correct > best) {
      best = correct;
      best_t = j < pairs.size() ? 0.5f * (pairs[i].score + pairs[j].score)
                                : std::nextafter(pairs[i].score, 2.f);
    }
    i = j;
  }
  return best_t;
}

}  // namespace

double TenFoldAccuracy(const std::vector<float>& genuine, const std::vector<float>& impostor) {
  std::vector<Pair> pairs;
  for (float g : genuine) pairs.push_back({g, true});
  for (float i : impostor) pairs.push_back({i, false});
  if (pairs.size() < 10) return 0;
  std::mt19937_64 rng(0);
  std::shuffle(pairs.begin(), pairs.end(), rng);
  double sum = 0;
  for (int fold = 0; fold < 10; ++fold) {
    std::vector<Pair> train, test;
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      (int(i % 10) == fold ? test : train).push_back(pairs[i]);
    }
    const float t = BestThreshold(train);
    std::int64_t right = 0;
    for (const Pair& p : test) right += ((p.score >= t) == p.genuine) ? 1 : 0;
    sum += double(right) / double(test.size());
  }
  return sum / 10.0;
}

float ThresholdAtFar(const std::vector<float>& impostor, double far) {
  if (impostor.empty()) return 1.f;
  std::vector<float> sorted = impostor;
  std::sort(sorted.begin(), sorted.end(), [](float a, float b) { return ScoreLess(b, a); });
  const std::size_t allowed = std::size_t(std::floor(far * double(sorted.size()) + 1e-9));
  if (allowed >= sorted.size()) return sorted.back();
  // Accepting >= nextafter(sorted[allowed]) admits only scores strictly above it: <= allowed.
  return std::nextafter(sorted[allowed], 2.f);
}

double TarAtFar(const std::vector<float>& genuine, const std::vector<float>& impostor, double far) {
  if (genuine.empty()) return 0;
  const float t = ThresholdAtFar(impostor, far);
  std::int64_t accepted = 0;
  for (float g : genuine) accepted += g >= t ? 1 : 0;
  return double(accepted) / double(genuine.size());
}

double IntraInterRatio(const LabeledVectors& set) {
  const auto unit = Normalised(set.vectors);
  const auto groups = ByLabel(set.labels);
  if (groups.size() < 2) return 0;
  std::vector<std::vector<float>> centres;
  double intra = 0;
  for (const auto& [label, indices] : groups) {
    std::vector<float> c(unit[indices[0]].size(), 0.f);
    for (int i : indices) {
      for (std::size_t d = 0; d < c.size(); ++d) c[d] += unit[i][d] / float(indices.size());
    }
    for (int i : indices) {
      double s = 0;
      for (std::size_t d = 0; d < c.size(); ++d)
        s += double(unit[i][d] - c[d]) * (unit[i][d] - c[d]);
      intra += std::sqrt(s);
    }
    centres.push_back(std::move(c));
  }
  intra /= double(unit.size());
  double inter = 0;
  std::int64_t pairs = 0;
  for (std::size_t a = 0; a < centres.size(); ++a) {
    for (std::size_t b = a + 1; b < centres.size(); ++b) {
      double s = 0;
      for (std::size_t d = 0; d < centres[a].size(); ++d) {
        s += double(centres[a][d] - centres[b][d]) * (centres[a][d] - centres[b][d]);
      }
      inter += std::sqrt(s);
      ++pairs;
    }
  }
  inter /= double(pairs);
  return inter > 0 ? intra / inter : 0;
}

EvalResult Evaluate(const LabeledVectors& set) {
  EvalResult r;
  r.images = std::int64_t(set.vectors.size());
  r.identities = std::int64_t(ByLabel(set.labels).size());
  r.rank1 = Rank1(set, &r.probes);
  const PairScores balanced = BalancedPairs(set);
  r.genuine_pairs = std::int64_t(balanced.genuine.size());
  r.auc = RocAuc(balanced.genuine, balanced.impostor);
  r.accuracy = TenFoldAccuracy(balanced.genuine, balanced.impostor);
  const std::vector<float> impostors = ImpostorScores(set);
  r.impostor_pairs = std::int64_t(impostors.size());
  r.tar_far_1e2 = TarAtFar(balanced.genuine, impostors, 1e-2);
  r.tar_far_1e3 = TarAtFar(balanced.genuine, impostors, 1e-3);
  r.threshold_far_1e3 = ThresholdAtFar(impostors, 1e-3);
  r.intra_inter = IntraInterRatio(set);
  return r;
}

std::vector<std::pair<double, double>> RocCurve(const std::vector<float>& genuine,
                                                const std::vector<float>& impostor, int points) {
  std::vector<std::pair<double, double>> curve;
  if (genuine.empty() || impostor.empty() || points < 2) return curve;
  float lo = std::min(*std::min_element(genuine.begin(), genuine.end()),
                      *std::min_element(impostor.begin(), impostor.end()));
  float hi = std::max(*std::max_element(genuine.begin(), genuine.end()),
                      *std::max_element(impostor.begin(), impostor.end()));
  for (int k = 0; k < points; ++k) {
    const float t = hi - (hi - lo) * float(k) / float(points - 1);
    std::int64_t ta = 0, fa = 0;
    for (float g : genuine) ta += g >= t ? 1 : 0;
    for (float i : impostor) fa += i >= t ? 1 : 0;
    curve.emplace_back(double(fa) / double(impostor.size()), double(ta) / double(genuine.size()));
  }
  return curve;
}

}  // namespace faceid
