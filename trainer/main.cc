// faceid-train: fit an embedding model, evaluate a model file, draw a run's report.
// Exit codes: 0 success, 1 error (message on stderr), 2 bad command line, 130 interrupted.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <thread>

#include "core/face_pipeline.h"
#include "core/log.h"
#include "core/nn/embedder_factory.h"
#include "trainer/dataset.h"
#include "trainer/evaluate.h"
#include "trainer/progress.h"
#include "trainer/report.h"
#include "trainer/trainer.h"

namespace {

using faceid::Status;

int Fail(const Status& status) {
  std::cerr << "faceid-train: " << status.message() << "\n";
  return 1;
}

struct EvalOptions {
  std::string model;
  std::vector<std::string> data;
  std::string cache_dir;
  std::string device = "auto";
  bool json = false;
  int min_images = 2;
  int max_people = 0;
  int max_images_per_person = 0;
  int threads = 2;
};

int RunEval(const EvalOptions& o) {
  auto embedder = faceid::LoadEmbedder(o.model, o.device);
  if (!embedder.ok()) return Fail(embedder.status());
  auto pipeline = faceid::FacePipeline::Create(faceid::PipelineOptions());
  if (!pipeline.ok()) return Fail(pipeline.status());
  std::vector<std::pair<faceid::DatasetSpec, faceid::PersonImages>> people;
  std::vector<faceid::DatasetSpec> specs;
  for (const auto& text : o.data) {
    auto spec = faceid::ParseDatasetSpec(text);
    if (!spec.ok()) return Fail(spec.status());
    specs.push_back(*spec);
    if (Status distinct = faceid::CheckDistinctDatasets(specs); !distinct.ok()) {
      return Fail(distinct);
    }
    auto listing =
        faceid::ListDataset(*spec, {o.min_images, o.max_people, o.max_images_per_person});
    if (!listing.ok()) return Fail(listing.status());
    for (const auto& line : faceid::FirstLines(listing->skipped_people)) {
      faceid::Logger("trainer")->warn("left out {}", line);
    }
    for (auto& person : listing->people) people.emplace_back(*spec, std::move(person));
  }
  faceid::AlignOptions align;
  align.cache_dir = o.cache_dir;
  align.threads = o.threads;
  align.min_images = 2;
  auto set = faceid::AlignPeople(**pipeline, people, align);
  if (!set.ok()) return Fail(set.status());
  for (const auto& s : set->skipped) faceid::Logger("trainer")->warn("skipped {}", s);
  auto result = faceid::EvaluateEmbedder(**embedder, *set);
  if (!result.ok()) return Fail(result.status());
  if (o.json) {
    std::cout << result->ToJson().dump() << "\n";
  } else {
    std::printf("identities %lld, images %lld (%zu skipped), probes %lld\n",
                (long long)result->identities, (long long)result->images, set->skipped.size(),
                (long long)result->probes);
    std::printf(
        "rank-1 %.4f  AUC %.4f  accuracy %.4f  TAR@FAR1e-2 %.4f  TAR@FAR1e-3 %.4f  "
        "intra/inter %.4f  threshold@FAR1e-3 %.4f\n",
        result->rank1, result->auc, result->accuracy, result->tar_far_1e2, result->tar_far_1e3,
        result->intra_inter, result->threshold_far_1e3);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"faceid-train: train and evaluate faceid embedding models"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();

  faceid::FitOptions fit;
  std::string split_text = "0.7,0.15,0.15";
  CLI::App* fit_cmd = app.add_subcommand("fit", "train a model on person-per-folder datasets");
  fit_cmd
      ->add_option("--data", fit.data,
                   "dataset folder, one sub-folder per person; append :crops when the images "
                   "are face crops (repeatable)")
      ->required();
  fit_cmd
      ->add_option("--out", fit.out_dir,
                   "run folder: model.faceid, run/ (split.json, metrics.jsonl, checkpoints), "
                   "cache/")
      ->required();
  fit_cmd->add_option("--cache-dir", fit.cache_dir, "aligned-crop cache (default OUT/cache)");
  fit_cmd->add_option("--epochs", fit.epochs, "passes over the training images")
      ->capture_default_str();
  fit_cmd->add_option("--batch", fit.batch, "images per step")->capture_default_str();
  fit_cmd->add_option("--lr", fit.lr, "peak SGD learning rate (warm-up, then cosine decay)")
      ->capture_default_str();
  fit_cmd->add_option("--weight-decay", fit.weight_decay, "L2 on network and head, not centres")
      ->capture_default_str();
  fit_cmd->add_option("--warmup-epochs", fit.warmup_epochs, "linear learning-rate warm-up")
      ->capture_default_str();
  fit_cmd->add_option("--embedding-dim", fit.embedding_dim, "size of the served feature")
      ->capture_default_str();
  fit_cmd->add_option("--image-size", fit.image_size, "network input side in pixels")
      ->capture_default_str();
  fit_cmd->add_option("--preset", fit.preset, "network size: cpu-small or gpu-large")
      ->capture_default_str();
  fit_cmd->add_option("--loss", fit.loss, "softmax, smooth, center (+ --smoothing) or triplet")
      ->capture_default_str();
  fit_cmd->add_option("--center-weight", fit.center_weight, "lambda of the centre loss")
      ->capture_default_str();
  fit_cmd
      ->add_option("--center-lr", fit.center_lr,
                   "centre update rate alpha (Wen et al.): each step a centre moves by alpha * "
                   "sum(c - x) / (1 + n) over its n batch samples")
      ->capture_default_str();
  fit_cmd->add_option("--smoothing", fit.smoothing, "label smoothing epsilon (smooth: 0.1 if 0)")
      ->capture_default_str();
  fit_cmd->add_option("--margin", fit.margin, "triplet margin on cosine similarity")
      ->capture_default_str();
  fit_cmd->add_option("--triplet-k", fit.triplet_k, "images per person in a triplet batch")
      ->capture_default_str();
  fit_cmd->add_option("--split", split_text, "train,val,test fractions by identity")
      ->capture_default_str();
  fit_cmd->add_option("--device", fit.device, "auto, cpu or cuda")->capture_default_str();
  fit_cmd->add_option("--threads", fit.threads, "torch/OpenMP threads (0 = all cores)")
      ->capture_default_str();
  fit_cmd->add_option("--loader-threads", fit.loader_threads, "batch preparation threads")
      ->capture_default_str();
  fit_cmd->add_option("--align-threads", fit.align_threads, "alignment threads")
      ->capture_default_str();
  fit_cmd->add_option("--seed", fit.seed, "seed of split, init, order and augmentation")
      ->capture_default_str();
  fit_cmd->add_option("--resume", fit.resume, "checkpoint (OUT/run/last.ckpt) to continue from");
  fit_cmd->add_flag("!--no-augment", fit.augment, "train without augmentation");
  fit_cmd->add_option("--min-images", fit.min_images, "leave out people with fewer images")
      ->capture_default_str();
  fit_cmd->add_option("--max-people", fit.max_people, "first N people per dataset (0 = all)")
      ->capture_default_str();
  fit_cmd
      ->add_option("--max-images-per-person", fit.max_images_per_person,
                   "first N images per person (0 = all)")
      ->capture_default_str();
  fit_cmd->add_option("--max-steps", fit.max_steps, "stop after N steps in total (0 = no limit)")
      ->capture_default_str();
  fit_cmd
      ->add_option("--time-budget-s", fit.time_budget_s,
                   "stop after this many seconds of training (0 = no limit)")
      ->capture_default_str();

  EvalOptions eval;
  CLI::App* eval_cmd =
      app.add_subcommand("eval", "evaluate a model file: rank-1, AUC, accuracy, TAR@FAR");
  eval_cmd->add_option("--model", eval.model, "model file")->required();
  eval_cmd->add_option("--data", eval.data, "dataset folder[:crops] (repeatable)")->required();
  eval_cmd->add_option("--cache-dir", eval.cache_dir, "aligned-crop cache (default none)");
  eval_cmd->add_option("--device", eval.device, "auto, cpu or cuda")->capture_default_str();
  eval_cmd->add_flag("--json", eval.json, "print one JSON object");
  eval_cmd->add_option("--min-images", eval.min_images, "leave out people with fewer images")
      ->capture_default_str();
  eval_cmd->add_option("--max-people", eval.max_people, "first N people per dataset (0 = all)")
      ->capture_default_str();
  eval_cmd
      ->add_option("--max-images-per-person", eval.max_images_per_person,
                   "first N images per person (0 = all)")
      ->capture_default_str();
  eval_cmd->add_option("--threads", eval.threads, "alignment threads")->capture_default_str();

  std::string run_dir;
  CLI::App* report_cmd = app.add_subcommand("report", "draw RUN/report.png from a run folder");
  report_cmd->add_option("--run", run_dir, "run folder (OUT/run of fit)")->required();

  CLI11_PARSE(app, argc, argv);
  if (Status s = faceid::InitLogging(log_level); !s.ok()) return Fail(s);

  if (*report_cmd) {
    const std::string png = run_dir + "/report.png";
    if (Status s = faceid::WriteReport(run_dir, png); !s.ok()) return Fail(s);
    std::cout << "wrote " << png << "\n";
    return 0;
  }
  if (*eval_cmd) return RunEval(eval);

  fit.split.clear();
  std::stringstream ss(split_text);
  for (std::string part; std::getline(ss, part, ',');) {
    try {
      fit.split.push_back(std::stod(part));
    } catch (const std::exception&) {
      return Fail(absl::InvalidArgumentError("--split takes three numbers like 0.7,0.15,0.15"));
    }
  }
  fit.progress_tty = faceid::StdoutIsTerminal();
  auto result = faceid::RunFit(fit);
  if (result.status().code() == absl::StatusCode::kCancelled) {
    std::cerr << "faceid-train: " << result.status().message() << "\n";
    return 130;
  }
  if (!result.ok()) return Fail(result.status());
  if (result->interrupted) {
    std::cerr << "faceid-train: interrupted; resume with --resume " << fit.out_dir
              << "/run/last.ckpt\n";
    return 130;
  }
  std::printf("model %s  threshold %.4f  steps %lld  %.1f images/s\n", result->model_path.c_str(),
              result->threshold, (long long)result->steps, result->images_per_s);
  if (result->val.identities > 0) {
    std::printf("val:  rank-1 %.4f AUC %.4f (%lld people)\n", result->val.rank1, result->val.auc,
                (long long)result->val.identities);
  } else {
    std::printf("val:  none (fewer than two validation people; threshold left at %.4f)\n",
                result->threshold);
  }
  if (result->test.identities > 0) {
    std::printf(
        "test: rank-1 %.4f AUC %.4f accuracy %.4f TAR@1e-2 %.4f TAR@1e-3 %.4f "
        "intra/inter %.4f (%lld people)\n",
        result->test.rank1, result->test.auc, result->test.accuracy, result->test.tar_far_1e2,
        result->test.tar_far_1e3, result->test.intra_inter, (long long)result->test.identities);
  } else {
    std::printf("test: none (fewer than two test people)\n");
  }
  return 0;
}
