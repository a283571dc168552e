#include "tests/server/harness.h"

#include <unistd.h>

namespace faceid::testing {

namespace fs = std::filesystem;

TestServer::TestServer() : embedder_(std::make_unique<FakeEmbedder>()) {
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(test->test_suite_name()) + "_" + test->name();
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  dir_ = fs::temp_directory_path() / ("faceid_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  db_path_ = (dir_ / "gallery.db").string();
}

TestServer::~TestServer() {
  Stop();
  fs::remove_all(dir_);
}

void TestServer::Start(ServiceOptions service_options, ServerOptions server_options, bool prepare) {
  auto store = GalleryStore::Open(db_path_);
  ASSERT_TRUE(store.ok()) << store.status();
  galleries_ = std::make_unique<GalleryManager>(
      std::move(*store), embedder_->info().network.embedding_dim, IndexOptions{});
  if (prepare) {
    const Status prepared = galleries_->Prepare(*embedder_);
    ASSERT_TRUE(prepared.ok()) << prepared;
  }
  service_ =
      std::make_unique<FaceService>(galleries_.get(), &finder_, embedder_.get(), service_options);
  server_options.listen = "127.0.0.1:0";
  auto server = FaceServer::Start(server_options, service_.get());
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  if (prepare) server_->SetServing(true);
}

void TestServer::Stop() {
  if (server_) server_->Shutdown(std::chrono::milliseconds(2000));
  server_.reset();
  service_.reset();
  galleries_.reset();
}

std::shared_ptr<grpc::Channel> TestServer::Channel() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<v1::FaceId::Stub> TestServer::Stub() const {
  return v1::FaceId::NewStub(Channel());
}

v1::EnrollRequest EnrollOf(const std::string& external_id, const std::vector<std::string>& images,
                           const std::string& gallery) {
  v1::EnrollRequest request;
  request.set_gallery(gallery);
  request.set_external_id(external_id);
  for (const std::string& image : images) request.add_images(image);
  return request;
}

v1::IdentifyRequest IdentifyOf(const std::string& image, const std::string& gallery) {
  v1::IdentifyRequest request;
  request.set_gallery(gallery);
  request.add_images(image);
  return request;
}

}  // namespace faceid::testing
