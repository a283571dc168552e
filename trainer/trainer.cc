#include "trainer/trainer.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "core/face_pipeline.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/nn/embedding_net.h"
#include "core/nn/model_file.h"
#include "trainer/augment.h"
#include "trainer/dataset.h"
#include "trainer/losses.h"
#include "trainer/progress.h"

namespace faceid {

namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_interrupted{false};

extern "C" void OnSigint(int) { g_interrupted.store(true); }

// Ctrl-C (SIGINT) and SIGTERM (a scheduler or `kill` stopping the job) both stop alignment,
// or write a checkpoint and stop training. Restores the previous handlers when the run ends.
class SigintScope {
 public:
  SigintScope() {
    g_interrupted.store(false);
    previous_int_ = std::signal(SIGINT, OnSigint);
    previous_term_ = std::signal(SIGTERM, OnSigint);
  }
  ~SigintScope() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

std::uint64_t Mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E5Full;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string NowIso8601() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct Batch {
  torch::Tensor images;  // [B, 3, S, S] on CPU
  torch::Tensor labels;  // [B] int64
};

// The image indices of every batch of one epoch: a pure function of (seed, epoch).
std::vector<std::vector<int>> EpochBatches(const AlignedSet& set, const FitOptions& o, int epoch,
                                           std::int64_t steps_per_epoch) {
  std::mt19937_64 rng(Mix(o.seed, std::uint64_t(epoch) + 1));
  std::vector<std::vector<int>> batches;
  if (o.loss == "triplet") {
    std::vector<std::vector<int>> by_label(set.names.size());
    for (int i = 0; i < int(set.images.size()); ++i) by_label[set.images[i].label].push_back(i);
    const int k = std::max(2, o.triplet_k);
    const int p = std::max(2, o.batch / k);
    std::vector<int> labels(by_label.size());
    for (int l = 0; l < int(labels.size()); ++l) labels[l] = l;
    std::size_t cursor = labels.size();
    for (std::int64_t s = 0; s < steps_per_epoch; ++s) {
      std::vector<int> batch;
      for (int j = 0; j < p; ++j) {
        if (cursor >= labels.size()) {
          std::shuffle(labels.begin(), labels.end(), rng);
          cursor = 0;
        }
        auto& pool = by_label[labels[cursor++]];
        for (int t = 0; t < k; ++t) batch.push_back(pool[rng() % pool.size()]);
      }
      batches.push_back(std::move(batch));
    }
    return batches;
  }
  std::vector<int> order(set.images.size());
  for (int i = 0; i < int(order.size()); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (std::int64_t s = 0; s < steps_per_epoch; ++s) {
    std::vector<int> batch;
    for (int j = 0; j < o.batch; ++j) batch.push_back(order[(s * o.batch + j) % order.size()]);
    batches.push_back(std::move(batch));
  }
  return batches;
}

// Prepares batches [first, batches.size()) of one epoch on worker threads, at most `ahead`
// batches in advance. Each batch's augmentation is seeded by (seed, epoch, step, position),
// so the result does not depend on the number of threads.
class BatchLoader {
 public:
  BatchLoader(const AlignedSet& set, const FitOptions& o, int epoch,
              std::vector<std::vector<int>> batches, std::size_t first, int threads, int ahead)
      : set_(set),
        o_(o),
        epoch_(epoch),
        batches_(std::move(batches)),
        next_(first),
        consumed_(first),
        ahead_(std::size_t(std::max(1, ahead))) {
    for (int t = 0; t < std::max(1, threads); ++t) workers_.emplace_back([this] { Work(); });
  }

  ~BatchLoader() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  // Blocks until batch `step` is ready. INTERNAL when preparing it failed (out of memory for
  // a huge --batch or --image-size, say).
  StatusOr<Batch> Take(std::size_t step) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return ready_.count(step) > 0 || errors_.count(step) > 0; });
    if (errors_.count(step) > 0) {
      return absl::InternalError("preparing batch " + std::to_string(step + 1) +
                                 " failed: " + errors_[step]);
    }
    Batch batch = std::move(ready_[step]);
    ready_.erase(step);
    consumed_ = step + 1;
    cv_.notify_all();
    return batch;
  }

 private:
  void Work() {
    while (true) {
      std::size_t step;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock,
                 [&] { return stop_ || (next_ < batches_.size() && next_ < consumed_ + ahead_); });
        if (stop_) return;
        step = next_++;
      }
      Batch batch;
      std::string error;
      try {
        batch = Make(step);
      } catch (const std::exception& e) {  // c10::Error, cv::Exception, bad_alloc
        error = e.what();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (error.empty()) {
          ready_[step] = std::move(batch);
        } else {
          errors_[step] = std::move(error);
        }
      }
      cv_.notify_all();
    }
  }

  Batch Make(std::size_t step) const {
    const auto& indices = batches_[step];
    std::vector<cv::Mat> crops;
    std::vector<std::int64_t> labels;
    AugmentOptions augment;
    for (std::size_t j = 0; j < indices.size(); ++j) {
      const AlignedImage& image = set_.images[indices[j]];
      if (o_.augment) {
        std::mt19937_64 rng(Mix(Mix(o_.seed, std::uint64_t(epoch_)), Mix(step, j)));
        crops.push_back(AugmentCrop(image.crop, augment, rng));
      } else {
        crops.push_back(image.crop);
      }
      labels.push_back(image.label);
    }
    return {CropsToTensor(crops, o_.image_size, torch::kCPU), torch::tensor(labels, torch::kInt64)};
  }

  const AlignedSet& set_;
  const FitOptions& o_;
  int epoch_;
  std::vector<std::vector<int>> batches_;
  std::size_t next_, consumed_, ahead_;
  bool stop_ = false;
  std::map<std::size_t, Batch> ready_;
  std::map<std::size_t, std::string> errors_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
};

// Everything that trains, in one place so checkpoints cover all of it.
struct Model {
  EmbeddingNet net{nullptr};
  torch::nn::Linear head{nullptr};
  CenterLoss centers{nullptr};
  std::unique_ptr<torch::optim::SGD> optimizer;
};

struct Progress {
  int epoch = 0;  // next epoch to run (0-based)
  std::int64_t step_in_epoch = 0;
  std::int64_t global_step = 0;
  double best_val_auc = -1;
  // Sums of the loss terms over the steps run so far in this epoch (the epoch's summary line
  // is their mean), kept in checkpoints so a resumed epoch reports all of its steps.
  std::array<double, 6> epoch_sums{};  // ce, center, triplet, total, acc, steps
};

// [N, embedding_dim] float features of `images`, on the CPU. FAILED_PRECONDITION when the
// network gives NaN or infinite values (its weights diverged).
StatusOr<torch::Tensor> EmbedCrops(EmbeddingNet& net, const std::vector<AlignedImage>& images,
                                   int input_size, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  net->eval();
  std::vector<torch::Tensor> parts;
  for (std::size_t start = 0; start < images.size(); start += 128) {
    std::vector<cv::Mat> crops;
    for (std::size_t i = start; i < std::min(images.size(), start + 128); ++i) {
      crops.push_back(images[i].crop);
    }
    parts.push_back(net->forward(CropsToTensor(crops, input_size, device)).to(torch::kCPU));
  }
  net->train();
  if (parts.empty()) return torch::zeros({0, 0});
  torch::Tensor all = torch::cat(parts);
  if (!torch::isfinite(all).all().item<bool>()) {
    return absl::FailedPreconditionError(
        "training diverged: the network gives NaN or infinite embeddings. Train again with a "
        "lower --lr");
  }
  return all;
}

LabeledVectors ToLabeled(const torch::Tensor& embeddings, const AlignedSet& set) {
  LabeledVectors out;
  const torch::Tensor e = embeddings.contiguous().to(torch::kFloat32);
  for (std::int64_t i = 0; i < e.size(0); ++i) {
    const float* p = e[i].data_ptr<float>();
    out.vectors.emplace_back(p, p + e.size(1));
    out.labels.push_back(set.images[std::size_t(i)].label);
  }
  return out;
}

void WriteModules(Model& m, torch::serialize::OutputArchive& archive) {
  torch::serialize::OutputArchive net, head, centers;
  m.net->save(net);
  m.head->save(head);
  m.centers->save(centers);
  archive.write("net", net);
  archive.write("head", head);
  archive.write("centers", centers);
}

// SHA-256 of every parameter and buffer of the trained modules, in registration order.
std::string WeightsDigest(Model& m) {
  std::string bytes;
  auto add = [&](const torch::nn::Module& module) {
    for (const auto& item : module.named_parameters()) {
      const torch::Tensor t = item.value().detach().contiguous().to(torch::kCPU);
      bytes += item.key();
      bytes.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
    }
    for (const auto& item : module.named_buffers()) {
      const torch::Tensor t = item.value().contiguous().to(torch::kCPU);
      bytes += item.key();
      bytes.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
    }
  };
  add(*m.net);
  add(*m.head);
  add(*m.centers);
  return Sha256Hex(bytes);
}

// The options a resumed run must share with the run that wrote the checkpoint: they define
// the network's shapes, the loss and the schedule.
nlohmann::json ResumeConfig(const FitOptions& o) {
  return {{"preset", o.preset},
          {"embedding_dim", o.embedding_dim},
          {"image_size", o.image_size},
          {"loss", o.loss},
          {"center_weight", o.center_weight},
          {"center_lr", o.center_lr},
          {"smoothing", o.smoothing},
          {"margin", o.margin},
          {"triplet_k", o.triplet_k},
          {"batch", o.batch},
          {"lr", o.lr},
          {"weight_decay", o.weight_decay},
          {"warmup_epochs", o.warmup_epochs},
          {"augment", o.augment}};
}

Status SaveCheckpoint(Model& m, const Progress& p, const Split& split, const FitOptions& o,
                      const std::string& path) {
  try {
    torch::serialize::OutputArchive archive, optimizer;
    WriteModules(m, archive);
    m.optimizer->save(optimizer);
    archive.write("optimizer", optimizer);
    archive.write("epoch", torch::tensor(std::int64_t(p.epoch)));
    archive.write("step_in_epoch", torch::tensor(p.step_in_epoch));
    archive.write("global_step", torch::tensor(p.global_step));
    archive.write("best_val_auc", torch::tensor(p.best_val_auc, torch::kFloat64));
    archive.write("epoch_sums",
                  torch::tensor(std::vector<double>(p.epoch_sums.begin(), p.epoch_sums.end()),
                                torch::kFloat64));
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      archive.write("rng", gen.get_state());
    }
    archive.write("split", c10::IValue(split.ToJson().dump()));
    archive.write("config", c10::IValue(ResumeConfig(o).dump()));
    archive.write("weights_sha256", c10::IValue(WeightsDigest(m)));
    const std::string tmp = path + ".tmp";
    archive.save_to(tmp);
    fs::rename(tmp, path);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError("cannot write checkpoint " + path + ": " + e.what());
  }
}

Status LoadCheckpoint(Model& m, Progress* p, const Split& split, const FitOptions& o,
                      const std::string& path) {
  if (!fs::exists(path)) return absl::NotFoundError("checkpoint " + path + " does not exist");
  std::string stage = "open";
  try {
    torch::serialize::InputArchive archive, net, head, centers, optimizer;
    try {
      archive.load_from(path);
    } catch (const c10::Error&) {
      return absl::InvalidArgumentError(path + " is not a faceid-train checkpoint (the run's " +
                                        "checkpoint is OUT/run/last.ckpt)");
    }
    c10::IValue saved_split, saved_config;
    if (!archive.try_read("split", saved_split) || !saved_split.isString()) {
      return absl::InvalidArgumentError(path + " is not a faceid-train checkpoint (the run's " +
                                        "checkpoint is OUT/run/last.ckpt)");
    }
    if (archive.try_read("config", saved_config) && saved_config.isString()) {
      const nlohmann::json was = nlohmann::json::parse(saved_config.toStringRef(), nullptr, false);
      const nlohmann::json now = ResumeConfig(o);
      for (const auto& item : now.items()) {
        if (was.is_object() && was.contains(item.key()) && was[item.key()] != item.value()) {
          return absl::FailedPreconditionError(
              "checkpoint " + path + " was written with " + item.key() + " " +
              was[item.key()].dump() + ", this run asks for " + item.value().dump() +
              ": resume with the options of the run that wrote it");
        }
      }
    }
    if (saved_split.toStringRef() != split.ToJson().dump()) {
      return absl::FailedPreconditionError(
          "checkpoint " + path +
          " was made with another identity split: pass the same --data, limits, --split and "
          "--seed as the run that wrote it");
    }
    archive.read("net", net);
    archive.read("head", head);
    archive.read("centers", centers);
    archive.read("optimizer", optimizer);
    stage = "network";
    m.net->load(net);
    stage = "head";
    m.head->load(head);
    stage = "centres";
    m.centers->load(centers);
    stage = "optimizer";
    m.optimizer->load(optimizer);
    stage = "progress and RNG";
    auto read = [&](const char* key) {
      torch::Tensor t;
      archive.read(key, t);
      return t;
    };
    p->epoch = int(read("epoch").item<std::int64_t>());
    p->step_in_epoch = read("step_in_epoch").item<std::int64_t>();
    p->global_step = read("global_step").item<std::int64_t>();
    p->best_val_auc = read("best_val_auc").item<double>();
    torch::Tensor sums;
    if (archive.try_read("epoch_sums", sums) &&
        sums.numel() == std::int64_t(p->epoch_sums.size())) {
      const torch::Tensor values = sums.to(torch::kFloat64).contiguous();
      std::copy_n(values.data_ptr<double>(), p->epoch_sums.size(), p->epoch_sums.begin());
    }
    const torch::Tensor rng = read("rng");
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng);
    return absl::OkStatus();
  } catch (const c10::Error& e) {
    return absl::FailedPreconditionError("checkpoint " + path +
                                         " does not match this network/data (different "
                                         "--embedding-dim, --preset or people?) at " +
                                         stage + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError("cannot read checkpoint " + path + ": " + e.what());
  }
}

StatusOr<torch::Device> PickDevice(const std::string& name) {
  const bool cuda = torch::cuda::is_available();
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name == "cuda") {
    if (!cuda) {
      return absl::FailedPreconditionError(
          "--device cuda but CUDA is not available in this LibTorch build or machine");
    }
    return torch::Device(torch::kCUDA);
  }
  if (name == "auto") return cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  return absl::InvalidArgumentError("--device must be auto, cpu or cuda, got '" + name + "'");
}

// Upper bounds that keep a typo from asking for terabytes.
constexpr int kMaxBatch = 4096;
constexpr int kMaxEmbeddingDim = 4096;
constexpr int kMaxImageSize = 512;
constexpr int kMaxThreads = 256;

Status CheckOptions(const FitOptions& o) {
  if (o.data.empty()) return absl::InvalidArgumentError("give at least one --data DIR");
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out DIR is required");
  const auto in_range = [](double v, double lo, double hi) { return v >= lo && v <= hi; };
  const auto refuse = [](const std::string& flag, const std::string& range) {
    return absl::InvalidArgumentError(flag + " must be " + range);
  };
  if (o.epochs < 1) return refuse("--epochs", ">= 1");
  if (!in_range(o.batch, 2, kMaxBatch)) {
    return refuse("--batch", "in [2, " + std::to_string(kMaxBatch) + "]");
  }
  if (!(std::isfinite(o.lr) && o.lr > 0)) return refuse("--lr", "a finite number > 0");
  if (!(std::isfinite(o.weight_decay) && o.weight_decay >= 0)) {
    return refuse("--weight-decay", "a finite number >= 0");
  }
  if (o.warmup_epochs < 0) return refuse("--warmup-epochs", ">= 0");
  if (!in_range(o.embedding_dim, 2, kMaxEmbeddingDim)) {
    return refuse("--embedding-dim", "in [2, " + std::to_string(kMaxEmbeddingDim) + "]");
  }
  if (!in_range(o.image_size, 16, kMaxImageSize)) {
    return refuse("--image-size", "in [16, " + std::to_string(kMaxImageSize) + "] pixels");
  }
  if (!(std::isfinite(o.center_weight) && o.center_weight >= 0)) {
    return refuse("--center-weight", "a finite number >= 0");
  }
  if (!(std::isfinite(o.center_lr) && o.center_lr >= 0)) {
    return refuse("--center-lr", "a finite number >= 0");
  }
  if (!in_range(o.margin, 0, 2)) return refuse("--margin", "in [0, 2] (a cosine margin)");
  if (o.loss == "triplet" && o.triplet_k < 2) {
    return refuse("--triplet-k", ">= 2 (a triplet needs two images of a person)");
  }
  if (!in_range(o.threads, 0, kMaxThreads)) {
    return refuse("--threads", "in [0, " + std::to_string(kMaxThreads) + "] (0 = all cores)");
  }
  if (!in_range(o.loader_threads, 1, kMaxThreads)) {
    return refuse("--loader-threads", "in [1, " + std::to_string(kMaxThreads) + "]");
  }
  if (!in_range(o.align_threads, 1, kMaxThreads)) {
    return refuse("--align-threads", "in [1, " + std::to_string(kMaxThreads) + "]");
  }
  if (o.min_images < 1) return refuse("--min-images", ">= 1");
  if (o.max_people < 0) return refuse("--max-people", ">= 0 (0 = all)");
  if (o.max_images_per_person < 0) return refuse("--max-images-per-person", ">= 0 (0 = all)");
  if (o.max_steps < 0) return refuse("--max-steps", ">= 0 (0 = no limit)");
  if (!(std::isfinite(o.time_budget_s) && o.time_budget_s >= 0)) {
    return refuse("--time-budget-s", ">= 0 (0 = no limit)");
  }
  if (o.split.size() == 3) {
    double sum = 0;
    for (double f : o.split) sum += f;
    if (std::isfinite(sum) && std::abs(sum - 1.0) > 1e-3 && sum > 0) {
      return refuse("--split", "three fractions that sum to 1, like 0.7,0.15,0.15 (these sum to " +
                                   std::to_string(sum) + ")");
    }
  }
  if (o.loss != "softmax" && o.loss != "smooth" && o.loss != "center" && o.loss != "triplet") {
    return absl::InvalidArgumentError("--loss must be softmax, smooth, center or triplet, got '" +
                                      o.loss + "'");
  }
  if (!(o.smoothing >= 0 && o.smoothing < 1)) {
    return absl::InvalidArgumentError("--smoothing must be in [0, 1)");
  }
  if (o.preset != "cpu-small" && o.preset != "gpu-large") {
    return absl::InvalidArgumentError("--preset must be cpu-small or gpu-large");
  }
  return absl::OkStatus();
}

// Training data of one run.
struct RunData {
  Split split;
  AlignedSet train, val, test;
  std::int64_t skipped = 0;
};

StatusOr<AlignedSet> AlignPart(const FacePipeline& pipeline,
                               const std::vector<DatasetListing>& listings, const Split& split,
                               int part, const FitOptions& o, const std::string& cache_dir) {
  std::vector<std::pair<DatasetSpec, PersonImages>> people;
  for (std::size_t d = 0; d < listings.size(); ++d) {
    const DatasetSplit& ds = split.datasets[d];
    const auto& names = part == 0 ? ds.train : part == 1 ? ds.val : ds.test;
    for (auto& person : SelectPeople(listings[d], names)) {
      people.emplace_back(listings[d].spec, std::move(person));
    }
  }
  AlignOptions align;
  align.cache_dir = cache_dir;
  align.threads = o.align_threads;
  align.min_images = 2;
  align.cancelled = [] { return g_interrupted.load(); };
  const auto start = std::chrono::steady_clock::now();
  align.progress = [&](std::size_t done, std::size_t total) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate = s > 0 ? double(done) / s : 0;
    Logger("trainer")->info("aligning {} people: {}/{} images, {:.1f}/s, about {:.0f} s left",
                            part == 0   ? "training"
                            : part == 1 ? "validation"
                                        : "test",
                            done, total, rate, rate > 0 ? double(total - done) / rate : 0.0);
  };
  return AlignPeople(pipeline, people, align);
}

StatusOr<RunData> PrepareData(const FitOptions& o, const std::string& cache_dir,
                              const std::shared_ptr<spdlog::logger>& log) {
  std::vector<DatasetListing> listings;
  ListLimits limits{o.min_images, o.max_people, o.max_images_per_person};
  for (const auto& text : o.data) {
    FACEID_ASSIGN_OR_RETURN(DatasetSpec spec, ParseDatasetSpec(text));
    std::vector<DatasetSpec> specs;
    for (const auto& seen : listings) specs.push_back(seen.spec);
    specs.push_back(spec);
    FACEID_RETURN_IF_ERROR(CheckDistinctDatasets(specs));
    FACEID_ASSIGN_OR_RETURN(DatasetListing listing, ListDataset(spec, limits));
    std::size_t images = 0;
    for (const auto& p : listing.people) images += p.images.size();
    log->info("dataset {}{}: {} people, {} images; {} left out", spec.path,
              spec.crops ? " (crops)" : "", listing.people.size(), images,
              listing.skipped_people.size());
    for (const auto& line : FirstLines(listing.skipped_people)) log->warn("left out {}", line);
    listings.push_back(std::move(listing));
  }
  RunData data;
  FACEID_ASSIGN_OR_RETURN(data.split, SplitIdentities(listings, o.split, o.seed));

  PipelineOptions pipeline_options;
  FACEID_ASSIGN_OR_RETURN(auto pipeline, FacePipeline::Create(pipeline_options));
  const auto t0 = std::chrono::steady_clock::now();
  AlignedSet* parts[3] = {&data.train, &data.val, &data.test};
  const char* part_names[3] = {"train", "val", "test"};
  for (int part = 0; part < 3; ++part) {
    FACEID_ASSIGN_OR_RETURN(*parts[part],
                            AlignPart(*pipeline, listings, data.split, part, o, cache_dir));
    const AlignedSet& set = *parts[part];
    data.skipped += std::int64_t(set.skipped.size());
    log->info("{}: {} people, {} aligned images ({} from cache), {} skipped", part_names[part],
              set.names.size(), set.images.size(), set.cache_hits, set.skipped.size());
    for (const auto& s : set.skipped) log->warn("skipped {}", s);
  }
  const double align_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log->info("alignment took {:.1f} s", align_s);
  if (data.train.names.size() < 2) {
    return absl::InvalidArgumentError(
        "training needs at least two people with two or more aligned images; got " +
        std::to_string(data.train.names.size()) + " (see the skipped images above)");
  }
  return data;
}

double LearningRate(const FitOptions& o, std::int64_t step, std::int64_t total,
                    std::int64_t steps_per_epoch) {
  const std::int64_t warmup =
      std::min<std::int64_t>(total / 2, std::int64_t(o.warmup_epochs) * steps_per_epoch);
  if (step < warmup) return o.lr * double(step + 1) / double(warmup);
  const double t = double(step - warmup) / double(std::max<std::int64_t>(1, total - warmup));
  return o.lr * 0.5 * (1.0 + std::cos(M_PI * t));
}

class JsonLines {
 public:
  JsonLines(const std::string& path, bool append)
      : out_(path, append ? std::ios::app : std::ios::trunc) {}
  bool ok() const { return bool(out_); }
  void Write(const nlohmann::json& j) { out_ << j.dump() << '\n' << std::flush; }

 private:
  std::ofstream out_;
};

// Final figures and plot data of the kept model.
nlohmann::json PlotData(const LabeledVectors& test, const torch::Tensor& val_embeddings,
                        const AlignedSet& val) {
  nlohmann::json j;
  const PairScores pairs = BalancedPairs(test);
  nlohmann::json roc = nlohmann::json::array();
  for (const auto& [far, tar] : RocCurve(pairs.genuine, pairs.impostor)) roc.push_back({far, tar});
  j["roc"] = roc;
  const int bins = 50;
  std::vector<int> hg(bins, 0), hi(bins, 0);
  auto bin = [&](float s) { return std::clamp(int((s + 1.f) / 2.f * bins), 0, bins - 1); };
  for (float s : pairs.genuine) ++hg[bin(s)];
  for (float s : pairs.impostor) ++hi[bin(s)];
  j["hist_genuine"] = hg;
  j["hist_impostor"] = hi;

  // 2-D PCA of the unit embeddings of up to 10 validation people.
  nlohmann::json points = nlohmann::json::array();
  std::vector<std::string> names;
  if (val_embeddings.numel() > 0) {
    std::vector<std::int64_t> rows;
    for (std::size_t i = 0; i < val.images.size(); ++i) {
      if (val.images[i].label < 10) rows.push_back(std::int64_t(i));
    }
    torch::Tensor x = val_embeddings.index_select(0, torch::tensor(rows, torch::kInt64));
    x = torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
    x = x - x.mean(0, true);
    if (x.size(0) >= 2) {
      const auto svd = torch::linalg_svd(x, false);
      const torch::Tensor xy = x.matmul(std::get<2>(svd).slice(0, 0, 2).t()).contiguous();
      for (std::size_t r = 0; r < rows.size(); ++r) {
        points.push_back({xy[std::int64_t(r)][0].item<double>(),
                          xy[std::int64_t(r)][1].item<double>(),
                          val.images[std::size_t(rows[r])].label});
      }
    }
    for (std::size_t l = 0; l < val.names.size() && l < 10; ++l) names.push_back(val.names[l]);
  }
  j["projection"] = {{"names", names}, {"points", points}};
  return j;
}

StatusOr<FitResult> Train(const FitOptions& o, RunData& data, const std::string& run_dir,
                          const torch::Device& device, const std::shared_ptr<spdlog::logger>& log) {
  FitResult result;
  const std::int64_t num_classes = std::int64_t(data.train.names.size());
  result.train_images = std::int64_t(data.train.images.size());
  result.train_identities = num_classes;
  result.skipped_images = data.skipped;

  torch::manual_seed(o.seed);
  NetworkOptions net_options =
      o.preset == "gpu-large" ? NetworkOptions::GpuLarge() : NetworkOptions::CpuSmall();
  net_options.input_size = o.image_size;
  net_options.embedding_dim = o.embedding_dim;
  Model m;
  m.net = EmbeddingNet(net_options);
  m.head = torch::nn::Linear(o.embedding_dim, num_classes);
  m.centers = CenterLoss(num_classes, o.embedding_dim);
  m.net->to(device);
  m.head->to(device);
  m.centers->to(device);
  std::vector<torch::Tensor> decayed = m.net->parameters();
  for (auto& p : m.head->parameters()) decayed.push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      decayed, std::make_unique<torch::optim::SGDOptions>(
                   torch::optim::SGDOptions(o.lr).momentum(0.9).weight_decay(o.weight_decay)));
  groups.emplace_back(m.centers->parameters(),
                      std::make_unique<torch::optim::SGDOptions>(o.center_lr));
  m.optimizer = std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(o.lr));

  Progress p;
  if (!o.resume.empty()) {
    FACEID_RETURN_IF_ERROR(LoadCheckpoint(m, &p, data.split, o, o.resume));
    log->info("resumed from {} at epoch {}, step {} (global step {})", o.resume, p.epoch + 1,
              p.step_in_epoch, p.global_step);
  }

  const std::int64_t steps_per_epoch =
      std::max<std::int64_t>(1, std::int64_t(data.train.images.size()) / o.batch);
  // With a time budget the schedule is re-planned after the first epoch to the epochs that fit,
  // so the learning rate still completes its cosine decay instead of being cut off mid-way.
  int planned_epochs = o.epochs;
  std::int64_t total_steps = steps_per_epoch * planned_epochs;
  const bool use_center = o.loss == "center";
  const bool use_triplet = o.loss == "triplet";
  const double epsilon = o.loss == "smooth" && o.smoothing == 0 ? 0.1 : o.smoothing;
  log->info(
      "training {} people, {} images, {} steps/epoch x {} epochs, batch {}, loss {}{}, "
      "device {}, {} torch threads",
      num_classes, data.train.images.size(), steps_per_epoch, o.epochs, o.batch, o.loss,
      epsilon > 0 ? " + smoothing" : "", device.is_cuda() ? "cuda" : "cpu",
      torch::get_num_threads());

  JsonLines metrics(run_dir + "/metrics.jsonl", !o.resume.empty());
  if (!metrics.ok()) return absl::InternalError("cannot write " + run_dir + "/metrics.jsonl");
  const std::string ckpt_path = run_dir + "/last.ckpt";
  const std::string best_path = run_dir + "/best.pt";
  const auto start = std::chrono::steady_clock::now();
  std::int64_t images_done = 0;
  bool stop = false;
  m.net->train();

  for (; p.epoch < planned_epochs && !stop; ++p.epoch, p.step_in_epoch = 0) {
    BatchLoader loader(data.train, o, p.epoch,
                       EpochBatches(data.train, o, p.epoch, steps_per_epoch),
                       std::size_t(p.step_in_epoch), o.loader_threads, 4);
    ProgressBar bar(p.epoch + 1, planned_epochs, steps_per_epoch, o.progress_tty, stdout,
                    o.progress_every_s);
    if (p.step_in_epoch == 0) p.epoch_sums.fill(0);
    auto& [sum_ce, sum_center, sum_triplet, sum_total, sum_acc, n] = p.epoch_sums;
    while (p.step_in_epoch < steps_per_epoch) {
      FACEID_ASSIGN_OR_RETURN(Batch batch, loader.Take(std::size_t(p.step_in_epoch)));
      const torch::Tensor x = batch.images.to(device);
      const torch::Tensor y = batch.labels.to(device);
      const double lr = LearningRate(o, p.global_step, total_steps, steps_per_epoch);
      static_cast<torch::optim::SGDOptions&>(m.optimizer->param_groups()[0].options()).lr(lr);

      m.optimizer->zero_grad();
      const torch::Tensor features = m.net->forward(x);
      const torch::Tensor logits = m.head->forward(features);
      torch::Tensor ce =
          epsilon > 0 ? SmoothedCrossEntropy(logits, y, epsilon) : CrossEntropy(logits, y);
      torch::Tensor total = use_triplet ? torch::zeros({}, features.options()) : ce;
      double center_value = 0, triplet_value = 0;
      if (use_center) {
        const torch::Tensor c = m.centers->forward(features, y);
        total = total + o.center_weight * c;
        center_value = c.item<double>();
      }
      if (use_triplet) {
        const torch::Tensor t = BatchHardTripletLoss(features, y, o.margin);
        total = total + t;
        triplet_value = t.item<double>();
      }
      const double ce_value = ce.item<double>(), total_value = total.item<double>();
      if (!std::isfinite(total_value)) {
        bar.Finish("diverged");
        return absl::FailedPreconditionError(
            "training diverged at global step " + std::to_string(p.global_step + 1) +
            ": the loss is " + std::to_string(total_value) + " (ce " + std::to_string(ce_value) +
            "). Train again with a lower --lr (now " + std::to_string(o.lr) + ")" +
            (use_center ? " or --center-weight" : std::string()) +
            (fs::exists(ckpt_path) ? "; " + ckpt_path + " holds the last epoch before it"
                                   : std::string()));
      }
      total.backward();
      if (use_center) m.centers->RescaleCenterGradient(y, o.center_weight);
      m.optimizer->step();

      const double acc = Accuracy(logits.detach(), y);
      sum_ce += ce_value;
      sum_center += center_value;
      sum_triplet += triplet_value;
      sum_total += total_value;
      sum_acc += acc;
      ++n;
      ++p.step_in_epoch;
      ++p.global_step;
      images_done += x.size(0);
      metrics.Write({{"type", "step"},
                     {"epoch", p.epoch + 1},
                     {"step", p.global_step},
                     {"lr", lr},
                     {"acc", acc},
                     {"ce", ce_value},
                     {"center", center_value},
                     {"triplet", triplet_value},
                     {"total", total_value}});
      std::vector<std::pair<std::string, double>> shown = {{"acc", sum_acc / n},
                                                           {"ce", sum_ce / n}};
      if (use_center) shown.emplace_back("centre", sum_center / n);
      if (use_triplet) shown.emplace_back("triplet", sum_triplet / n);
      shown.emplace_back("total", sum_total / n);
      bar.Update(p.step_in_epoch, shown);

      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (g_interrupted.load()) {
        FACEID_RETURN_IF_ERROR(SaveCheckpoint(m, p, data.split, o, ckpt_path));
        bar.Finish("interrupted");
        log->warn("interrupted at global step {}: checkpoint written to {}", p.global_step,
                  ckpt_path);
        result.interrupted = true;
        result.steps = p.global_step;
        return result;
      }
      if ((o.max_steps > 0 && p.global_step >= o.max_steps) ||
          (o.time_budget_s > 0 && elapsed >= o.time_budget_s)) {
        stop = true;
        break;
      }
    }
    const bool epoch_done = p.step_in_epoch >= steps_per_epoch;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    nlohmann::json epoch_line = {{"type", "epoch"},
                                 {"epoch", p.epoch + 1},
                                 {"complete", epoch_done},
                                 {"acc", n ? sum_acc / n : 0},
                                 {"ce", n ? sum_ce / n : 0},
                                 {"center", n ? sum_center / n : 0},
                                 {"triplet", n ? sum_triplet / n : 0},
                                 {"total", n ? sum_total / n : 0},
                                 {"images_per_s", elapsed > 0 ? images_done / elapsed : 0},
                                 {"elapsed_s", elapsed}};
    std::string suffix;
    if (data.val.names.size() >= 2) {
      FACEID_ASSIGN_OR_RETURN(const torch::Tensor val_features,
                              EmbedCrops(m.net, data.val.images, o.image_size, device));
      const EvalResult val = Evaluate(ToLabeled(val_features, data.val));
      epoch_line["val_auc"] = val.auc;
      epoch_line["val_rank1"] = val.rank1;
      char buf[96];
      std::snprintf(buf, sizeof(buf), "val_auc %.4f val_rank1 %.4f", val.auc, val.rank1);
      suffix = buf;
      if (val.auc > p.best_val_auc) {
        p.best_val_auc = val.auc;
        torch::save(m.net, best_path);
        suffix += " (best)";
      }
    } else if (epoch_done) {
      torch::save(m.net, best_path);
    }
    metrics.Write(epoch_line);
    bar.Finish(suffix);
    Progress saved = p;
    if (epoch_done) {
      ++saved.epoch;
      saved.step_in_epoch = 0;
    }
    FACEID_RETURN_IF_ERROR(SaveCheckpoint(m, saved, data.split, o, ckpt_path));
    if (stop) p = saved;
    if (o.time_budget_s > 0 && epoch_done && p.epoch == 0 && o.resume.empty()) {
      const double epoch_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const int fit = int(o.time_budget_s / std::max(1e-3, epoch_s));
      planned_epochs = std::clamp(fit, 1, o.epochs);
      total_steps = steps_per_epoch * planned_epochs;
      if (planned_epochs < o.epochs) {
        log->info(
            "time budget {:.0f} s: {:.1f} s per epoch, so {} of {} epochs, with the "
            "learning-rate schedule fitted to them",
            o.time_budget_s, epoch_s, planned_epochs, o.epochs);
      }
    }
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.steps = p.global_step;
  result.images_per_s = elapsed > 0 ? double(images_done) / elapsed : 0;
  log->info("trained {} steps in {:.1f} s ({:.1f} images/s)", p.global_step, elapsed,
            result.images_per_s);

  // The kept model: the best validation epoch, else the last weights.
  if (fs::exists(best_path)) torch::load(m.net, best_path);
  m.net->to(device);
  {
    // Finite weights can still overflow to NaN features (a run that diverged on its last
    // step, with no validation people to notice): never write such a model.
    const std::size_t probe = std::min<std::size_t>(data.train.images.size(), 64);
    const std::vector<AlignedImage> sample(data.train.images.begin(),
                                           data.train.images.begin() + std::ptrdiff_t(probe));
    FACEID_RETURN_IF_ERROR(EmbedCrops(m.net, sample, o.image_size, device).status());
  }
  ModelInfo info;
  info.network = net_options;
  info.pipeline_version = kPipelineVersion;
  info.crop_size = PipelineOptions().crop_size;
  torch::Tensor val_embeddings;
  if (data.val.names.size() >= 2) {
    FACEID_ASSIGN_OR_RETURN(val_embeddings,
                            EmbedCrops(m.net, data.val.images, o.image_size, device));
    const LabeledVectors val = ToLabeled(val_embeddings, data.val);
    result.val = Evaluate(val);
    info.threshold = ThresholdAtFar(ImpostorScores(val), 1e-3);
  } else {
    log->warn("fewer than two validation people: threshold left at {}", info.threshold);
  }
  result.threshold = info.threshold;
  LabeledVectors test;
  if (data.test.names.size() >= 2) {
    FACEID_ASSIGN_OR_RETURN(const torch::Tensor test_features,
                            EmbedCrops(m.net, data.test.images, o.image_size, device));
    test = ToLabeled(test_features, data.test);
    result.test = Evaluate(test);
  } else {
    log->warn("fewer than two test people: no test metrics");
  }
  info.trained_at = NowIso8601();
  info.training = {{"losses", o.loss},
                   {"center_weight", use_center ? o.center_weight : 0.0},
                   {"center_lr", o.center_lr},
                   {"smoothing", epsilon},
                   {"margin", use_triplet ? o.margin : 0.0},
                   {"epochs", o.epochs},
                   {"steps", p.global_step},
                   {"batch", o.batch},
                   {"lr", o.lr},
                   {"weight_decay", o.weight_decay},
                   {"seed", o.seed},
                   {"train_identities", num_classes},
                   {"train_images", result.train_images},
                   {"skipped_images", data.skipped},
                   {"split", data.split.ToJson()}};
  const nlohmann::json val_json = result.val.ToJson(), test_json = result.test.ToJson();
  // A part with fewer than two people has no figures: none are recorded rather than zeros.
  if (result.val.identities > 0) {
    for (const auto& item : val_json.items()) info.metrics["val_" + item.key()] = item.value();
  }
  if (result.test.identities > 0) {
    for (const auto& item : test_json.items()) info.metrics["test_" + item.key()] = item.value();
  }
  m.net->to(torch::kCPU);
  m.net->eval();
  result.model_path = o.out_dir + "/model.faceid";
  FACEID_RETURN_IF_ERROR(SaveModel(result.model_path, info, m.net));

  nlohmann::json eval = PlotData(test, val_embeddings, data.val);
  eval["test"] = result.test.ToJson();
  eval["val"] = result.val.ToJson();
  eval["threshold"] = info.threshold;
  std::ofstream(run_dir + "/eval.json") << eval.dump(1) << '\n';
  return result;
}

}  // namespace

StatusOr<FitResult> RunFit(const FitOptions& o) {
  FACEID_RETURN_IF_ERROR(CheckOptions(o));
  auto log = Logger("trainer");
  FACEID_ASSIGN_OR_RETURN(torch::Device device, PickDevice(o.device));
  const int threads =
      o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);

  const std::string run_dir = o.out_dir + "/run";
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec) return absl::InternalError("cannot create run folder " + run_dir + ": " + ec.message());
  const std::string cache_dir = o.cache_dir.empty() ? o.out_dir + "/cache" : o.cache_dir;

  if (o.resume.empty() && fs::exists(o.out_dir + "/model.faceid")) {
    log->warn("{} already holds a model.faceid: this run replaces it (and its run/ files)",
              o.out_dir);
  }
  SigintScope sigint;  // Ctrl-C: stop alignment, or checkpoint and stop training
  FACEID_ASSIGN_OR_RETURN(RunData data, PrepareData(o, cache_dir, log));
  if (o.batch > std::int64_t(data.train.images.size())) {
    return absl::InvalidArgumentError(
        "--batch " + std::to_string(o.batch) + " is larger than the " +
        std::to_string(data.train.images.size()) + " training images: use a smaller --batch");
  }
  {
    std::ofstream split_out(run_dir + "/split.json");
    split_out << data.split.ToJson().dump(1) << '\n';
    if (!split_out) return absl::InternalError("cannot write " + run_dir + "/split.json");
  }
  try {
    return Train(o, data, run_dir, device, log);
  } catch (const c10::Error& e) {
    return absl::InternalError(std::string("LibTorch failed during training: ") +
                               e.what_without_backtrace());
  }
}

StatusOr<std::string> CheckpointWeightsDigest(const std::string& path) {
  if (!fs::exists(path)) return absl::NotFoundError("checkpoint " + path + " does not exist");
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    c10::IValue digest;
    if (!archive.try_read("weights_sha256", digest)) {
      return absl::InvalidArgumentError(path + " is not a faceid-train checkpoint");
    }
    return digest.toStringRef();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError("cannot read checkpoint " + path + ": " + e.what());
  }
}

}  // namespace faceid
