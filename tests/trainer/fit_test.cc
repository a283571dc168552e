// Tiny training runs on the fixture's LFW subset (crops come from the fixture's cache), and the
// command line's error messages.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "trainer/trainer.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;

std::string TempPath(const std::string& name) {
  const fs::path p =
      fs::temp_directory_path() / ("faceid_fit_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p.string();
}

// A few of the fixture's people; alignment hits the fixture's crop cache.
FitOptions TinyRun(const std::string& out) {
  FitOptions o;
  o.data = {std::string(FACEID_DATA_DIR) + "/lfw_deepfunneled"};
  o.out_dir = out;
  o.cache_dir = std::string(FACEID_FIXTURE_DIR) + "/cache";
  o.min_images = 10;
  o.max_people = 8;
  o.max_images_per_person = 10;
  o.split = {0.75, 0.25, 0};
  o.batch = 8;
  o.threads = 1;
  o.loader_threads = 1;
  o.seed = 1;
  return o;
}

std::vector<nlohmann::json> EpochLines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(out + "/run/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "epoch") lines.push_back(j);
  }
  return lines;
}

TEST(FitTest, LossFallsOnTinyRun) {
  const std::string out = TempPath("loss");
  FitOptions o = TinyRun(out);
  o.epochs = 6;
  o.loss = "softmax";
  o.augment = false;
  o.lr = 0.05;
  auto r = RunFit(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto epochs = EpochLines(out);
  ASSERT_EQ(epochs.size(), 6u);
  const double first = epochs.front()["ce"], last = epochs.back()["ce"];
  EXPECT_LT(last, 0.6 * first) << "first " << first << " last " << last;
  EXPECT_GT(epochs.back()["acc"].get<double>(), epochs.front()["acc"].get<double>());
  EXPECT_TRUE(fs::exists(out + "/model.faceid"));
  EXPECT_TRUE(fs::exists(out + "/run/split.json"));
  fs::remove_all(out);
}

// Regression: with a learning rate that blows up, the loss turned NaN and the validation's
// ROC AUC looped for ever on NaN similarities. Now the run stops with an actionable error.
TEST(FitTest, DivergingRunStopsWithAClearError) {
  const std::string out = TempPath("diverge");
  FitOptions o = TinyRun(out);
  o.epochs = 2;
  o.lr = 1e10;
  const auto started = std::chrono::steady_clock::now();
  auto r = RunFit(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("diverged"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("--lr"), std::string::npos) << r.status();
  EXPECT_FALSE(fs::exists(out + "/model.faceid"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::minutes(2));
  fs::remove_all(out);

  // Diverging on the very last step, with no validation people to notice: the weights are
  // finite but give NaN features, and that model was written (exit 0).
  FitOptions last = TinyRun(out);
  last.lr = 1e10;
  last.max_steps = 1;
  last.split = {1, 0, 0};
  const auto last_step = RunFit(last);
  EXPECT_EQ(last_step.status().code(), absl::StatusCode::kFailedPrecondition) << last_step.status();
  EXPECT_FALSE(fs::exists(out + "/model.faceid"));
  fs::remove_all(out);
}

// Regression: a --time-budget-s stop used to cut the cosine schedule mid-way, leaving the
// learning rate near its peak. Now the epochs that fit are planned after the first epoch.
TEST(FitTest, TimeBudgetFitsTheLearningRateScheduleToTheEpochsThatFit) {
  // The budget is a multiple of how long one epoch takes here and now, so the test means the
  // same on an idle machine and on a loaded one (a fixed 6 s once fitted a single epoch).
  const std::string out = TempPath("budget"), probe_out = TempPath("budget-probe");
  FitOptions probe = TinyRun(probe_out);
  probe.epochs = 1;
  probe.loss = "softmax";
  ASSERT_TRUE(RunFit(probe).ok());
  const auto probe_epochs = EpochLines(probe_out);
  ASSERT_EQ(probe_epochs.size(), 1u);
  const double one_epoch_s = probe_epochs[0]["elapsed_s"].get<double>();
  fs::remove_all(probe_out);
  FitOptions o = TinyRun(out);
  o.epochs = 1000;
  o.loss = "softmax";
  o.time_budget_s = std::max(1.0, 6 * one_epoch_s);
  auto r = RunFit(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto epochs = EpochLines(out);
  ASSERT_GE(epochs.size(), 2u);
  EXPECT_LT(epochs.size(), 1000u);
  double last_lr = -1;
  std::ifstream in(out + "/run/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "step") last_lr = j["lr"];
  }
  // The plan is made from the first epoch's time, so a slower later epoch may still hit the
  // hard stop a little early; the rate must nonetheless be well into its decay.
  EXPECT_GE(last_lr, 0);
  EXPECT_LT(last_lr, 0.35 * o.lr) << "last lr " << last_lr;
  fs::remove_all(out);
}

TEST(FitTest, ResumeAfterStopIsBitIdenticalToUninterruptedRun) {
  const std::string full = TempPath("full"), part = TempPath("part");
  FitOptions o = TinyRun(full);
  o.epochs = 2;
  o.loss = "center";
  auto uninterrupted = RunFit(o);
  ASSERT_TRUE(uninterrupted.ok()) << uninterrupted.status();

  FitOptions first = o;
  first.out_dir = part;
  first.max_steps = uninterrupted->steps / 2 + 1;  // stops inside the first or second epoch
  auto stopped = RunFit(first);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->steps, first.max_steps);
  auto mid = CheckpointWeightsDigest(part + "/run/last.ckpt");
  ASSERT_TRUE(mid.ok()) << mid.status();

  FitOptions second = o;
  second.out_dir = part;
  second.resume = part + "/run/last.ckpt";
  auto resumed = RunFit(second);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->steps, uninterrupted->steps);

  auto a = CheckpointWeightsDigest(full + "/run/last.ckpt");
  auto b = CheckpointWeightsDigest(part + "/run/last.ckpt");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *mid);

  // Regression: the resumed epoch's summary averaged only the steps after the resume.
  const auto full_epochs = EpochLines(full), part_epochs = EpochLines(part);
  ASSERT_FALSE(full_epochs.empty());
  ASSERT_FALSE(part_epochs.empty());
  for (const char* term : {"ce", "center", "total", "acc"}) {
    EXPECT_EQ(part_epochs.back()[term], full_epochs.back()[term]) << term;
  }
  fs::remove_all(full);
  fs::remove_all(part);
}

// Runs one step into `out` and returns its options with --resume set to its checkpoint.
FitOptions OneStepRunToResume(const std::string& out) {
  FitOptions o = TinyRun(out);
  o.epochs = 1;
  o.max_steps = 1;
  const auto first = RunFit(o);
  EXPECT_TRUE(first.ok()) << first.status();
  o.resume = out + "/run/last.ckpt";
  return o;
}

TEST(FitTest, ResumeWithAnotherSplitIsRefused) {
  const std::string out = TempPath("split");
  FitOptions other = OneStepRunToResume(out);
  other.seed = 2;
  const auto r = RunFit(other);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("another identity split"), std::string::npos);
  fs::remove_all(out);
}

// Regression: resuming with another --embedding-dim trained to the end and wrote a model file
// that could not be loaded; --image-size and --loss changes were taken silently.
TEST(FitTest, ResumeWithOtherTrainingOptionsIsRefused) {
  const std::string out = TempPath("config");
  const FitOptions o = OneStepRunToResume(out);
  FitOptions other = o;
  other.embedding_dim = 64;
  auto r = RunFit(other);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("embedding_dim 128, this run asks for 64"), std::string::npos)
      << r.status();
  other = o;
  other.loss = "softmax";
  r = RunFit(other);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("loss"), std::string::npos) << r.status();

  std::ofstream(out + "/not_a_checkpoint") << "hello";
  other = o;
  other.resume = out + "/not_a_checkpoint";
  r = RunFit(other);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("is not a faceid-train checkpoint"), std::string::npos)
      << r.status();
  fs::remove_all(out);
}

// Regression: NaN, negative and absurd values were accepted (an --image-size of 100000
// aborted in the loader thread; a NaN --center-weight trained NaN).
TEST(FitTest, OutOfRangeOptionsAreRefusedByName) {
  const std::string out = TempPath("options");
  const std::vector<std::pair<std::function<void(FitOptions&)>, std::string>> cases = {
      {[](FitOptions& o) { o.image_size = 100000; }, "--image-size"},
      {[](FitOptions& o) { o.batch = 100000; }, "--batch"},
      {[](FitOptions& o) { o.lr = std::numeric_limits<double>::infinity(); }, "--lr"},
      {[](FitOptions& o) { o.weight_decay = std::nan(""); }, "--weight-decay"},
      {[](FitOptions& o) { o.center_weight = std::nan(""); }, "--center-weight"},
      {[](FitOptions& o) { o.center_lr = -1; }, "--center-lr"},
      {[](FitOptions& o) { o.margin = -0.5; }, "--margin"},
      {[](FitOptions& o) { o.warmup_epochs = -1; }, "--warmup-epochs"},
      {[](FitOptions& o) { o.max_people = -3; }, "--max-people"},
      {[](FitOptions& o) { o.loader_threads = 0; }, "--loader-threads"},
      {[](FitOptions& o) { o.loader_threads = 100000; }, "--loader-threads"},
      {[](FitOptions& o) { o.align_threads = 100000; }, "--align-threads"},
      {[](FitOptions& o) { o.time_budget_s = -5; }, "--time-budget-s"},
      {[](FitOptions& o) {
         o.split = {0.5, 0.5, 0.5};
       },
       "--split"},
      {[](FitOptions& o) { o.loss = "triplet", o.triplet_k = 1; }, "--triplet-k"},
  };
  for (const auto& [change, flag] : cases) {
    FitOptions o = TinyRun(out);
    change(o);
    const auto r = RunFit(o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << flag << ": " << r.status();
    EXPECT_EQ(r.status().message().rfind(flag, 0), 0u) << r.status();
  }
  FitOptions twice = TinyRun(out);
  twice.data.push_back(twice.data.front() + "/");
  const auto twice_result = RunFit(twice);
  EXPECT_EQ(twice_result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(twice_result.status().message().find("is given twice"), std::string::npos)
      << twice_result.status();
  FitOptions big_batch = TinyRun(out);
  big_batch.batch = 500;  // more than the tiny run's images
  const auto r = RunFit(big_batch);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("larger than the"), std::string::npos) << r.status();
  fs::remove_all(out);
}

struct CliRun {
  int exit_code;
  std::string output;  // stdout and stderr
};

CliRun Train(const std::string& args) {
  const std::string cmd = std::string(FACEID_BIN_DIR) + "/faceid-train " + args + " 2>&1";
  CliRun run{-1, ""};
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return run;
  std::array<char, 4096> buf;
  while (std::fgets(buf.data(), buf.size(), pipe)) run.output += buf.data();
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

TEST(FitCliTest, MissingDataFolderIsNamed) {
  const CliRun r = Train("fit --data /nonexistent/faces --out " + TempPath("cli1"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/nonexistent/faces does not exist"), std::string::npos) << r.output;
}

TEST(FitCliTest, EmptyDatasetIsExplained) {
  const std::string data = TempPath("empty");
  fs::create_directories(data + "/someone");
  const CliRun r = Train("fit --data " + data + " --out " + TempPath("cli2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("is empty"), std::string::npos) << r.output;
  fs::remove_all(data);
}

TEST(FitCliTest, UnreadableImagesAreSkippedAndListed) {
  const std::string data = TempPath("bad");
  for (int p = 0; p < 3; ++p) {
    fs::create_directories(data + "/p" + std::to_string(p));
    for (int i = 0; i < 3; ++i) {
      cv::Mat img(112, 112, CV_8UC3);
      cv::randu(img, p * 10 + i, 255);
      cv::imwrite(data + "/p" + std::to_string(p) + "/" + std::to_string(i) + ".png", img);
    }
  }
  std::ofstream(data + "/p1/broken.jpg") << "definitely not a jpeg";
  const std::string out = TempPath("cli3");
  const CliRun r = Train("fit --data " + data + ":crops --out " + out +
                         " --epochs 1 --batch 4 --threads 1 --split 1,0,0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("skipped " + data + "/p1/broken.jpg"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 skipped"), std::string::npos) << r.output;
  fs::remove_all(data);
  fs::remove_all(out);
}

TEST(FitCliTest, BadOptionValuesAreRefused) {
  const std::string data = std::string(FACEID_DATA_DIR) + "/att_orl:crops";
  CliRun r = Train("fit --data " + data + " --out " + TempPath("cli4") + " --loss arcface");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--loss must be softmax, smooth, center or triplet"), std::string::npos)
      << r.output;
  r = Train("fit --data " + data + " --out " + TempPath("cli5") + " --split a,b,c");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--split takes three numbers"), std::string::npos) << r.output;
  r = Train("eval --model /nonexistent/model.faceid --data " + data);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/nonexistent/model.faceid"), std::string::npos) << r.output;
  r = Train("report --run /nonexistent/run");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("metrics.jsonl"), std::string::npos) << r.output;
}

// SIGINT (Ctrl-C) and SIGTERM (a scheduler stopping the job) both checkpoint and exit 130.
TEST(FitCliTest, SigintAndSigtermWriteCheckpointBeforeExit) {
  for (const int signal_number : {SIGINT, SIGTERM}) {
    SCOPED_TRACE(signal_number);
    const std::string out = TempPath("sigint" + std::to_string(signal_number));
    const std::string bin = std::string(FACEID_BIN_DIR) + "/faceid-train";
    const std::string data = std::string(FACEID_DATA_DIR) + "/att_orl:crops";
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::execl(bin.c_str(), bin.c_str(), "--log-level", "warn", "fit", "--data", data.c_str(),
              "--out", out.c_str(), "--epochs", "1000", "--batch", "8", "--threads", "1", "--split",
              "1,0,0", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Wait for the first training step, then interrupt.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool stepped = false;
    while (!stepped && std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(out + "/run/metrics.jsonl");
      std::string line;
      stepped = bool(std::getline(in, line));
      if (!stepped) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid, signal_number);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(stepped) << "no training step within 60 s";
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 130);
    EXPECT_TRUE(CheckpointWeightsDigest(out + "/run/last.ckpt").ok());
    EXPECT_FALSE(fs::exists(out + "/model.faceid"));
    fs::remove_all(out);
  }
}

}  // namespace
}  // namespace faceid
