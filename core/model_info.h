// ModelInfo: the metadata a faceid model file carries, readable without LibTorch.
//
// Everything the server needs to serve a model as is: architecture, input size,
// normalisation, embedding dimension, the alignment pipeline version and crop mode it was
// trained with, the calibrated threshold, and the training summary and metrics.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace faceid {

// Options of the embedding network (see core/nn/embedding_net.h). Presets are one line each.
struct NetworkOptions {
  std::string architecture = "resnet";     // the only family implemented
  int input_size = 64;                     // pixels per side of the network input
  int embedding_dim = 128;
  std::vector<int> stage_widths = {32, 64, 128, 256};
  std::vector<int> blocks_per_stage = {1, 1, 1, 1};
  bool prelu = true;                       // PReLU after each conv; ReLU when false
  double dropout = 0.0;                    // before the embedding layer, training only

  static NetworkOptions CpuSmall();  // ~1.4 M parameters, 64 px: minutes on 2 CPU cores
  static NetworkOptions GpuLarge();  // 112 px, widths 64..512, 2 blocks per stage
};

struct ModelInfo {
  std::string name = "faceid";
  std::string version;                 // SHA-256 (hex, 16 chars) of the weights; set on save
  NetworkOptions network;
  std::string normalisation = "rgb_minus1_1";  // see CropToNetworkInput
  std::string pipeline_version;        // kPipelineVersion it was trained with
  int crop_size = 112;                 // aligned crop side the pipeline produced
  float threshold = 0.5f;              // cosine similarity at FAR 1e-3 on validation impostors
  std::string trained_at;              // ISO 8601 UTC
  nlohmann::json training;             // losses, weights, split, epochs ... (free form)
  std::map<std::string, double> metrics;  // "val_auc", "test_rank1", ...

  nlohmann::json ToJson() const;
  // INVALID_ARGUMENT naming the field when the JSON is malformed or a field has a wrong type.
  static StatusOr<ModelInfo> FromJson(const nlohmann::json& json);
};

// Reads only the metadata of a model file (no LibTorch). Same errors as LoadModel.
StatusOr<ModelInfo> ReadModelInfo(const std::string& path);

// The model file container (layout in core/nn/model_file.h), torch-free so that ReadModelInfo
// and the LibTorch loader share one reader. Most code wants LoadModel or ReadModelInfo instead.
inline constexpr std::uint32_t kModelFormatVersion = 1;

struct ModelFileContents {
  std::uint32_t format_version = 0;
  std::string metadata_json;  // UTF-8 JSON, not yet parsed
  std::string weights;        // torch::save archive; empty when not requested
};

// Reads and checks a model file: magic, format version, section sizes against the file size,
// and the trailing SHA-256 over the whole file (checked even when `with_weights` is false;
// the weights are then streamed through the hash and dropped). NOT_FOUND for a missing file;
// PERMISSION_DENIED when it cannot be opened; INVALID_ARGUMENT for a directory, a wrong
// magic, a truncated, padded or corrupt file; FAILED_PRECONDITION for a format version newer
// than kModelFormatVersion.
StatusOr<ModelFileContents> ReadModelFileContents(const std::string& path, bool with_weights);

// The complete file bytes for `metadata_json` and `weights` (kModelFormatVersion, checksum).
std::string EncodeModelFile(const std::string& metadata_json, const std::string& weights);

}  // namespace faceid
