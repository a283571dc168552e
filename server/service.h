// FaceService: the gRPC surface of faceid-server (faceid.v1.FaceId).
//
// Each method checks the API key and the in-flight limit, validates the request, calls the
// face finder, the embedder and the gallery manager, maps the status to its gRPC code and
// fills the reply. Nothing else happens here. Until the gallery manager is ready (re-embedding
// at start) every RPC except Info answers UNAVAILABLE.
//
// Thread-safety: thread-safe; gRPC calls the methods from many threads at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "core/embedder.h"
#include "faceid/v1/faceid.grpc.pb.h"
#include "server/face_finder.h"
#include "server/gallery.h"

namespace faceid {

inline constexpr int kMaxEnrollImages = 32;
inline constexpr int kMaxIdentifyImages = 16;

struct ServiceOptions {
  std::int64_t max_image_bytes = 16 << 20;  // per image; larger ones are RESOURCE_EXHAUSTED
  int max_in_flight = 8;  // requests being worked on; more are refused RESOURCE_EXHAUSTED
  std::string api_key;    // empty: no key required
};

class FaceService final : public faceid::v1::FaceId::Service {
 public:
  // All three must outlive the service.
  FaceService(GalleryManager* galleries, const FaceFinder* finder, const Embedder* embedder,
              const ServiceOptions& options);

  grpc::Status Enroll(grpc::ServerContext* context, const v1::EnrollRequest* request,
                      v1::EnrollResponse* response) override;
  grpc::Status Identify(grpc::ServerContext* context, const v1::IdentifyRequest* request,
                        v1::IdentifyResponse* response) override;
  grpc::Status Verify(grpc::ServerContext* context, const v1::VerifyRequest* request,
                      v1::VerifyResponse* response) override;
  grpc::Status Detect(grpc::ServerContext* context, const v1::DetectRequest* request,
                      v1::DetectResponse* response) override;
  grpc::Status Embed(grpc::ServerContext* context, const v1::EmbedRequest* request,
                     v1::EmbedResponse* response) override;
  grpc::Status UpdatePerson(grpc::ServerContext* context, const v1::UpdatePersonRequest* request,
                            v1::Person* response) override;
  grpc::Status DeletePerson(grpc::ServerContext* context, const v1::DeletePersonRequest* request,
                            v1::DeletePersonResponse* response) override;
  grpc::Status DeleteFace(grpc::ServerContext* context, const v1::DeleteFaceRequest* request,
                          v1::DeleteFaceResponse* response) override;
  grpc::Status ListPeople(grpc::ServerContext* context, const v1::ListPeopleRequest* request,
                          v1::ListPeopleResponse* response) override;
  grpc::Status GetPerson(grpc::ServerContext* context, const v1::GetPersonRequest* request,
                         v1::Person* response) override;
  grpc::Status ListGalleries(grpc::ServerContext* context, const v1::ListGalleriesRequest* request,
                             v1::ListGalleriesResponse* response) override;
  grpc::Status DeleteGallery(grpc::ServerContext* context, const v1::DeleteGalleryRequest* request,
                             v1::DeleteGalleryResponse* response) override;
  grpc::Status Info(grpc::ServerContext* context, const v1::InfoRequest* request,
                    v1::InfoResponse* response) override;

 private:
  // Runs `handler` (returning Status) after the API key, in-flight and readiness checks;
  // logs the method, latency and code at DEBUG and maps the status to gRPC.
  template <typename Handler>
  grpc::Status Serve(const char* method, grpc::ServerContext* context, bool needs_ready,
                     Handler&& handler);
  Status CheckApiKey(const grpc::ServerContext& context) const;
  float Threshold() const { return embedder_->info().threshold; }

  GalleryManager* galleries_;
  const FaceFinder* finder_;
  const Embedder* embedder_;
  const ServiceOptions options_;
  std::atomic<int> in_flight_{0};
  std::atomic<std::uint64_t> request_counter_{0};
};

}  // namespace faceid
