#include "core/nn/model_file.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "core/face_pipeline.h"
#include "core/hash.h"

namespace faceid {

namespace {

constexpr std::size_t kVersionHexChars = 16;

Status ErrnoStatus(int error_number, const std::string& what) {
  // The message gets ": <strerror>" appended by absl.
  return absl::ErrnoToStatus(error_number, what);
}

// Writes `bytes` to `path` via a temporary file in the same directory, fsync and rename, so a
// reader sees either the old file or the complete new one.
Status WriteFileAtomically(const std::string& path, const std::string& bytes) {
  static std::atomic<int> counter{0};
  const std::string temp_path =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  std::FILE* file = std::fopen(temp_path.c_str(), "wb");
  if (file == nullptr) return ErrnoStatus(errno, "cannot create " + temp_path);
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size() &&
                       std::fflush(file) == 0 && ::fsync(::fileno(file)) == 0;
  const int write_errno = errno;
  const bool closed = std::fclose(file) == 0;
  if (!written || !closed) {
    std::remove(temp_path.c_str());
    return ErrnoStatus(written ? errno : write_errno, "cannot write " + temp_path);
  }
  if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
    const int rename_errno = errno;
    std::remove(temp_path.c_str());
    return ErrnoStatus(rename_errno, "cannot rename " + temp_path + " to " + path);
  }
  return absl::OkStatus();
}

// Every parameter and buffer's shape, by name.
std::map<std::string, std::vector<std::int64_t>> Shapes(const EmbeddingNet& net) {
  std::map<std::string, std::vector<std::int64_t>> shapes;
  for (const auto& item : net->named_parameters()) shapes[item.key()] = item.value().sizes().vec();
  for (const auto& item : net->named_buffers()) shapes[item.key()] = item.value().sizes().vec();
  return shapes;
}

// torch::load replaces each tensor with the stored one whatever its shape, so a file whose
// weights belong to another architecture would load "successfully": compare the shapes.
Status CheckShapes(const std::map<std::string, std::vector<std::int64_t>>& expected,
                   const EmbeddingNet& net, const std::string& path) {
  for (const auto& [name, shape] : Shapes(net)) {
    if (expected.at(name) != shape) {
      return absl::InvalidArgumentError("model file " + path + ": weight '" + name +
                                        "' has shape " + c10::str(c10::IntArrayRef(shape)) +
                                        " but the declared network needs " +
                                        c10::str(c10::IntArrayRef(expected.at(name))));
    }
  }
  return absl::OkStatus();
}

// A network whose training diverged holds NaN or inf weights; served, it would put NaN
// embeddings into the gallery. OK when every parameter and floating-point buffer is finite.
Status CheckFinite(const EmbeddingNet& net, const std::string& path) {
  const auto check = [&](const std::string& name, const torch::Tensor& t) -> Status {
    if (!t.is_floating_point() || torch::isfinite(t).all().item<bool>()) return absl::OkStatus();
    return absl::InvalidArgumentError("model file " + path + ": weight '" + name +
                                      "' holds NaN or infinite values (did training diverge? "
                                      "train again with a lower --lr)");
  };
  for (const auto& item : net->named_parameters()) {
    FACEID_RETURN_IF_ERROR(check(item.key(), item.value()));
  }
  for (const auto& item : net->named_buffers()) {
    FACEID_RETURN_IF_ERROR(check(item.key(), item.value()));
  }
  return absl::OkStatus();
}

// Sets every BatchNorm's running statistics from one batch of smooth random images. Untrained
// with default statistics, the net maps all faces to nearly one direction (mean cosine about
// 0.93 between different people's chips); centred statistics spread the embeddings apart.
void CalibrateBatchNorm(EmbeddingNet& net) {
  constexpr int kImages = 32;
  constexpr int kNoiseSide = 8;      // upsampled: low-frequency blobs rather than pixel noise
  constexpr double kMomentum = 0.1;  // LibTorch's default, restored after the pass
  const int size = net->options().input_size;
  torch::NoGradGuard no_grad;
  const torch::Tensor images =
      torch::nn::functional::interpolate(torch::rand({kImages, 3, kNoiseSide, kNoiseSide}),
                                         torch::nn::functional::InterpolateFuncOptions()
                                             .size(std::vector<std::int64_t>{size, size})
                                             .mode(torch::kBilinear)
                                             .align_corners(false)) *
          2 -
      1;
  const auto set_momentum = [&](double momentum) {
    for (const auto& module : net->modules(/*include_self=*/false)) {
      if (auto* bn = module->as<torch::nn::BatchNorm2d>()) bn->options.momentum(momentum);
      if (auto* bn = module->as<torch::nn::BatchNorm1d>()) bn->options.momentum(momentum);
    }
  };
  set_momentum(1.0);
  net->train();
  net->forward(images);
  set_momentum(kMomentum);
}

}  // namespace

Status SaveModel(const std::string& path, ModelInfo info, EmbeddingNet net) {
  if (!net) return absl::InvalidArgumentError("SaveModel: the network is null");
  if (!std::isfinite(info.threshold)) {
    return absl::InvalidArgumentError("SaveModel " + path + ": threshold is not finite");
  }
  try {
    FACEID_RETURN_IF_ERROR(CheckFinite(net, path));
  } catch (const c10::Error& e) {
    return absl::InternalError("cannot check the weights for " + path + ": " +
                               e.what_without_backtrace());
  }
  std::ostringstream weights;
  try {
    torch::save(net, weights);
  } catch (const c10::Error& e) {
    return absl::InternalError("cannot serialise the network for " + path + ": " +
                               e.what_without_backtrace());
  }
  const std::string weight_bytes = weights.str();

  // The net is the truth about its architecture.
  info.network = net->options();
  info.version = Sha256Hex(weight_bytes).substr(0, kVersionHexChars);
  // Invalid UTF-8 in free-form strings (e.g. a path in `training`) is replaced, not thrown.
  const std::string metadata =
      info.ToJson().dump(/*indent=*/-1, /*indent_char=*/' ', /*ensure_ascii=*/false,
                         nlohmann::json::error_handler_t::replace);
  return WriteFileAtomically(path, EncodeModelFile(metadata, weight_bytes));
}

StatusOr<LoadedModel> LoadModel(const std::string& path) {
  FACEID_ASSIGN_OR_RETURN(ModelFileContents contents,
                          ReadModelFileContents(path, /*with_weights=*/true));
  const nlohmann::json json =
      nlohmann::json::parse(contents.metadata_json, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError("model file " + path + ": metadata is not valid JSON");
  }
  StatusOr<ModelInfo> info = ModelInfo::FromJson(json);
  if (!info.ok()) {
    return absl::InvalidArgumentError("model file " + path + ": " +
                                      std::string(info.status().message()));
  }

  LoadedModel model;
  model.info = *std::move(info);
  try {
    model.net = EmbeddingNet(model.info.network);
    const auto expected_shapes = Shapes(model.net);
    std::istringstream weights(contents.weights);
    torch::load(model.net, weights, torch::Device(torch::kCPU));
    FACEID_RETURN_IF_ERROR(CheckShapes(expected_shapes, model.net, path));
    FACEID_RETURN_IF_ERROR(CheckFinite(model.net, path));
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        "model file " + path +
        ": weights do not match the declared network: " + e.what_without_backtrace());
  }
  model.net->eval();
  return model;
}

LoadedModel MakeTinyRandomModel(std::uint64_t seed) {
  // Module initialisation draws from torch's global CPU generator: seed it, and restore it
  // afterwards so callers' random streams are not disturbed. The mutex keeps concurrent
  // callers from interleaving on that generator.
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  const torch::Tensor saved_state = generator.get_state();
  torch::manual_seed(seed);

  LoadedModel model;
  model.info.name = "faceid-tiny-random";
  model.info.network = NetworkOptions::CpuSmall();
  model.info.pipeline_version = kPipelineVersion;
  model.info.threshold = 0.5f;
  model.info.training = {{"random_init_seed", seed}};
  model.net = EmbeddingNet(model.info.network);
  CalibrateBatchNorm(model.net);
  model.net->eval();
  generator.set_state(saved_state);

  std::ostringstream weights;
  torch::save(model.net, weights);
  model.info.version = Sha256Hex(weights.str()).substr(0, kVersionHexChars);
  return model;
}

}  // namespace faceid
