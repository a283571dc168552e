// An in-process faceid server for tests: a fresh temp database, the fake finder and embedder,
// the real store, index, gallery manager, service and gRPC server on 127.0.0.1 port 0.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "faceid/v1/faceid.grpc.pb.h"
#include "server/gallery.h"
#include "server/server.h"
#include "server/service.h"
#include "server/store.h"
#include "tests/server/fakes.h"

namespace faceid::testing {

class TestServer {
 public:
  // Creates an empty temp directory named after the running test.
  TestServer();
  ~TestServer();

  // Opens the database (kept across Stop/Start), prepares the gallery with `embedder` unless
  // `prepare` is false, and starts serving.
  void Start(ServiceOptions service_options = {}, ServerOptions server_options = {},
             bool prepare = true);
  void Stop();

  // A new stub on the running server's port.
  std::unique_ptr<v1::FaceId::Stub> Stub() const;
  std::shared_ptr<grpc::Channel> Channel() const;

  const std::string& db_path() const { return db_path_; }
  const std::filesystem::path& dir() const { return dir_; }
  FakeEmbedder& embedder() { return *embedder_; }
  GalleryManager& galleries() { return *galleries_; }
  // Replaces the embedder (e.g. a new model version) before the next Start().
  void set_embedder(std::unique_ptr<FakeEmbedder> embedder) { embedder_ = std::move(embedder); }
  int port() const { return server_->port(); }
  FaceServer& server() { return *server_; }
  FaceService& service() { return *service_; }

 private:
  std::filesystem::path dir_;
  std::string db_path_;
  FakeFaceFinder finder_;
  std::unique_ptr<FakeEmbedder> embedder_;
  std::unique_ptr<GalleryManager> galleries_;
  std::unique_ptr<FaceService> service_;
  std::unique_ptr<FaceServer> server_;
};

// Enroll request with the given images for `external_id`.
v1::EnrollRequest EnrollOf(const std::string& external_id, const std::vector<std::string>& images,
                           const std::string& gallery = "");
v1::IdentifyRequest IdentifyOf(const std::string& image, const std::string& gallery = "");

}  // namespace faceid::testing
