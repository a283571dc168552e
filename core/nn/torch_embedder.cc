#include "core/nn/torch_embedder.h"

#include <algorithm>
#include <opencv2/core.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/log.h"
#include "core/nn/embedder_factory.h"
#include "core/nn/model_file.h"

namespace faceid {

namespace {

class TorchEmbedder final : public Embedder {
 public:
  TorchEmbedder(ModelInfo info, EmbeddingNet net, torch::Device device)
      : info_(std::move(info)), net_(std::move(net)), device_(device) {}

  StatusOr<std::vector<std::vector<float>>> Embed(
      const std::vector<cv::Mat>& crops) const override {
    for (std::size_t i = 0; i < crops.size(); ++i) {
      if (crops[i].empty()) {
        return absl::InvalidArgumentError("crop " + std::to_string(i) + " is empty");
      }
      if (crops[i].type() != CV_8UC3) {
        return absl::InvalidArgumentError("crop " + std::to_string(i) +
                                          " is not an 8-bit 3-channel BGR image");
      }
    }

    std::vector<std::vector<float>> embeddings;
    embeddings.reserve(crops.size());
    try {
      torch::InferenceMode inference_mode;
      for (std::size_t begin = 0; begin < crops.size(); begin += kMaxEmbedBatch) {
        const std::size_t end = std::min(crops.size(), begin + kMaxEmbedBatch);
        const std::vector<cv::Mat> batch(crops.begin() + begin, crops.begin() + end);
        const torch::Tensor input = CropsToTensor(batch, info_.network.input_size, device_);
        const torch::Tensor output =
            torch::nn::functional::normalize(
                net_->forward(input), torch::nn::functional::NormalizeFuncOptions().p(2).dim(1))
                .to(torch::kCPU)
                .contiguous();
        if (!torch::isfinite(output).all().item<bool>()) {
          return absl::FailedPreconditionError(
              "the model produced NaN or infinite embeddings; the model file is broken "
              "(did its training diverge?)");
        }
        const float* data = output.data_ptr<float>();
        const auto dim = static_cast<std::size_t>(output.size(1));
        for (std::int64_t row = 0; row < output.size(0); ++row) {
          embeddings.emplace_back(data + row * dim, data + (row + 1) * dim);
        }
      }
    } catch (const c10::Error& e) {
      return absl::InternalError(std::string("embedding forward pass failed: ") +
                                 e.what_without_backtrace());
    } catch (const cv::Exception& e) {
      return absl::InternalError(std::string("preparing crops for the network failed: ") +
                                 e.what());
    }
    return embeddings;
  }

  const ModelInfo& info() const override { return info_; }

  std::string device() const override { return device_.is_cuda() ? "cuda" : "cpu"; }

 private:
  const ModelInfo info_;
  // forward() is not const in LibTorch, but in eval mode under InferenceMode it writes nothing.
  mutable EmbeddingNet net_;
  const torch::Device device_;
};

StatusOr<torch::Device> ChooseDevice(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name != "auto" && name != "cuda") {
    return absl::InvalidArgumentError("unknown device '" + name + "' (use auto, cpu or cuda)");
  }
  if (torch::cuda::is_available()) {
    Logger("core")->info("device {}: embedding on CUDA", name);
    return torch::Device(torch::kCUDA);
  }
  if (name == "cuda") {
    return absl::FailedPreconditionError(
        "device 'cuda' requested but CUDA is not available (this LibTorch build has no CUDA "
        "or no GPU is visible); use device 'cpu' or 'auto'");
  }
  Logger("core")->warn("device auto: CUDA is not available, embedding on CPU");
  return torch::Device(torch::kCPU);
}

StatusOr<std::unique_ptr<Embedder>> MakeOnDevice(ModelInfo info, EmbeddingNet net,
                                                 const std::string& device_name) {
  FACEID_ASSIGN_OR_RETURN(const torch::Device device, ChooseDevice(device_name));
  try {
    net->to(device);
  } catch (const c10::Error& e) {
    return absl::InternalError("cannot move the network to " + device_name + ": " +
                               e.what_without_backtrace());
  }
  net->eval();
  info.network = net->options();
  return std::unique_ptr<Embedder>(new TorchEmbedder(std::move(info), std::move(net), device));
}

}  // namespace

StatusOr<std::unique_ptr<Embedder>> MakeTorchEmbedder(ModelInfo info, EmbeddingNet net,
                                                      const std::string& device) {
  if (!net) return absl::InvalidArgumentError("MakeTorchEmbedder: the network is null");
  EmbeddingNet copy{nullptr};
  try {
    std::stringstream weights;
    torch::save(net, weights);
    copy = EmbeddingNet(net->options());
    torch::load(copy, weights, torch::Device(torch::kCPU));
  } catch (const c10::Error& e) {
    return absl::InternalError(std::string("cannot copy the network: ") +
                               e.what_without_backtrace());
  }
  return MakeOnDevice(std::move(info), std::move(copy), device);
}

StatusOr<std::unique_ptr<Embedder>> LoadEmbedder(const std::string& path,
                                                 const std::string& device) {
  FACEID_ASSIGN_OR_RETURN(LoadedModel model, LoadModel(path));
  return MakeOnDevice(std::move(model.info), std::move(model.net), device);
}

std::unique_ptr<Embedder> MakeTinyRandomEmbedder(std::uint64_t seed) {
  LoadedModel model = MakeTinyRandomModel(seed);
  return std::make_unique<TorchEmbedder>(std::move(model.info), std::move(model.net),
                                         torch::Device(torch::kCPU));
}

Status WriteTinyRandomModel(const std::string& path, std::uint64_t seed) {
  LoadedModel model = MakeTinyRandomModel(seed);
  return SaveModel(path, std::move(model.info), std::move(model.net));
}

Status SetTorchThreads(int num_threads) {
  if (num_threads < 1) {
    return absl::InvalidArgumentError("thread count must be at least 1, got " +
                                      std::to_string(num_threads));
  }
  torch::set_num_threads(num_threads);
  return absl::OkStatus();
}

}  // namespace faceid
