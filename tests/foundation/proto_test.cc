// The API contract: every RPC the issue lists exists, and messages round-trip on the wire.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "faceid/v1/faceid.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace faceid {
namespace {

TEST(FaceIdProtoTest, ServiceDeclaresEveryRpc) {
  const auto* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName("faceid.v1.FaceId");
  ASSERT_NE(service, nullptr);
  std::set<std::string> methods;
  for (int i = 0; i < service->method_count(); ++i) methods.insert(service->method(i)->name());
  const std::set<std::string> expected = {
      "Enroll",       "Identify",     "Verify",     "Detect",        "Embed",
      "UpdatePerson", "DeletePerson", "DeleteFace", "ListPeople",    "GetPerson",
      "ListGalleries", "DeleteGallery", "Info"};
  EXPECT_EQ(methods, expected);
  EXPECT_EQ(service->full_name(), "faceid.v1.FaceId");
}

TEST(FaceIdProtoTest, EnrollRequestRoundTripsOnTheWire) {
  faceid::v1::EnrollRequest request;
  request.set_gallery("site-a");
  request.set_external_id("emp-42");
  request.add_images(std::string("\xff\xd8\x00jpeg", 7));
  request.mutable_options()->set_require_single_face(true);
  (*request.mutable_metadata())["team"] = "ops";

  faceid::v1::EnrollRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(request.SerializeAsString()));
  EXPECT_EQ(parsed.external_id(), "emp-42");
  EXPECT_EQ(parsed.images(0), std::string("\xff\xd8\x00jpeg", 7));
  EXPECT_TRUE(parsed.options().require_single_face());
  EXPECT_EQ(parsed.metadata().at("team"), "ops");
}

TEST(FaceIdProtoTest, IdentifyThresholdPresenceIsTracked) {
  faceid::v1::IdentifyRequest request;
  EXPECT_FALSE(request.has_threshold());
  request.set_threshold(0.0f);
  faceid::v1::IdentifyRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(request.SerializeAsString()));
  EXPECT_TRUE(parsed.has_threshold());  // an explicit 0.0 is not "use the default"
}

TEST(HealthProtoTest, MatchesTheStandardServiceName) {
  const auto* service = grpc::health::v1::HealthCheckRequest::descriptor()->file()->service(0);
  EXPECT_EQ(service->full_name(), "grpc.health.v1.Health");
  EXPECT_EQ(grpc::health::v1::HealthCheckResponse::SERVING, 1);
}

}  // namespace
}  // namespace faceid
