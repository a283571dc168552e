// The one-preprocessing-path invariant across programs: for the same photo, the aligned crop
// the trainer caches and the crop the server stores at enrollment are identical, byte for
// byte. Runs the real faceid-server binary with the fixture model.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>

#include "core/face_pipeline.h"
#include "faceid/v1/faceid.grpc.pb.h"
#include "server/store.h"
#include "tests/client/server_process.h"
#include "trainer/dataset.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(OnePipelineTest, TrainerCacheCropEqualsServerStoredCrop) {
  const fs::path dir =
      fs::temp_directory_path() / ("faceid_one_pipeline_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "people" / "Person");
  const fs::path lfw = fs::path(FACEID_DATA_DIR) / "lfw_deepfunneled";
  const std::vector<fs::path> photos = {lfw / "Abdullah_Gul" / "Abdullah_Gul_0001.jpg",
                                        lfw / "Colin_Powell" / "Colin_Powell_0001.jpg"};
  for (size_t i = 0; i < photos.size(); ++i) {
    ASSERT_TRUE(fs::exists(photos[i])) << photos[i];
    fs::copy_file(photos[i], dir / "people" / "Person" / (std::to_string(i) + ".jpg"));
  }

  // Trainer side: align into a fresh cache, then read the crops back from that cache.
  auto pipeline = FacePipeline::Create(PipelineOptions());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto listing = ListDataset({(dir / "people").string(), false}, {});
  ASSERT_TRUE(listing.ok()) << listing.status();
  AlignOptions align;
  align.cache_dir = (dir / "cache").string();
  std::vector<std::pair<DatasetSpec, PersonImages>> people = {
      {listing->spec, listing->people.at(0)}};
  ASSERT_TRUE(AlignPeople(**pipeline, people, align).ok());
  auto cached = AlignPeople(**pipeline, people, align);
  ASSERT_TRUE(cached.ok()) << cached.status();
  ASSERT_EQ(cached->cache_hits, int(photos.size()));
  ASSERT_EQ(cached->images.size(), photos.size());

  // Server side: enroll each photo through the real binary, then read the stored crops.
  std::vector<std::int64_t> face_ids;
  {
    ServerProcess server;
    const std::string bin = FACEID_BIN_DIR;
    const std::string error =
        server.Start(bin + "/faceid-server", bin + "/faceid",
                     std::string(FACEID_FIXTURE_DIR) + "/model.faceid", dir.string(), {}, 120);
    ASSERT_EQ(error, "");
    auto stub = v1::FaceId::NewStub(
        grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
    for (const auto& image : cached->images) {
      grpc::ClientContext context;
      v1::EnrollRequest request;
      request.set_external_id("person-" + std::to_string(face_ids.size()));
      request.add_images(ReadFile(image.path));
      v1::EnrollResponse response;
      const grpc::Status status = stub->Enroll(&context, request, &response);
      ASSERT_TRUE(status.ok()) << image.path << ": " << status.error_message();
      face_ids.push_back(response.faces(0).face_id());
    }
  }
  auto store = GalleryStore::Open((dir / "gallery.db").string());
  ASSERT_TRUE(store.ok()) << store.status();
  for (size_t i = 0; i < face_ids.size(); ++i) {
    auto png = (*store)->GetCrop(face_ids[i]);
    ASSERT_TRUE(png.ok()) << png.status();
    const cv::Mat stored = cv::imdecode(
        cv::Mat(1, int(png->size()), CV_8UC1, const_cast<char*>(png->data())), cv::IMREAD_COLOR);
    const cv::Mat& trained = cached->images[i].crop;
    ASSERT_EQ(stored.size(), trained.size()) << cached->images[i].path;
    ASSERT_EQ(stored.type(), trained.type());
    EXPECT_EQ(cv::norm(stored, trained, cv::NORM_INF), 0.0) << cached->images[i].path;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace faceid
