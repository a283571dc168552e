// The server with the real pipeline and the shared fixture's trained model, in process on
// 127.0.0.1: enroll people of the fixture's training split from ../shared/data, identify
// their other photos, reject people who are not enrolled, delete then identify, scenes.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/face_pipeline.h"
#include "core/nn/embedder_factory.h"
#include "faceid/v1/faceid.grpc.pb.h"
#include "server/face_finder.h"
#include "server/gallery.h"
#include "server/server.h"
#include "server/service.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;

constexpr int kPeople = 8;
constexpr int kEnrollPhotos = 4;
constexpr int kProbesPerPerson = 3;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<fs::path> PhotosOf(const fs::path& dir) {
  std::vector<fs::path> photos;
  for (const auto& entry : fs::directory_iterator(dir)) photos.push_back(entry.path());
  std::sort(photos.begin(), photos.end());
  return photos;
}

class RealFacesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string model = std::string(FACEID_FIXTURE_DIR) + "/model.faceid";
    auto embedder = LoadEmbedder(model, "cpu");
    ASSERT_TRUE(embedder.ok()) << embedder.status();
    embedder_ = std::move(*embedder).release();
    PipelineOptions options;
    options.crop_size = embedder_->info().crop_size;
    options.landmark_model_path = FACEID_LANDMARK_MODEL;
    auto pipeline = FacePipeline::Create(options);
    ASSERT_TRUE(pipeline.ok()) << pipeline.status();
    pipeline_ = std::move(*pipeline).release();

    // The LFW dataset of the fixture split: train people with enough photos, and test people.
    std::ifstream split_file(std::string(FACEID_FIXTURE_DIR) + "/run/split.json");
    const nlohmann::json split = nlohmann::json::parse(split_file);
    for (const auto& dataset : split.at("datasets")) {
      const fs::path root = dataset.at("path").get<std::string>();
      if (root.filename() != "lfw_deepfunneled") continue;
      for (const auto& name : dataset.at("train")) {
        const auto photos = PhotosOf(root / name.get<std::string>());
        if (photos.size() >= kEnrollPhotos + kProbesPerPerson && known_.size() < kPeople) {
          known_.push_back({name.get<std::string>(), photos});
        }
      }
      for (const auto& name : dataset.at("test")) {
        if (unknown_.size() < kPeople) unknown_.push_back(PhotosOf(root / name.get<std::string>()));
      }
    }
  }
  static void TearDownTestSuite() {
    delete pipeline_;
    delete embedder_;
  }

  void SetUp() override {
    ASSERT_EQ(known_.size(), static_cast<std::size_t>(kPeople)) << "fixture split too small";
    dir_ = fs::temp_directory_path() /
           ("faceid_real_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto store = GalleryStore::Open((dir_ / "gallery.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    galleries_ = std::make_unique<GalleryManager>(
        std::move(*store), embedder_->info().network.embedding_dim, IndexOptions{});
    ASSERT_TRUE(galleries_->Prepare(*embedder_).ok());
    finder_ = std::make_unique<PipelineFaceFinder>(*pipeline_);
    service_ =
        std::make_unique<FaceService>(galleries_.get(), finder_.get(), embedder_, ServiceOptions{});
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    auto server = FaceServer::Start(options, service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::FaceId::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                                    grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_.reset();
    service_.reset();
    galleries_.reset();
    fs::remove_all(dir_);
  }

  void EnrollKnown() {
    for (const auto& [name, photos] : known_) {
      v1::EnrollRequest request;
      request.set_external_id(name);
      for (int i = 0; i < kEnrollPhotos; ++i) request.add_images(ReadAll(photos[i]));
      request.mutable_options()->set_skip_invalid_images(true);
      grpc::ClientContext context;
      v1::EnrollResponse response;
      ASSERT_TRUE(stub_->Enroll(&context, request, &response).ok()) << name;
    }
  }

  // Top candidate and decision for the largest face of a photo ("" when no face).
  std::pair<std::string, v1::Decision> Identify(const fs::path& photo) {
    grpc::ClientContext context;
    v1::IdentifyRequest request;
    request.add_images(ReadAll(photo));
    v1::IdentifyResponse response;
    EXPECT_TRUE(stub_->Identify(&context, request, &response).ok());
    if (response.results(0).faces_size() == 0) return {"", v1::DECISION_UNSPECIFIED};
    const auto& face = response.results(0).faces(0);
    return {face.candidates_size() ? face.candidates(0).external_id() : "", face.decision()};
  }

  static inline Embedder* embedder_ = nullptr;
  static inline FacePipeline* pipeline_ = nullptr;
  static inline std::vector<std::pair<std::string, std::vector<fs::path>>> known_;
  static inline std::vector<std::vector<fs::path>> unknown_;

  fs::path dir_;
  std::unique_ptr<GalleryManager> galleries_;
  std::unique_ptr<PipelineFaceFinder> finder_;
  std::unique_ptr<FaceService> service_;
  std::unique_ptr<FaceServer> server_;
  std::unique_ptr<v1::FaceId::Stub> stub_;
};

TEST_F(RealFacesTest, EnrolledPeopleAreRecognisedFromOtherPhotos) {
  EnrollKnown();
  int correct = 0, probes = 0;
  for (const auto& [name, photos] : known_) {
    for (int i = kEnrollPhotos; i < kEnrollPhotos + kProbesPerPerson; ++i) {
      ++probes;
      correct += Identify(photos[i]).first == name;
    }
  }
  std::printf("rank-1 %d/%d\n", correct, probes);
  // Rank-1 among 8 enrolled training people; chance is 1/8.
  EXPECT_GE(correct, probes * 5 / 10) << correct << "/" << probes;
}

TEST_F(RealFacesTest, PeopleNotEnrolledAreMostlyUnknown) {
  EnrollKnown();
  int unknown = 0, probes = 0;
  for (const auto& photos : unknown_) {
    const auto [who, decision] = Identify(photos[0]);
    if (who.empty() && decision == v1::DECISION_UNSPECIFIED) continue;  // no face found
    ++probes;
    unknown += decision == v1::DECISION_UNKNOWN;
  }
  ASSERT_GT(probes, 0);
  std::printf("unknown %d/%d\n", unknown, probes);
  EXPECT_GE(unknown, probes * 7 / 10) << unknown << "/" << probes;
}

TEST_F(RealFacesTest, DeletedPersonIsNotReturned) {
  EnrollKnown();
  const auto& [name, photos] = known_[0];
  grpc::ClientContext context;
  v1::DeletePersonRequest request;
  request.set_external_id(name);
  v1::DeletePersonResponse response;
  ASSERT_TRUE(stub_->DeletePerson(&context, request, &response).ok());
  EXPECT_EQ(response.faces_deleted(), kEnrollPhotos);
  for (int i = 0; i < kEnrollPhotos + kProbesPerPerson; ++i)
    EXPECT_NE(Identify(photos[i]).first, name);
}

TEST_F(RealFacesTest, ScenesGiveSeveralFacesOrNone) {
  const fs::path scenes = fs::path(FACEID_DATA_DIR) / "scenes";
  grpc::ClientContext context;
  v1::DetectRequest detect;
  detect.set_image(ReadAll(scenes / "multi_face" / "facenet_pytorch_multiface.jpg"));
  v1::DetectResponse detected;
  ASSERT_TRUE(stub_->Detect(&context, detect, &detected).ok());
  EXPECT_GE(detected.faces_size(), 2);
  EXPECT_EQ(detected.image_width(), 1200);
  grpc::ClientContext none_context;
  v1::DetectRequest no_face;
  no_face.set_image(ReadAll(scenes / "no_face" / "dlib_giraffe.jpg"));
  ASSERT_TRUE(stub_->Detect(&none_context, no_face, &detected).ok());
  EXPECT_EQ(detected.faces_size(), 0);

  // Enroll refuses a group photo when exactly one face is required.
  grpc::ClientContext enroll_context;
  v1::EnrollRequest enroll;
  enroll.set_external_id("group");
  enroll.add_images(detect.image());
  enroll.mutable_options()->set_require_single_face(true);
  v1::EnrollResponse enrolled;
  EXPECT_EQ(stub_->Enroll(&enroll_context, enroll, &enrolled).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace faceid
