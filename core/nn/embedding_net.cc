#include "core/nn/embedding_net.h"

#include <cstring>

#include "core/face_pipeline.h"

namespace faceid {

namespace {

namespace nn = torch::nn;

nn::Conv2d Conv(int in_channels, int out_channels, int kernel, int stride) {
  return nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, kernel)
                        .stride(stride)
                        .padding(kernel / 2)
                        .bias(false));
}

nn::AnyModule Activation(bool prelu, int channels) {
  if (prelu) return nn::AnyModule(nn::PReLU(nn::PReLUOptions().num_parameters(channels)));
  return nn::AnyModule(nn::ReLU(nn::ReLUOptions().inplace(true)));
}

// Basic residual block: conv3x3(stride)-BN-act-conv3x3-BN, plus the input (through a 1x1
// conv and BN when the shape changes), then act.
class BasicBlockImpl : public nn::Module {
 public:
  BasicBlockImpl(int in_channels, int out_channels, int stride, bool prelu)
      : conv1_(register_module("conv1", Conv(in_channels, out_channels, 3, stride))),
        bn1_(register_module("bn1", nn::BatchNorm2d(out_channels))),
        conv2_(register_module("conv2", Conv(out_channels, out_channels, 3, 1))),
        bn2_(register_module("bn2", nn::BatchNorm2d(out_channels))) {
    act1_ = Activation(prelu, out_channels);
    register_module("act1", act1_.ptr());
    act2_ = Activation(prelu, out_channels);
    register_module("act2", act2_.ptr());
    if (stride != 1 || in_channels != out_channels) {
      shortcut_ =
          register_module("shortcut", nn::Sequential(Conv(in_channels, out_channels, 1, stride),
                                                     nn::BatchNorm2d(out_channels)));
    }
  }

  torch::Tensor forward(torch::Tensor input) {
    torch::Tensor out = act1_.forward(bn1_->forward(conv1_->forward(input)));
    out = bn2_->forward(conv2_->forward(out));
    out = out + (shortcut_ ? shortcut_->forward(input) : input);
    return act2_.forward(out);
  }

 private:
  nn::Conv2d conv1_;
  nn::BatchNorm2d bn1_;
  nn::Conv2d conv2_;
  nn::BatchNorm2d bn2_;
  nn::AnyModule act1_;
  nn::AnyModule act2_;
  nn::Sequential shortcut_{nullptr};
};
TORCH_MODULE(BasicBlock);

void CheckOptions(const NetworkOptions& options) {
  TORCH_CHECK(options.architecture == "resnet", "unknown network architecture '",
              options.architecture, "' (only 'resnet' is implemented)");
  TORCH_CHECK(options.input_size > 0 && options.embedding_dim > 0,
              "input_size and embedding_dim must be positive");
  TORCH_CHECK(!options.stage_widths.empty() &&
                  options.stage_widths.size() == options.blocks_per_stage.size(),
              "stage_widths and blocks_per_stage must be non-empty and of equal length");
  for (std::size_t i = 0; i < options.stage_widths.size(); ++i) {
    TORCH_CHECK(options.stage_widths[i] > 0 && options.blocks_per_stage[i] > 0,
                "stage widths and block counts must be positive");
  }
  TORCH_CHECK(options.dropout >= 0.0 && options.dropout < 1.0, "dropout must be in [0, 1)");
}

nn::Sequential MakeBody(const NetworkOptions& options) {
  nn::Sequential body;
  const int stem_width = options.stage_widths.front();
  body->push_back("stem_conv", Conv(3, stem_width, 3, /*stride=*/2));
  body->push_back("stem_bn", nn::BatchNorm2d(stem_width));
  body->push_back("stem_act", Activation(options.prelu, stem_width));
  int in_channels = stem_width;
  for (std::size_t stage = 0; stage < options.stage_widths.size(); ++stage) {
    const int width = options.stage_widths[stage];
    for (int block = 0; block < options.blocks_per_stage[stage]; ++block) {
      // The first block of every stage after the first halves the resolution.
      const int stride = (stage > 0 && block == 0) ? 2 : 1;
      body->push_back("stage" + std::to_string(stage + 1) + "_block" + std::to_string(block + 1),
                      BasicBlock(in_channels, width, stride, options.prelu));
      in_channels = width;
    }
  }
  return body;
}

}  // namespace

EmbeddingNetImpl::EmbeddingNetImpl(const NetworkOptions& options) : options_(options) {
  CheckOptions(options_);
  body_ = register_module("body", MakeBody(options_));
  dropout_ = register_module("dropout", nn::Dropout(nn::DropoutOptions(options_.dropout)));
  embedding_ = register_module("embedding",
                               nn::Linear(options_.stage_widths.back(), options_.embedding_dim));
  embedding_bn_ = register_module("embedding_bn", nn::BatchNorm1d(options_.embedding_dim));

  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, /*a=*/0.0, torch::kFanOut, torch::kReLU);
    }
  }
}

torch::Tensor EmbeddingNetImpl::forward(torch::Tensor input) {
  TORCH_CHECK(input.dim() == 4 && input.size(1) == 3, "EmbeddingNet expects [N, 3, S, S], got ",
              input.sizes());
  torch::Tensor features = body_->forward(input);
  features = torch::adaptive_avg_pool2d(features, {1, 1}).flatten(/*start_dim=*/1);
  return embedding_bn_->forward(embedding_->forward(dropout_->forward(features)));
}

torch::Tensor CropsToTensor(const std::vector<cv::Mat>& crops, int input_size,
                            const torch::Device& device) {
  const auto count = static_cast<std::int64_t>(crops.size());
  torch::Tensor batch = torch::empty({count, input_size, input_size, 3}, torch::kFloat32);
  const std::size_t image_bytes = sizeof(float) * 3 * input_size * input_size;
  for (std::int64_t i = 0; i < count; ++i) {
    const cv::Mat& crop = crops[i];
    TORCH_CHECK(!crop.empty() && crop.type() == CV_8UC3, "crop ", i,
                " must be a non-empty CV_8UC3 image");
    cv::Mat input = CropToNetworkInput(crop, input_size);
    TORCH_CHECK(input.type() == CV_32FC3 && input.rows == input_size && input.cols == input_size,
                "CropToNetworkInput returned an unexpected image for crop ", i);
    if (!input.isContinuous()) input = input.clone();
    std::memcpy(batch[i].data_ptr<float>(), input.ptr<float>(), image_bytes);
  }
  return batch.permute({0, 3, 1, 2}).contiguous().to(device);
}

}  // namespace faceid
