#include "core/model_info.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <type_traits>

namespace faceid {

namespace {

constexpr char kMagic[8] = {'F', 'A', 'C', 'E', 'I', 'D', 'M', 'F'};
constexpr std::size_t kDigestBytes = 32;
// magic + format_version + metadata_bytes + weights_bytes + digest
constexpr std::uint64_t kFixedBytes = sizeof(kMagic) + 4 + 8 + 8 + kDigestBytes;
constexpr std::size_t kHashChunkBytes = 1 << 20;

// Network options a file may declare; anything outside is refused before a net is built.
constexpr int kMinInputSize = 16;  // the net downsamples 16x before pooling
constexpr int kMaxInputSize = 1024;
constexpr int kMaxEmbeddingDim = 8192;
constexpr int kMaxStageWidth = 8192;
constexpr int kMaxBlocksPerStage = 64;

void AppendLittleEndian(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t ReadLittleEndian(const char* data, int bytes) {
  std::uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) {
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(data[i])) << (8 * i);
  }
  return value;
}

// Incremental SHA-256 over OpenSSL's EVP interface.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
  }
  void Update(const char* data, std::size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
  std::string Final() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &digest_len);
    return std::string(reinterpret_cast<const char*>(digest), digest_len);
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

Status Invalid(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError("model file " + path + ": " + what);
}

// Reads exactly `size` bytes into `out` (when not null) and the hash. False on a short read.
bool ReadSection(std::istream& in, std::uint64_t size, Sha256& hash, std::string* out) {
  std::string chunk;
  while (size > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, kHashChunkBytes));
    chunk.resize(n);
    if (!in.read(chunk.data(), static_cast<std::streamsize>(n))) return false;
    hash.Update(chunk.data(), n);
    if (out != nullptr) out->append(chunk);
    size -= n;
  }
  return true;
}

// Typed field access for FromJson: absent keys keep the default; a present key of the wrong
// type is an error naming the field.
template <typename T>
Status ReadField(const nlohmann::json& object, const char* key, const std::string& prefix, T& out) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return absl::OkStatus();
  bool type_ok = false;
  if constexpr (std::is_same_v<T, bool>) {
    type_ok = it->is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    type_ok = it->is_number_integer();
  } else if constexpr (std::is_floating_point_v<T>) {
    type_ok = it->is_number();
  } else if constexpr (std::is_same_v<T, std::string>) {
    type_ok = it->is_string();
  } else if constexpr (std::is_same_v<T, std::vector<int>>) {
    type_ok = it->is_array();
    for (const auto& element : *it) type_ok = type_ok && element.is_number_integer();
  }
  if (!type_ok) {
    return absl::InvalidArgumentError("model metadata: field '" + prefix + key +
                                      "' has the wrong type (" + it->type_name() + ")");
  }
  out = it->template get<T>();
  return absl::OkStatus();
}

Status CheckRange(const std::string& field, long long value, long long min, long long max) {
  if (value < min || value > max) {
    return absl::InvalidArgumentError("model metadata: field '" + field + "' is " +
                                      std::to_string(value) + ", expected " + std::to_string(min) +
                                      ".." + std::to_string(max));
  }
  return absl::OkStatus();
}

StatusOr<NetworkOptions> NetworkOptionsFromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError("model metadata: field 'network' must be an object");
  }
  NetworkOptions options;
  const std::string prefix = "network.";
  FACEID_RETURN_IF_ERROR(ReadField(json, "architecture", prefix, options.architecture));
  FACEID_RETURN_IF_ERROR(ReadField(json, "input_size", prefix, options.input_size));
  FACEID_RETURN_IF_ERROR(ReadField(json, "embedding_dim", prefix, options.embedding_dim));
  FACEID_RETURN_IF_ERROR(ReadField(json, "stage_widths", prefix, options.stage_widths));
  FACEID_RETURN_IF_ERROR(ReadField(json, "blocks_per_stage", prefix, options.blocks_per_stage));
  FACEID_RETURN_IF_ERROR(ReadField(json, "prelu", prefix, options.prelu));
  FACEID_RETURN_IF_ERROR(ReadField(json, "dropout", prefix, options.dropout));

  if (options.architecture != "resnet") {
    return absl::InvalidArgumentError("model metadata: field 'network.architecture' is '" +
                                      options.architecture + "'; only 'resnet' is implemented");
  }
  FACEID_RETURN_IF_ERROR(
      CheckRange("network.input_size", options.input_size, kMinInputSize, kMaxInputSize));
  FACEID_RETURN_IF_ERROR(
      CheckRange("network.embedding_dim", options.embedding_dim, 1, kMaxEmbeddingDim));
  if (options.stage_widths.empty() ||
      options.stage_widths.size() != options.blocks_per_stage.size()) {
    return absl::InvalidArgumentError(
        "model metadata: 'network.stage_widths' and 'network.blocks_per_stage' must be "
        "non-empty and of equal length");
  }
  for (std::size_t i = 0; i < options.stage_widths.size(); ++i) {
    FACEID_RETURN_IF_ERROR(
        CheckRange("network.stage_widths", options.stage_widths[i], 1, kMaxStageWidth));
    FACEID_RETURN_IF_ERROR(
        CheckRange("network.blocks_per_stage", options.blocks_per_stage[i], 1, kMaxBlocksPerStage));
  }
  if (!(options.dropout >= 0.0 && options.dropout < 1.0)) {
    return absl::InvalidArgumentError("model metadata: field 'network.dropout' must be in [0, 1)");
  }
  return options;
}

}  // namespace

NetworkOptions NetworkOptions::CpuSmall() { return NetworkOptions(); }

NetworkOptions NetworkOptions::GpuLarge() {
  NetworkOptions options;
  options.input_size = 112;
  options.embedding_dim = 512;
  options.stage_widths = {64, 128, 256, 512};
  options.blocks_per_stage = {2, 2, 2, 2};
  options.dropout = 0.2;
  return options;
}

nlohmann::json ModelInfo::ToJson() const {
  nlohmann::json json;
  json["name"] = name;
  json["version"] = version;
  json["network"] = {{"architecture", network.architecture},
                     {"input_size", network.input_size},
                     {"embedding_dim", network.embedding_dim},
                     {"stage_widths", network.stage_widths},
                     {"blocks_per_stage", network.blocks_per_stage},
                     {"prelu", network.prelu},
                     {"dropout", network.dropout}};
  json["normalisation"] = normalisation;
  json["pipeline_version"] = pipeline_version;
  json["crop_size"] = crop_size;
  json["threshold"] = threshold;
  json["trained_at"] = trained_at;
  json["training"] = training;
  json["metrics"] = metrics;
  return json;
}

StatusOr<ModelInfo> ModelInfo::FromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(std::string("model metadata must be a JSON object, not ") +
                                      json.type_name());
  }
  ModelInfo info;
  FACEID_RETURN_IF_ERROR(ReadField(json, "name", "", info.name));
  FACEID_RETURN_IF_ERROR(ReadField(json, "version", "", info.version));
  const auto network = json.find("network");
  if (network == json.end()) {
    return absl::InvalidArgumentError("model metadata: field 'network' is missing");
  }
  FACEID_ASSIGN_OR_RETURN(info.network, NetworkOptionsFromJson(*network));
  FACEID_RETURN_IF_ERROR(ReadField(json, "normalisation", "", info.normalisation));
  FACEID_RETURN_IF_ERROR(ReadField(json, "pipeline_version", "", info.pipeline_version));
  FACEID_RETURN_IF_ERROR(ReadField(json, "crop_size", "", info.crop_size));
  FACEID_RETURN_IF_ERROR(CheckRange("crop_size", info.crop_size, 1, kMaxInputSize * 4));
  FACEID_RETURN_IF_ERROR(ReadField(json, "threshold", "", info.threshold));
  FACEID_RETURN_IF_ERROR(ReadField(json, "trained_at", "", info.trained_at));
  if (const auto training = json.find("training"); training != json.end()) {
    info.training = *training;
  }
  if (const auto metrics = json.find("metrics"); metrics != json.end() && !metrics->is_null()) {
    if (!metrics->is_object()) {
      return absl::InvalidArgumentError("model metadata: field 'metrics' must be an object");
    }
    for (const auto& [key, value] : metrics->items()) {
      // JSON has no NaN: ToJson writes a NaN metric (e.g. an undefined AUC) as null.
      if (value.is_null()) {
        info.metrics[key] = std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      if (!value.is_number()) {
        return absl::InvalidArgumentError("model metadata: field 'metrics." + key +
                                          "' must be a number");
      }
      info.metrics[key] = value.get<double>();
    }
  }
  return info;
}

StatusOr<ModelFileContents> ReadModelFileContents(const std::string& path, bool with_weights) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) {
    return absl::NotFoundError("model file " + path + " does not exist");
  }
  if (std::filesystem::is_directory(status)) return Invalid(path, "is a directory");
  const std::uint64_t file_size = std::filesystem::file_size(path, error);
  if (error) return Invalid(path, "cannot read its size: " + error.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::PermissionDeniedError("model file " + path +
                                       " cannot be opened: " + std::strerror(errno));
  }

  Sha256 hash;
  char header[sizeof(kMagic) + 4];
  if (!in.read(header, sizeof(header))) {
    return Invalid(path,
                   "too short to be a faceid model file (" + std::to_string(file_size) + " bytes)");
  }
  if (std::memcmp(header, kMagic, sizeof(kMagic)) != 0) {
    return Invalid(path, "not a faceid model file (wrong magic)");
  }
  hash.Update(header, sizeof(header));
  ModelFileContents contents;
  contents.format_version = static_cast<std::uint32_t>(ReadLittleEndian(header + 8, 4));
  if (contents.format_version > kModelFormatVersion) {
    return absl::FailedPreconditionError("model file " + path + " has format version " +
                                         std::to_string(contents.format_version) +
                                         "; this build reads up to version " +
                                         std::to_string(kModelFormatVersion) + " (upgrade faceid)");
  }
  if (contents.format_version == 0) return Invalid(path, "format version 0 is not valid");

  // Sections: the sizes must add up to the file size exactly, before anything is allocated.
  char size_field[8];
  if (!in.read(size_field, 8)) return Invalid(path, "truncated (no metadata size)");
  hash.Update(size_field, 8);
  const std::uint64_t metadata_bytes = ReadLittleEndian(size_field, 8);
  if (metadata_bytes > file_size - std::min(file_size, kFixedBytes)) {
    return Invalid(path, "truncated or corrupt (metadata size " + std::to_string(metadata_bytes) +
                             " exceeds the file)");
  }
  contents.metadata_json.reserve(metadata_bytes);
  if (!ReadSection(in, metadata_bytes, hash, &contents.metadata_json) || !in.read(size_field, 8)) {
    return Invalid(path, "truncated (in the metadata)");
  }
  hash.Update(size_field, 8);
  const std::uint64_t weights_bytes = ReadLittleEndian(size_field, 8);
  const std::uint64_t expected_size = kFixedBytes + metadata_bytes;
  if (weights_bytes > file_size - std::min(file_size, expected_size)) {
    return Invalid(
        path, "truncated (weights size " + std::to_string(weights_bytes) + " exceeds the file)");
  }
  if (expected_size + weights_bytes != file_size) {
    return Invalid(path, "has " + std::to_string(file_size - expected_size - weights_bytes) +
                             " unexpected trailing bytes");
  }
  if (with_weights) contents.weights.reserve(weights_bytes);
  char digest[kDigestBytes];
  if (!ReadSection(in, weights_bytes, hash, with_weights ? &contents.weights : nullptr) ||
      !in.read(digest, kDigestBytes)) {
    return Invalid(path, "truncated (in the weights)");
  }
  if (hash.Final() != std::string(digest, kDigestBytes)) {
    return Invalid(path, "corrupt (SHA-256 checksum mismatch)");
  }
  return contents;
}

std::string EncodeModelFile(const std::string& metadata_json, const std::string& weights) {
  std::string out(kMagic, sizeof(kMagic));
  out.reserve(kFixedBytes + metadata_json.size() + weights.size());
  AppendLittleEndian(out, kModelFormatVersion, 4);
  AppendLittleEndian(out, metadata_json.size(), 8);
  out += metadata_json;
  AppendLittleEndian(out, weights.size(), 8);
  out += weights;
  Sha256 hash;
  hash.Update(out.data(), out.size());
  out += hash.Final();
  return out;
}

StatusOr<ModelInfo> ReadModelInfo(const std::string& path) {
  FACEID_ASSIGN_OR_RETURN(ModelFileContents contents,
                          ReadModelFileContents(path, /*with_weights=*/false));
  const nlohmann::json json =
      nlohmann::json::parse(contents.metadata_json, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Invalid(path, "metadata is not valid JSON");
  StatusOr<ModelInfo> info = ModelInfo::FromJson(json);
  if (!info.ok()) return Invalid(path, std::string(info.status().message()));
  return info;
}

}  // namespace faceid
