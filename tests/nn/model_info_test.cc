#include "core/model_info.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace faceid {
namespace {

class ModelInfoFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("faceid_model_info_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  std::filesystem::path dir_;
};

ModelInfo SampleInfo() {
  ModelInfo info;
  info.name = "sample";
  info.version = "0123456789abcdef";
  info.network = NetworkOptions::GpuLarge();
  info.pipeline_version = "faceid-align-v1";
  info.crop_size = 96;
  info.threshold = 0.4321f;
  info.trained_at = "2026-12-04T17:00:00Z";
  info.training = {{"epochs", 3}, {"losses", {"ce", "center"}}};
  info.metrics = {{"val_auc", 0.93}, {"test_rank1", 0.5}};
  return info;
}

TEST(NetworkOptionsTest, PresetsDifferInSizeAndWidth) {
  const NetworkOptions small = NetworkOptions::CpuSmall();
  EXPECT_EQ(small.input_size, 64);
  EXPECT_EQ(small.embedding_dim, 128);
  EXPECT_EQ(small.stage_widths, (std::vector<int>{32, 64, 128, 256}));
  EXPECT_EQ(small.blocks_per_stage, (std::vector<int>{1, 1, 1, 1}));
  const NetworkOptions large = NetworkOptions::GpuLarge();
  EXPECT_EQ(large.input_size, 112);
  EXPECT_EQ(large.stage_widths, (std::vector<int>{64, 128, 256, 512}));
  EXPECT_EQ(large.blocks_per_stage, (std::vector<int>{2, 2, 2, 2}));
}

TEST(ModelInfoTest, JsonRoundTripKeepsEveryField) {
  const ModelInfo info = SampleInfo();
  const StatusOr<ModelInfo> back = ModelInfo::FromJson(nlohmann::json::parse(info.ToJson().dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->name, info.name);
  EXPECT_EQ(back->version, info.version);
  EXPECT_EQ(back->network.input_size, 112);
  EXPECT_EQ(back->network.embedding_dim, info.network.embedding_dim);
  EXPECT_EQ(back->network.stage_widths, info.network.stage_widths);
  EXPECT_EQ(back->network.blocks_per_stage, info.network.blocks_per_stage);
  EXPECT_EQ(back->network.prelu, info.network.prelu);
  EXPECT_DOUBLE_EQ(back->network.dropout, info.network.dropout);
  EXPECT_EQ(back->pipeline_version, "faceid-align-v1");
  EXPECT_EQ(back->crop_size, 96);
  EXPECT_EQ(back->threshold, 0.4321f);
  EXPECT_EQ(back->trained_at, info.trained_at);
  EXPECT_EQ(back->training, info.training);
  EXPECT_EQ(back->metrics, info.metrics);
}

TEST(ModelInfoTest, MissingOptionalFieldsKeepDefaults) {
  const StatusOr<ModelInfo> info =
      ModelInfo::FromJson({{"network", {{"embedding_dim", 64}}}, {"name", "x"}});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->network.embedding_dim, 64);
  EXPECT_EQ(info->network.input_size, 64);
  EXPECT_EQ(info->threshold, 0.5f);
  EXPECT_EQ(info->normalisation, "rgb_minus1_1");
}

TEST(ModelInfoTest, WrongTypesAndRangesNameTheField) {
  struct Case {
    nlohmann::json json;
    std::string field;
  };
  const std::vector<Case> cases = {
      {nlohmann::json::array(), "JSON object"},
      {{{"name", "x"}}, "network"},
      {{{"network", {{"input_size", "64"}}}}, "network.input_size"},
      {{{"network", {{"input_size", 4}}}}, "network.input_size"},
      {{{"network", {{"embedding_dim", 0}}}}, "network.embedding_dim"},
      {{{"network", {{"stage_widths", {32, 64}}}}}, "network.blocks_per_stage"},
      {{{"network", {{"stage_widths", {32, "a", 64, 1}}}}}, "network.stage_widths"},
      {{{"network", {{"architecture", "vit"}}}}, "network.architecture"},
      {{{"network", {{"dropout", 1.5}}}}, "network.dropout"},
      {{{"network", nlohmann::json::object()}, {"threshold", "high"}}, "threshold"},
      {{{"network", nlohmann::json::object()}, {"crop_size", -3}}, "crop_size"},
      {{{"network", nlohmann::json::object()}, {"metrics", {{"auc", "good"}}}}, "metrics.auc"},
  };
  for (const Case& c : cases) {
    const StatusOr<ModelInfo> info = ModelInfo::FromJson(c.json);
    ASSERT_FALSE(info.ok()) << c.json.dump();
    EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument) << c.json.dump();
    EXPECT_NE(info.status().message().find(c.field), std::string::npos)
        << c.json.dump() << " -> " << info.status();
  }
}

TEST_F(ModelInfoFileTest, ReadModelInfoReadsMetadataWithoutTorch) {
  const ModelInfo info = SampleInfo();
  const std::string path = Write("m.faceid", EncodeModelFile(info.ToJson().dump(), "weights!"));
  const StatusOr<ModelInfo> read = ReadModelInfo(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->ToJson(), info.ToJson());

  const StatusOr<ModelFileContents> contents = ReadModelFileContents(path, true);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(contents->format_version, kModelFormatVersion);
  EXPECT_EQ(contents->weights, "weights!");
  const StatusOr<ModelFileContents> header_only = ReadModelFileContents(path, false);
  ASSERT_TRUE(header_only.ok()) << header_only.status();
  EXPECT_TRUE(header_only->weights.empty());
}

TEST_F(ModelInfoFileTest, LayoutIsAsDocumented) {
  const std::string bytes = EncodeModelFile("{}", "abc");
  ASSERT_EQ(bytes.size(), 8u + 4 + 8 + 2 + 8 + 3 + 32);
  EXPECT_EQ(bytes.substr(0, 8), "FACEIDMF");
  EXPECT_EQ(bytes.substr(8, 4), std::string("\x01\0\0\0", 4));
  EXPECT_EQ(bytes.substr(12, 8), std::string("\x02\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(bytes.substr(20, 2), "{}");
  EXPECT_EQ(bytes.substr(22, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(bytes.substr(30, 3), "abc");
}

TEST_F(ModelInfoFileTest, EachBrokenFileGetsItsCode) {
  const std::string good = EncodeModelFile(SampleInfo().ToJson().dump(), std::string(1000, 'w'));
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  std::string flipped_weight = good;
  flipped_weight[good.size() - 32 - 500] ^= 0x01;
  std::string flipped_digest = good;
  flipped_digest.back() ^= 0x01;
  std::string huge_metadata_size = good;
  huge_metadata_size[19] = '\x7f';
  std::string future = good;
  future[8] = static_cast<char>(kModelFormatVersion + 1);
  std::string version_zero = good;
  version_zero[8] = 0;

  struct Case {
    std::string name;
    std::string bytes;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"empty", "", absl::StatusCode::kInvalidArgument},
      {"text", "hello, this is not a model file at all", absl::StatusCode::kInvalidArgument},
      {"bad_magic", bad_magic, absl::StatusCode::kInvalidArgument},
      {"only_magic", good.substr(0, 8), absl::StatusCode::kInvalidArgument},
      {"header_only", good.substr(0, 20), absl::StatusCode::kInvalidArgument},
      {"cut_in_metadata", good.substr(0, 40), absl::StatusCode::kInvalidArgument},
      {"cut_in_weights", good.substr(0, good.size() - 600), absl::StatusCode::kInvalidArgument},
      {"cut_in_digest", good.substr(0, good.size() - 1), absl::StatusCode::kInvalidArgument},
      {"trailing_bytes", good + "x", absl::StatusCode::kInvalidArgument},
      {"flipped_weight", flipped_weight, absl::StatusCode::kInvalidArgument},
      {"flipped_digest", flipped_digest, absl::StatusCode::kInvalidArgument},
      {"huge_metadata_size", huge_metadata_size, absl::StatusCode::kInvalidArgument},
      {"version_zero", version_zero, absl::StatusCode::kInvalidArgument},
      {"future_version", future, absl::StatusCode::kFailedPrecondition},
      {"bad_json", EncodeModelFile("{not json", "w"), absl::StatusCode::kInvalidArgument},
      {"bad_metadata", EncodeModelFile(R"({"network":{"input_size":"big"}})", "w"),
       absl::StatusCode::kInvalidArgument},
  };
  for (const Case& c : cases) {
    const StatusOr<ModelInfo> info = ReadModelInfo(Write(c.name, c.bytes));
    ASSERT_FALSE(info.ok()) << c.name;
    EXPECT_EQ(info.status().code(), c.code) << c.name << ": " << info.status();
    EXPECT_NE(info.status().message().find(c.name), std::string::npos)
        << "message names the file: " << info.status();
  }
}

TEST_F(ModelInfoFileTest, MissingFileIsNotFoundAndDirectoryIsInvalid) {
  EXPECT_EQ(ReadModelInfo((dir_ / "absent.faceid").string()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadModelInfo(dir_.string()).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace faceid
