#include "core/nn/model_file.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "core/face_pipeline.h"
#include "core/nn/torch_embedder.h"
#include "nn_test_util.h"

namespace faceid {
namespace {

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

torch::Tensor Forward(EmbeddingNet& net, const torch::Tensor& input) {
  torch::InferenceMode guard;
  net->eval();
  return net->forward(input);
}

// A CpuSmall net with non-default BatchNorm statistics, so a round trip that dropped buffers
// would show.
EmbeddingNet TrainedLookingNet() {
  torch::manual_seed(7);
  EmbeddingNet net(NetworkOptions::CpuSmall());
  net->train();
  torch::NoGradGuard no_grad;
  net->forward(torch::rand({4, 3, 64, 64}) * 2 - 1);
  return net;
}

class ModelFileTest : public ::testing::Test {
 protected:
  TempDir dir_{"model_file_test"};
};

TEST_F(ModelFileTest, SaveLoadRoundTripGivesIdenticalOutputs) {
  EmbeddingNet net = TrainedLookingNet();
  ModelInfo info;
  info.pipeline_version = kPipelineVersion;
  info.threshold = 0.37f;
  info.metrics["val_auc"] = 0.9;
  const std::string path = dir_.File("m.faceid");
  ASSERT_TRUE(SaveModel(path, info, net).ok());

  StatusOr<LoadedModel> loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->net->is_training());
  EXPECT_EQ(loaded->info.threshold, 0.37f);
  EXPECT_EQ(loaded->info.metrics.at("val_auc"), 0.9);
  EXPECT_EQ(loaded->info.pipeline_version, kPipelineVersion);
  EXPECT_EQ(loaded->info.version.size(), 16u);

  torch::manual_seed(8);
  const torch::Tensor input = torch::rand({5, 3, 64, 64}) * 2 - 1;
  EXPECT_TRUE(torch::equal(Forward(net, input), Forward(loaded->net, input)));
}

// Regression: nlohmann's dump threw on invalid UTF-8, and a NaN metric (written as null) made
// the saved file unreadable.
TEST_F(ModelFileTest, OddMetadataSavesAndReadsBack) {
  ModelInfo info;
  info.training = {{"data_dir", "/data/caf\xe9"}};
  info.metrics["val_auc"] = std::nan("");
  info.metrics["test_rank1"] = 0.25;
  const std::string path = dir_.File("odd.faceid");
  const Status saved = SaveModel(path, info, MakeTinyRandomModel().net);
  ASSERT_TRUE(saved.ok()) << saved;
  const StatusOr<LoadedModel> loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(std::isnan(loaded->info.metrics.at("val_auc")));
  EXPECT_EQ(loaded->info.metrics.at("test_rank1"), 0.25);
  EXPECT_EQ(loaded->info.training["data_dir"], "/data/caf\xef\xbf\xbd");

  info.threshold = std::nanf("");
  EXPECT_EQ(SaveModel(path, info, MakeTinyRandomModel().net).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ModelFileTest, VersionIsTheWeightsHashAndNetworkComesFromTheNet) {
  const std::string a = dir_.File("a.faceid");
  const std::string b = dir_.File("b.faceid");
  ModelInfo info;
  info.network.embedding_dim = 999;  // wrong on purpose: the net's options win
  ASSERT_TRUE(SaveModel(a, info, MakeTinyRandomModel(1).net).ok());
  ASSERT_TRUE(SaveModel(b, info, MakeTinyRandomModel(2).net).ok());
  const StatusOr<ModelInfo> info_a = ReadModelInfo(a);
  const StatusOr<ModelInfo> info_b = ReadModelInfo(b);
  ASSERT_TRUE(info_a.ok() && info_b.ok());
  EXPECT_EQ(info_a->network.embedding_dim, 128);
  EXPECT_NE(info_a->version, info_b->version);
  EXPECT_EQ(info_a->version, MakeTinyRandomModel(1).info.version);
}

TEST_F(ModelFileTest, SaveReplacesAtomicallyAndLeavesNoTempFile) {
  const std::string path = dir_.File("m.faceid");
  WriteBytes(path, "old contents");
  ASSERT_TRUE(SaveModel(path, ModelInfo(), MakeTinyRandomModel(3).net).ok());
  EXPECT_TRUE(LoadModel(path).ok());
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "m.faceid");
  }
  EXPECT_EQ(files, 1);
}

TEST_F(ModelFileTest, ReadersNeverSeeAHalfWrittenFile) {
  const std::string path = dir_.File("m.faceid");
  ASSERT_TRUE(SaveModel(path, ModelInfo(), MakeTinyRandomModel(1).net).ok());
  const EmbeddingNet nets[2] = {MakeTinyRandomModel(1).net, MakeTinyRandomModel(2).net};
  std::atomic<bool> done{false};
  int failed_reads = 0;
  int reads = 0;
  std::thread reader([&] {
    while (!done) {
      ++reads;
      if (!ReadModelInfo(path).ok()) ++failed_reads;
    }
  });
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(SaveModel(path, ModelInfo(), nets[i % 2]).ok());
  done = true;
  reader.join();
  EXPECT_GT(reads, 0);
  EXPECT_EQ(failed_reads, 0);
}

TEST_F(ModelFileTest, SaveIntoMissingDirectoryIsNotFound) {
  const Status status =
      SaveModel(dir_.File("no/such/dir/m.faceid"), ModelInfo(), MakeTinyRandomModel().net);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
}

TEST_F(ModelFileTest, LoadErrorsHaveTheDocumentedCodes) {
  const std::string good_path = dir_.File("good.faceid");
  ASSERT_TRUE(SaveModel(good_path, ModelInfo(), MakeTinyRandomModel().net).ok());
  const std::string good = ReadBytes(good_path);

  EXPECT_EQ(LoadModel(dir_.File("missing.faceid")).status().code(), absl::StatusCode::kNotFound);

  std::string corrupt = good;
  corrupt[corrupt.size() / 2] ^= 0x40;
  WriteBytes(dir_.File("corrupt"), corrupt);
  EXPECT_EQ(LoadModel(dir_.File("corrupt")).status().code(), absl::StatusCode::kInvalidArgument);

  for (const std::size_t keep :
       {std::size_t{0}, std::size_t{5}, std::size_t{100}, good.size() / 2, good.size() - 1}) {
    WriteBytes(dir_.File("truncated"), good.substr(0, keep));
    EXPECT_EQ(LoadModel(dir_.File("truncated")).status().code(), absl::StatusCode::kInvalidArgument)
        << "kept " << keep << " bytes";
  }

  std::string future = good;
  future[8] = static_cast<char>(kModelFormatVersion + 1);
  WriteBytes(dir_.File("future"), future);
  const Status future_status = LoadModel(dir_.File("future")).status();
  EXPECT_EQ(future_status.code(), absl::StatusCode::kFailedPrecondition) << future_status;
  EXPECT_EQ(ReadModelInfo(dir_.File("future")).status().code(),
            absl::StatusCode::kFailedPrecondition);

  WriteBytes(dir_.File("torch.pt"), "PK\x03\x04 looks like a torch archive");
  EXPECT_EQ(LoadModel(dir_.File("torch.pt")).status().code(), absl::StatusCode::kInvalidArgument);
}

// Regression: torch::load silently replaces tensors of another shape, so a file whose metadata
// declares a different embedding_dim than its weights loaded as OK.
TEST_F(ModelFileTest, WeightsThatDoNotMatchTheMetadataAreRefused) {
  // Well-formed files (valid checksum) whose metadata declares another architecture.
  const StatusOr<ModelFileContents> contents = [&] {
    const std::string path = dir_.File("good.faceid");
    EXPECT_TRUE(SaveModel(path, ModelInfo(), MakeTinyRandomModel().net).ok());
    return ReadModelFileContents(path, true);
  }();
  ASSERT_TRUE(contents.ok()) << contents.status();
  ModelInfo other;
  other.network.embedding_dim = 64;
  WriteBytes(dir_.File("mismatch"), EncodeModelFile(other.ToJson().dump(), contents->weights));
  const Status mismatch = LoadModel(dir_.File("mismatch")).status();
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kInvalidArgument) << mismatch;
  EXPECT_NE(mismatch.message().find("embedding"), std::string::npos) << mismatch;

  ModelInfo deeper;
  deeper.network.stage_widths = {32, 64, 128, 256, 512};
  deeper.network.blocks_per_stage = {1, 1, 1, 1, 1};
  WriteBytes(dir_.File("deeper"), EncodeModelFile(deeper.ToJson().dump(), contents->weights));
  EXPECT_EQ(LoadModel(dir_.File("deeper")).status().code(), absl::StatusCode::kInvalidArgument);

  WriteBytes(dir_.File("garbage"), EncodeModelFile(ModelInfo().ToJson().dump(), "not a zip"));
  EXPECT_EQ(LoadModel(dir_.File("garbage")).status().code(), absl::StatusCode::kInvalidArgument);
}

// Regression: a model whose training diverged (NaN weights) was saved, loaded and served,
// filling the gallery with NaN embeddings. Now it is refused on save, on load, and an
// embedder built from such a net fails instead of returning NaN vectors.
TEST_F(ModelFileTest, NonFiniteWeightsAreRefused) {
  LoadedModel tiny = MakeTinyRandomModel();
  EmbeddingNet net = tiny.net;
  {
    torch::NoGradGuard no_grad;
    net->parameters()[0].view(-1)[3] = std::nanf("");
  }
  const Status save = SaveModel(dir_.File("nan.faceid"), tiny.info, net);
  EXPECT_EQ(save.code(), absl::StatusCode::kInvalidArgument) << save;
  EXPECT_NE(save.message().find("NaN"), std::string::npos) << save;
  EXPECT_FALSE(std::filesystem::exists(dir_.File("nan.faceid")));

  std::ostringstream weights;
  torch::save(net, weights);
  WriteBytes(dir_.File("nan.faceid"), EncodeModelFile(tiny.info.ToJson().dump(), weights.str()));
  const Status load = LoadModel(dir_.File("nan.faceid")).status();
  EXPECT_EQ(load.code(), absl::StatusCode::kInvalidArgument) << load;
  EXPECT_NE(load.message().find("NaN or infinite"), std::string::npos) << load;

  auto embedder = MakeTorchEmbedder(tiny.info, net, "cpu");
  ASSERT_TRUE(embedder.ok()) << embedder.status();
  const cv::Mat crop(112, 112, CV_8UC3, cv::Scalar(90, 120, 150));
  const auto vectors = (*embedder)->Embed({crop});
  EXPECT_EQ(vectors.status().code(), absl::StatusCode::kFailedPrecondition) << vectors.status();
}

TEST(TinyRandomModelTest, SameSeedSameWeightsAndGlobalRngUntouched) {
  torch::manual_seed(42);
  const torch::Tensor expected = torch::rand({4});
  torch::manual_seed(42);
  const LoadedModel a = MakeTinyRandomModel(5);
  const torch::Tensor after = torch::rand({4});
  EXPECT_TRUE(torch::equal(expected, after)) << "MakeTinyRandomModel moved the global RNG";

  const LoadedModel b = MakeTinyRandomModel(5);
  const LoadedModel c = MakeTinyRandomModel(6);
  EXPECT_EQ(a.info.version, b.info.version);
  EXPECT_NE(a.info.version, c.info.version);
  EXPECT_EQ(a.info.pipeline_version, kPipelineVersion);
  EXPECT_EQ(a.info.threshold, 0.5f);
  EXPECT_FALSE(a.net->is_training());
}

TEST(TinyRandomModelTest, ConcurrentCallsGiveTheSameModel) {
  std::string versions[3];
  std::vector<std::thread> threads;
  for (std::string& version : versions) {
    threads.emplace_back([&version] { version = MakeTinyRandomModel(9).info.version; });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(versions[0], versions[1]);
  EXPECT_EQ(versions[0], versions[2]);
}

}  // namespace
}  // namespace faceid
