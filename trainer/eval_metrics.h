// Evaluation protocol of faceid on float embeddings, without LibTorch.
//
// Used by the trainer (validation each epoch, test at the end), by `faceid-train eval`, and by
// the server benchmarks and the demo. Every similarity is the cosine of the two vectors (the
// vectors are L2-normalised here, so raw features are accepted too). All functions are pure
// and thread-safe; random draws use std::mt19937_64 with seed 0, so results are reproducible.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace faceid {

// Embeddings of one evaluation set. `labels[i]` is the identity of `vectors[i]`; within one
// identity the vectors are in natural filename order (the enrollment order of rank-1).
struct LabeledVectors {
  std::vector<std::vector<float>> vectors;
  std::vector<int> labels;
};

// Similarity scores of genuine (same person) and impostor (different people) pairs.
struct PairScores {
  std::vector<float> genuine;
  std::vector<float> impostor;
};

struct EvalResult {
  double rank1 = 0;             // share of probes whose nearest enrolled face is right
  double auc = 0;               // ROC AUC over genuine vs balanced impostor pairs
  double accuracy = 0;          // 10-fold cross-validated verification accuracy
  double tar_far_1e2 = 0;       // true accept rate at false accept rate 1e-2
  double tar_far_1e3 = 0;       // ... at 1e-3
  float threshold_far_1e3 = 1;  // cosine similarity accepting at most 1e-3 of impostors
  double intra_inter = 0;       // mean intra-class distance / mean inter-centre distance
  std::int64_t images = 0;
  std::int64_t identities = 0;
  std::int64_t probes = 0;
  std::int64_t genuine_pairs = 0;
  std::int64_t impostor_pairs = 0;  // the pairs behind the TAR figures

  // {"rank1", "auc", "accuracy", "tar_far_1e-2", "tar_far_1e-3", "threshold_far_1e-3",
  //  "intra_inter", "images", "identities", "probes", "genuine_pairs", "impostor_pairs"}.
  nlohmann::json ToJson() const;
};

// Cosine similarity of two vectors of equal length (0 when either is all zeros).
float CosineSimilarity(const std::vector<float>& a, const std::vector<float>& b);

// How many images of an identity with `count` images are enrolled: 5, or half (rounded down)
// when it has fewer than 10. The rest are probes.
int EnrolledCount(int count);

// Rank-1 identification: per identity the first EnrolledCount() vectors (in the order given)
// are enrolled, the rest are probes; a probe is right when the enrolled vector with the
// highest cosine similarity has its label. `probes` receives the number of probes. 0 when
// there are no probes.
double Rank1(const LabeledVectors& set, std::int64_t* probes = nullptr);

// All genuine pairs, at most `max_genuine_per_person` per identity (drawn with seed 0 when an
// identity has more), and as many impostor pairs drawn uniformly with seed 0.
PairScores BalancedPairs(const LabeledVectors& set, int max_genuine_per_person = 2000);

// Impostor scores for the TAR figures: every impostor pair when there are at most
// `max_pairs`, else `max_pairs` pairs drawn with seed 0.
std::vector<float> ImpostorScores(const LabeledVectors& set, std::int64_t max_pairs = 100000);

// Probability that a random genuine score exceeds a random impostor score (ties count half).
// 0.5 when either list is empty.
double RocAuc(const std::vector<float>& genuine, const std::vector<float>& impostor);

// Verification accuracy at the best threshold, 10-fold cross-validated: pairs are shuffled
// with seed 0 into 10 folds, the threshold maximising accuracy on 9 folds is applied to the
// tenth; returns the mean over folds. Accept = score >= threshold.
double TenFoldAccuracy(const std::vector<float>& genuine, const std::vector<float>& impostor);

// The smallest threshold t such that at most floor(far * N) of the N impostor scores are
// >= t (accept = score >= t). Above every score when far * N < 1. 1 when `impostor` is empty.
float ThresholdAtFar(const std::vector<float>& impostor, double far);

// Share of genuine scores >= ThresholdAtFar(impostor, far).
double TarAtFar(const std::vector<float>& genuine, const std::vector<float>& impostor, double far);

// Mean distance of each unit vector to its identity's centre (the mean of its unit vectors),
// divided by the mean distance between the centres of distinct identities. Euclidean. 0 when
// there are fewer than two identities.
double IntraInterRatio(const LabeledVectors& set);

// The whole protocol on one set.
EvalResult Evaluate(const LabeledVectors& set);

// ROC points (false accept rate, true accept rate) at `points` thresholds evenly spaced over
// the score range, from the highest threshold to the lowest, for plotting.
std::vector<std::pair<double, double>> RocCurve(const std::vector<float>& genuine,
                                                const std::vector<float>& impostor,
                                                int points = 101);

}  // namespace faceid
