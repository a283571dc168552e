// FaceService over gRPC on 127.0.0.1 (fake finder and embedder): every RPC, every error code.
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/server/harness.h"

namespace faceid::testing {
namespace {

using grpc::StatusCode;

std::string Photo(int person, int variant) {
  return MakeFacesImage({PersonColour(person)}, variant);
}

class FaceServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Start();
    stub_ = server_.Stub();
  }

  grpc::Status Enroll(const v1::EnrollRequest& request, v1::EnrollResponse* response = nullptr) {
    grpc::ClientContext context;
    v1::EnrollResponse ignored;
    return stub_->Enroll(&context, request, response ? response : &ignored);
  }
  grpc::Status Identify(const v1::IdentifyRequest& request, v1::IdentifyResponse* response) {
    grpc::ClientContext context;
    return stub_->Identify(&context, request, response);
  }
  // Top-1 external id of the single face in `image`, "" when unknown or no face.
  std::string WhoIs(const std::string& image, const std::string& gallery = "") {
    v1::IdentifyResponse response;
    EXPECT_TRUE(Identify(IdentifyOf(image, gallery), &response).ok());
    if (response.results_size() != 1 || response.results(0).faces_size() != 1) return "";
    const auto& face = response.results(0).faces(0);
    if (face.decision() != v1::DECISION_KNOWN) return "";
    return face.candidates(0).external_id();
  }

  TestServer server_;
  std::unique_ptr<v1::FaceId::Stub> stub_;
};

TEST_F(FaceServiceTest, EnrolledPersonIsIdentifiedFromAnotherPhoto) {
  v1::EnrollResponse enrolled;
  auto request = EnrollOf("alice", {Photo(1, 0), Photo(1, 1)});
  request.set_display_name("Alice");
  ASSERT_TRUE(Enroll(request, &enrolled).ok());
  EXPECT_TRUE(enrolled.person_created());
  ASSERT_EQ(enrolled.faces_size(), 2);
  EXPECT_GT(enrolled.faces(0).face_id(), 0);
  EXPECT_FALSE(enrolled.faces(0).duplicate());
  EXPECT_EQ(enrolled.person().face_count(), 2);
  EXPECT_EQ(enrolled.person().faces_size(), 2);
  EXPECT_EQ(enrolled.person().faces(0).model_version(), "fake-v1");
  ASSERT_TRUE(Enroll(EnrollOf("bob", {Photo(2, 0)})).ok());

  v1::IdentifyResponse response;
  ASSERT_TRUE(Identify(IdentifyOf(Photo(1, 5)), &response).ok());
  ASSERT_EQ(response.results_size(), 1);
  ASSERT_EQ(response.results(0).faces_size(), 1);
  const auto& face = response.results(0).faces(0);
  EXPECT_EQ(face.decision(), v1::DECISION_KNOWN);
  ASSERT_EQ(face.candidates_size(), 2);  // each person once, though alice has two faces
  EXPECT_EQ(face.candidates(0).external_id(), "alice");
  EXPECT_EQ(face.candidates(0).display_name(), "Alice");
  EXPECT_GT(face.candidates(0).similarity(), 0.9f);
  EXPECT_EQ(face.candidates(1).external_id(), "bob");
  EXPECT_LT(face.candidates(1).similarity(), 0.5f);
  EXPECT_FLOAT_EQ(response.threshold(), 0.5f);
  EXPECT_EQ(response.model_version(), "fake-v1");
  EXPECT_EQ(WhoIs(Photo(2, 3)), "bob");
}

TEST_F(FaceServiceTest, UnknownPersonIsUnknownNotAnError) {
  v1::IdentifyResponse empty_gallery;
  ASSERT_TRUE(Identify(IdentifyOf(Photo(3, 0)), &empty_gallery).ok());
  ASSERT_EQ(empty_gallery.results(0).faces_size(), 1);
  EXPECT_EQ(empty_gallery.results(0).faces(0).decision(), v1::DECISION_UNKNOWN);
  EXPECT_EQ(empty_gallery.results(0).faces(0).candidates_size(), 0);

  ASSERT_TRUE(Enroll(EnrollOf("alice", {Photo(1, 0)})).ok());
  v1::IdentifyResponse response;
  ASSERT_TRUE(Identify(IdentifyOf(Photo(3, 0)), &response).ok());
  EXPECT_EQ(response.results(0).faces(0).decision(), v1::DECISION_UNKNOWN);
  EXPECT_EQ(response.results(0).faces(0).candidates(0).external_id(), "alice");

  // A threshold override below the impostor score turns the answer into KNOWN.
  auto low = IdentifyOf(Photo(3, 0));
  low.set_threshold(-1.f);
  ASSERT_TRUE(Identify(low, &response).ok());
  EXPECT_EQ(response.results(0).faces(0).decision(), v1::DECISION_KNOWN);
  EXPECT_FLOAT_EQ(response.threshold(), -1.f);
}

TEST_F(FaceServiceTest, IdentifyAllFacesOrOnlyTheLargest) {
  ASSERT_TRUE(Enroll(EnrollOf("a", {Photo(4, 0)})).ok());
  ASSERT_TRUE(Enroll(EnrollOf("b", {Photo(5, 0)})).ok());
  const std::string group = MakeFacesImage({PersonColour(4), PersonColour(5)}, 1, 400, 200);
  auto request = IdentifyOf(group);
  request.set_face_selection(v1::FACE_SELECTION_ALL);
  v1::IdentifyResponse all;
  ASSERT_TRUE(Identify(request, &all).ok());
  ASSERT_EQ(all.results(0).faces_size(), 2);
  std::set<std::string> who;
  for (const auto& face : all.results(0).faces()) who.insert(face.candidates(0).external_id());
  EXPECT_EQ(who, (std::set<std::string>{"a", "b"}));
  request.set_face_selection(v1::FACE_SELECTION_LARGEST);
  v1::IdentifyResponse largest;
  ASSERT_TRUE(Identify(request, &largest).ok());
  EXPECT_EQ(largest.results(0).faces_size(), 1);

  // An image without a face is OK with no faces; a corrupt one is an error for that image only.
  auto mixed = IdentifyOf(MakeBlankImage());
  mixed.add_images("definitely not an image");
  mixed.add_images(Photo(4, 2));
  v1::IdentifyResponse response;
  ASSERT_TRUE(Identify(mixed, &response).ok());
  ASSERT_EQ(response.results_size(), 3);
  EXPECT_EQ(response.results(0).faces_size(), 0);
  EXPECT_FALSE(response.results(0).has_error());
  EXPECT_EQ(response.results(1).error().code(), static_cast<int>(StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(response.results(2).faces(0).candidates(0).external_id(), "a");
}

TEST_F(FaceServiceTest, SameImageTwiceIsDuplicateWithTheSameFaceId) {
  v1::EnrollResponse first, second;
  ASSERT_TRUE(Enroll(EnrollOf("carol", {Photo(6, 0)}), &first).ok());
  ASSERT_TRUE(Enroll(EnrollOf("carol", {Photo(6, 0), Photo(6, 1)}), &second).ok());
  EXPECT_FALSE(second.person_created());
  EXPECT_TRUE(second.faces(0).duplicate());
  EXPECT_EQ(second.faces(0).face_id(), first.faces(0).face_id());
  EXPECT_FALSE(second.faces(1).duplicate());
  EXPECT_EQ(second.person().face_count(), 2);
}

TEST_F(FaceServiceTest, ParallelRetriedEnrollsNeitherFailNorDuplicate) {
  constexpr int kClients = 8;
  std::atomic<int> created{0}, failed{0};
  std::set<std::int64_t> ids;
  std::mutex ids_mutex;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      auto stub = server_.Stub();
      grpc::ClientContext context;
      v1::EnrollResponse response;
      if (!stub->Enroll(&context, EnrollOf("dave", {Photo(7, 0)}), &response).ok()) {
        ++failed;
        return;
      }
      created += response.person_created();
      std::lock_guard<std::mutex> lock(ids_mutex);
      ids.insert(response.faces(0).face_id());
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(ids.size(), 1u);
  v1::IdentifyResponse response;
  ASSERT_TRUE(Identify(IdentifyOf(Photo(7, 3)), &response).ok());
  EXPECT_EQ(response.results(0).faces(0).candidates_size(), 1);
}

TEST_F(FaceServiceTest, DeletedPersonIsNoLongerIdentified) {
  ASSERT_TRUE(Enroll(EnrollOf("erin", {Photo(8, 0), Photo(8, 1)})).ok());
  ASSERT_TRUE(Enroll(EnrollOf("frank", {Photo(9, 0)})).ok());
  ASSERT_EQ(WhoIs(Photo(8, 2)), "erin");
  grpc::ClientContext context;
  v1::DeletePersonRequest request;
  request.set_external_id("erin");
  v1::DeletePersonResponse deleted;
  ASSERT_TRUE(stub_->DeletePerson(&context, request, &deleted).ok());
  EXPECT_EQ(deleted.faces_deleted(), 2);
  v1::IdentifyResponse response;
  ASSERT_TRUE(Identify(IdentifyOf(Photo(8, 2)), &response).ok());
  const auto& face = response.results(0).faces(0);
  EXPECT_EQ(face.decision(), v1::DECISION_UNKNOWN);
  for (const auto& candidate : face.candidates()) EXPECT_NE(candidate.external_id(), "erin");
  grpc::ClientContext get_context;
  v1::GetPersonRequest get;
  get.set_external_id("erin");
  v1::Person person;
  EXPECT_EQ(stub_->GetPerson(&get_context, get, &person).error_code(), StatusCode::NOT_FOUND);
}

TEST_F(FaceServiceTest, DeleteFaceKeepsThePerson) {
  v1::EnrollResponse enrolled;
  ASSERT_TRUE(Enroll(EnrollOf("gina", {Photo(10, 0)}), &enrolled).ok());
  grpc::ClientContext context;
  v1::DeleteFaceRequest request;
  request.set_face_id(enrolled.faces(0).face_id());
  v1::DeleteFaceResponse response;
  ASSERT_TRUE(stub_->DeleteFace(&context, request, &response).ok());
  EXPECT_EQ(response.external_id(), "gina");
  EXPECT_EQ(WhoIs(Photo(10, 1)), "");
  grpc::ClientContext get_context;
  v1::GetPersonRequest get;
  get.set_external_id("gina");
  v1::Person person;
  ASSERT_TRUE(stub_->GetPerson(&get_context, get, &person).ok());
  EXPECT_EQ(person.face_count(), 0);
  grpc::ClientContext again_context;
  EXPECT_EQ(stub_->DeleteFace(&again_context, request, &response).error_code(),
            StatusCode::NOT_FOUND);
}

TEST_F(FaceServiceTest, ListPeopleIsPagedInExternalIdOrder) {
  for (int i = 0; i < 25; ++i) {
    char id[8];
    std::snprintf(id, sizeof(id), "p%02d", 24 - i);
    ASSERT_TRUE(Enroll(EnrollOf(id, {Photo(i, 0)})).ok());
  }
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    grpc::ClientContext context;
    v1::ListPeopleRequest request;
    request.set_page_size(10);
    request.set_page_token(token);
    v1::ListPeopleResponse response;
    ASSERT_TRUE(stub_->ListPeople(&context, request, &response).ok());
    EXPECT_EQ(response.total_people(), 25);
    for (const auto& person : response.people()) {
      seen.push_back(person.external_id());
      EXPECT_EQ(person.faces_size(), 0);
      EXPECT_EQ(person.face_count(), 1);
    }
    token = response.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.front(), "p00");
}

TEST_F(FaceServiceTest, GalleriesAreSeparate) {
  ASSERT_TRUE(Enroll(EnrollOf("henry", {Photo(11, 0)}, "site-a")).ok());
  EXPECT_EQ(WhoIs(Photo(11, 1), "site-a"), "henry");
  EXPECT_EQ(WhoIs(Photo(11, 1)), "");
  grpc::ClientContext context;
  v1::ListGalleriesResponse galleries;
  ASSERT_TRUE(stub_->ListGalleries(&context, {}, &galleries).ok());
  ASSERT_EQ(galleries.galleries_size(), 2);
  EXPECT_EQ(galleries.galleries(0).name(), "default");
  EXPECT_EQ(galleries.galleries(1).name(), "site-a");
  EXPECT_EQ(galleries.galleries(1).people(), 1);
  EXPECT_EQ(galleries.galleries(1).faces(), 1);

  grpc::ClientContext delete_context;
  v1::DeleteGalleryRequest request;
  request.set_gallery("site-a");
  v1::DeleteGalleryResponse deleted;
  ASSERT_TRUE(stub_->DeleteGallery(&delete_context, request, &deleted).ok());
  EXPECT_EQ(deleted.people_deleted(), 1);
  EXPECT_EQ(deleted.faces_deleted(), 1);
  v1::IdentifyResponse response;
  EXPECT_EQ(Identify(IdentifyOf(Photo(11, 1), "site-a"), &response).error_code(),
            StatusCode::NOT_FOUND);
}

TEST_F(FaceServiceTest, VerifyAgainstImageAndPerson) {
  ASSERT_TRUE(Enroll(EnrollOf("iris", {Photo(12, 0), Photo(12, 1)})).ok());
  grpc::ClientContext context;
  v1::VerifyRequest request;
  request.set_image(Photo(12, 2));
  request.set_external_id("iris");
  v1::VerifyResponse response;
  ASSERT_TRUE(stub_->Verify(&context, request, &response).ok());
  EXPECT_TRUE(response.same_person());
  EXPECT_GT(response.similarity(), 0.9f);
  EXPECT_GT(response.matched_face_id(), 0);

  grpc::ClientContext other_context;
  request.set_other_image(Photo(13, 0));
  ASSERT_TRUE(stub_->Verify(&other_context, request, &response).ok());
  EXPECT_FALSE(response.same_person());
  EXPECT_TRUE(response.has_other_face());

  grpc::ClientContext unknown_context;
  request.set_external_id("nobody");
  EXPECT_EQ(stub_->Verify(&unknown_context, request, &response).error_code(),
            StatusCode::NOT_FOUND);
  grpc::ClientContext none_context;
  v1::VerifyRequest no_reference;
  no_reference.set_image(Photo(12, 2));
  EXPECT_EQ(stub_->Verify(&none_context, no_reference, &response).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(FaceServiceTest, DetectEmbedInfoAndUpdatePerson) {
  grpc::ClientContext detect_context;
  v1::DetectRequest detect;
  detect.set_image(MakeFacesImage({PersonColour(1), PersonColour(2)}, 0, 400, 200));
  v1::DetectResponse detected;
  ASSERT_TRUE(stub_->Detect(&detect_context, detect, &detected).ok());
  EXPECT_EQ(detected.faces_size(), 2);
  EXPECT_EQ(detected.image_width(), 400);
  EXPECT_EQ(detected.faces(0).landmarks_size(), 5);

  grpc::ClientContext embed_context;
  v1::EmbedRequest embed;
  embed.set_image(Photo(1, 0));
  v1::EmbedResponse embedded;
  ASSERT_TRUE(stub_->Embed(&embed_context, embed, &embedded).ok());
  ASSERT_EQ(embedded.faces_size(), 1);
  EXPECT_EQ(embedded.faces(0).embedding_size(), kFakeDim);
  EXPECT_EQ(embedded.embedding_dim(), kFakeDim);
  double norm = 0;
  for (float x : embedded.faces(0).embedding()) norm += x * x;
  EXPECT_NEAR(norm, 1.0, 1e-4);

  auto request = EnrollOf("jo", {Photo(14, 0)});
  (*request.mutable_metadata())["team"] = "red";
  ASSERT_TRUE(Enroll(request).ok());
  grpc::ClientContext update_context;
  v1::UpdatePersonRequest update;
  update.set_external_id("jo");
  update.set_display_name("Jo");
  (*update.mutable_metadata())["floor"] = "3";
  v1::Person person;
  ASSERT_TRUE(stub_->UpdatePerson(&update_context, update, &person).ok());
  EXPECT_EQ(person.display_name(), "Jo");
  EXPECT_EQ(person.metadata().at("team"), "red");
  EXPECT_EQ(person.metadata().at("floor"), "3");
  EXPECT_EQ(person.faces_size(), 1);

  grpc::ClientContext info_context;
  v1::InfoResponse info;
  ASSERT_TRUE(stub_->Info(&info_context, {}, &info).ok());
  EXPECT_EQ(info.index_type(), "flat");
  EXPECT_EQ(info.model().version(), "fake-v1");
  EXPECT_EQ(info.model().embedding_dim(), kFakeDim);
  EXPECT_EQ(info.total_faces(), 1);
  EXPECT_EQ(info.max_image_bytes(), 16 << 20);
  EXPECT_EQ(info.device(), "cpu");
}

TEST_F(FaceServiceTest, InvalidRequestsAreInvalidArgumentAndStoreNothing) {
  const std::string good = Photo(15, 0);
  auto code = [&](v1::EnrollRequest request) { return Enroll(request).error_code(); };
  EXPECT_EQ(code(EnrollOf("", {good})), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(EnrollOf(std::string(129, 'x'), {good})), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(EnrollOf("tab\tid", {good})), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(EnrollOf("k", {})), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(EnrollOf("k", std::vector<std::string>(33, good))), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(EnrollOf("k", {good}, "bad gallery!")), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(EnrollOf("k", {good}, std::string(65, 'g'))), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(EnrollOf("k", {"not an image"})), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(EnrollOf("k", {MakeBlankImage()})), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(EnrollOf("k", {good, "corrupt"})), StatusCode::INVALID_ARGUMENT);
  auto all = EnrollOf("k", {good});
  all.mutable_options()->set_face_selection(v1::FACE_SELECTION_ALL);
  EXPECT_EQ(code(all), StatusCode::INVALID_ARGUMENT);
  auto single = EnrollOf("k", {MakeFacesImage({PersonColour(1), PersonColour(2)}, 0, 400, 200)});
  single.mutable_options()->set_require_single_face(true);
  EXPECT_EQ(code(single), StatusCode::INVALID_ARGUMENT);
  auto metadata = EnrollOf("k", {good});
  (*metadata.mutable_metadata())["big"] = std::string(1025, 'v');
  EXPECT_EQ(code(metadata), StatusCode::INVALID_ARGUMENT);
  auto tiny = EnrollOf("k", {MakeFacesImage({PersonColour(1)}, 0, 40, 30)});
  EXPECT_EQ(code(tiny), StatusCode::INVALID_ARGUMENT);

  // Nothing of the failed requests was stored.
  grpc::ClientContext context;
  v1::InfoResponse info;
  ASSERT_TRUE(stub_->Info(&context, {}, &info).ok());
  EXPECT_EQ(info.total_faces(), 0);
  grpc::ClientContext list_context;
  v1::ListPeopleResponse people;
  ASSERT_TRUE(stub_->ListPeople(&list_context, {}, &people).ok());
  EXPECT_EQ(people.total_people(), 0);

  v1::IdentifyResponse response;
  auto top_k = IdentifyOf(good);
  top_k.set_top_k(101);
  EXPECT_EQ(Identify(top_k, &response).error_code(), StatusCode::INVALID_ARGUMENT);
  top_k.set_top_k(-1);
  EXPECT_EQ(Identify(top_k, &response).error_code(), StatusCode::INVALID_ARGUMENT);
  auto threshold = IdentifyOf(good);
  threshold.set_threshold(1.5f);
  EXPECT_EQ(Identify(threshold, &response).error_code(), StatusCode::INVALID_ARGUMENT);
  threshold.set_threshold(std::nanf(""));
  EXPECT_EQ(Identify(threshold, &response).error_code(), StatusCode::INVALID_ARGUMENT);
  v1::IdentifyRequest none;
  EXPECT_EQ(Identify(none, &response).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Identify(IdentifyOf(good, "nowhere"), &response).error_code(), StatusCode::NOT_FOUND);

  grpc::ClientContext page_context;
  v1::ListPeopleRequest page;
  page.set_page_size(1001);
  EXPECT_EQ(stub_->ListPeople(&page_context, page, &people).error_code(),
            StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext token_context;
  page.set_page_size(10);
  page.set_page_token("garbage");
  EXPECT_EQ(stub_->ListPeople(&token_context, page, &people).error_code(),
            StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext gallery_context;
  v1::DeleteGalleryRequest delete_gallery;
  v1::DeleteGalleryResponse deleted;
  EXPECT_EQ(stub_->DeleteGallery(&gallery_context, delete_gallery, &deleted).error_code(),
            StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext face_context;
  v1::DeleteFaceRequest delete_face;
  v1::DeleteFaceResponse face;
  EXPECT_EQ(stub_->DeleteFace(&face_context, delete_face, &face).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

// Sends `bytes` as the request of `method` (e.g. "Enroll") and returns the status.
grpc::Status RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                     const std::string& bytes) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  auto call = stub.PrepareUnaryCall(&context, "/faceid.v1.FaceId/" + method, request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(cq.Next(&tag, &ok));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// Regression: a string field holding bytes that are not UTF-8 made protobuf refuse the request
// and gRPC answer INTERNAL, the code for server bugs. It is the caller's error.
TEST_F(FaceServiceTest, RequestsThatDoNotParseAreInvalidArgument) {
  v1::EnrollRequest enroll;
  enroll.set_external_id("QQQQ");
  std::string bytes = enroll.SerializeAsString();
  const std::size_t at = bytes.find("QQQQ");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 4, "\xff\xfe\xc3\x28");
  grpc::Status status = RawCall(server_.Channel(), "Enroll", bytes);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find("/faceid.v1.FaceId/Enroll"), std::string::npos)
      << status.error_message();
  EXPECT_NE(status.error_message().find("UTF-8"), std::string::npos) << status.error_message();

  v1::ListPeopleRequest list;
  list.set_gallery("QQQQ");
  bytes = list.SerializeAsString();
  bytes.replace(bytes.find("QQQQ"), 4, "\x80\x80\x80\x80");
  EXPECT_EQ(RawCall(server_.Channel(), "ListPeople", bytes).error_code(),
            StatusCode::INVALID_ARGUMENT);
  // Not protobuf at all: a field header announcing more bytes than follow.
  EXPECT_EQ(
      RawCall(server_.Channel(), "Identify", std::string("\x0a\xff\xff\x03") + "abc").error_code(),
      StatusCode::INVALID_ARGUMENT);
  // A valid message still works through the same path.
  EXPECT_TRUE(RawCall(server_.Channel(), "Info", "").ok());

  grpc::ClientContext context;
  v1::InfoResponse info;
  ASSERT_TRUE(stub_->Info(&context, {}, &info).ok());
  EXPECT_EQ(info.total_faces(), 0);
}

// Regression: an UpdatePerson over the 64-key limit used to commit the change and only then
// answer INVALID_ARGUMENT, so refused requests piled up keys without bound.
TEST_F(FaceServiceTest, RefusedUpdatePersonChangesNothing) {
  ASSERT_TRUE(Enroll(EnrollOf("kim", {Photo(15, 0)})).ok());
  auto update = [&](int first_key, const std::string& name) {
    grpc::ClientContext context;
    v1::UpdatePersonRequest request;
    request.set_external_id("kim");
    request.set_display_name(name);
    for (int i = first_key; i < first_key + 40; ++i) {
      (*request.mutable_metadata())["k" + std::to_string(i)] = "v";
    }
    v1::Person person;
    return stub_->UpdatePerson(&context, request, &person).error_code();
  };
  ASSERT_EQ(update(0, "Kim"), StatusCode::OK);
  EXPECT_EQ(update(100, "Changed"), StatusCode::INVALID_ARGUMENT);  // 80 keys in all

  grpc::ClientContext context;
  v1::GetPersonRequest get;
  get.set_external_id("kim");
  v1::Person person;
  ASSERT_TRUE(stub_->GetPerson(&context, get, &person).ok());
  EXPECT_EQ(person.metadata_size(), 40);
  EXPECT_EQ(person.display_name(), "Kim");
}

TEST_F(FaceServiceTest, OversizedNamesAndMetadataKeysAreRefused) {
  auto long_name = EnrollOf("lee", {Photo(16, 0)});
  long_name.set_display_name(std::string(257, 'n'));
  EXPECT_EQ(Enroll(long_name).error_code(), StatusCode::INVALID_ARGUMENT);
  auto long_key = EnrollOf("lee", {Photo(16, 0)});
  (*long_key.mutable_metadata())[std::string(129, 'k')] = "v";
  EXPECT_EQ(Enroll(long_key).error_code(), StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(Enroll(EnrollOf("lee", {Photo(16, 0)})).ok());

  grpc::ClientContext context;
  v1::UpdatePersonRequest update;
  update.set_external_id("lee");
  update.set_display_name(std::string(1 << 20, 'n'));
  v1::Person person;
  EXPECT_EQ(stub_->UpdatePerson(&context, update, &person).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

// Regression (hostile review): C1 controls and bidi overrides passed the "no control
// characters" rule, so `faceid people` printed a stored name's terminal escape sequences.
TEST_F(FaceServiceTest, SteeringCharactersInStoredTextAreRefused) {
  const std::vector<std::string> bad = {"csi\u009b2J", "nel\u0085", "ls\u2028x", "rlo\u202Eevil",
                                        "iso\u2066x"};
  for (const std::string& text : bad) {
    auto by_id = EnrollOf("ok-" + std::to_string(&text - &bad[0]), {Photo(17, 0)});
    by_id.set_external_id(text);
    const grpc::Status id_status = Enroll(by_id);
    EXPECT_EQ(id_status.error_code(), StatusCode::INVALID_ARGUMENT) << text;
    EXPECT_NE(id_status.error_message().find("external_id contains the control or bidi"),
              std::string::npos)
        << id_status.error_message();
    auto by_name = EnrollOf("named", {Photo(17, 0)});
    by_name.set_display_name(text);
    EXPECT_EQ(Enroll(by_name).error_code(), StatusCode::INVALID_ARGUMENT) << text;
    auto by_key = EnrollOf("named", {Photo(17, 0)});
    (*by_key.mutable_metadata())[text] = "v";
    EXPECT_EQ(Enroll(by_key).error_code(), StatusCode::INVALID_ARGUMENT) << text;
  }
  // Removing such a key (empty value) stays possible, for keys stored by older versions;
  // setting one does not.
  grpc::ClientContext update_context;
  v1::UpdatePersonRequest update;
  update.set_external_id("named");
  (*update.mutable_metadata())["rlo\u202Eevil"] = "";
  v1::Person updated;
  const grpc::Status removal = stub_->UpdatePerson(&update_context, update, &updated);
  // "named" was never stored, so NOT_FOUND shows the removal passed validation.
  EXPECT_EQ(removal.error_code(), StatusCode::NOT_FOUND) << removal.error_message();
  grpc::ClientContext set_context;
  (*update.mutable_metadata())["rlo\u202Eevil"] = "v";
  EXPECT_EQ(stub_->UpdatePerson(&set_context, update, &updated).error_code(),
            StatusCode::INVALID_ARGUMENT);
  auto empty_value = EnrollOf("named2", {Photo(17, 0)});
  (*empty_value.mutable_metadata())["rlo\u202Eevil"] = "";
  EXPECT_EQ(Enroll(empty_value).error_code(), StatusCode::INVALID_ARGUMENT);

  auto fine = EnrollOf("zoë-李", {Photo(17, 0)});
  fine.set_display_name("Zoë Ærø 李小龍 עברית");
  EXPECT_TRUE(Enroll(fine).ok());
  grpc::ClientContext context;
  v1::ListPeopleRequest list;
  v1::ListPeopleResponse people;
  ASSERT_TRUE(stub_->ListPeople(&context, list, &people).ok());
  EXPECT_EQ(people.people_size(), 1);
}

// Gallery names of dots only ("." and "..") read as paths; they are refused.
TEST_F(FaceServiceTest, GalleryNamesOfDotsOnlyAreRefused) {
  for (const char* name : {".", "..", "..."}) {
    auto request = EnrollOf("dot", {Photo(20, 0)});
    request.set_gallery(name);
    EXPECT_EQ(Enroll(request).error_code(), StatusCode::INVALID_ARGUMENT) << name;
  }
  auto dotted = EnrollOf("dot", {Photo(20, 0)});
  dotted.set_gallery("team.v2");
  EXPECT_TRUE(Enroll(dotted).ok());
  // Only creation is refused: a dots-only gallery stored by an older version stays reachable
  // (here it does not exist, so lookups are NOT_FOUND, not INVALID_ARGUMENT).
  grpc::ClientContext context;
  v1::ListPeopleRequest list;
  list.set_gallery("..");
  v1::ListPeopleResponse people;
  EXPECT_EQ(stub_->ListPeople(&context, list, &people).error_code(), StatusCode::NOT_FOUND);
}

// Regression: an unknown face_selection number was served as LARGEST.
TEST_F(FaceServiceTest, UnknownFaceSelectionIsInvalidArgument) {
  auto identify = IdentifyOf(Photo(18, 0), "");
  identify.set_face_selection(static_cast<v1::FaceSelection>(99));
  v1::IdentifyResponse response;
  EXPECT_EQ(Identify(identify, &response).error_code(), StatusCode::INVALID_ARGUMENT);
  auto enroll = EnrollOf("sel", {Photo(18, 0)});
  enroll.mutable_options()->set_face_selection(static_cast<v1::FaceSelection>(-1));
  EXPECT_EQ(Enroll(enroll).error_code(), StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext context;
  v1::EmbedRequest embed;
  embed.set_image(Photo(18, 0));
  embed.set_face_selection(static_cast<v1::FaceSelection>(7));
  v1::EmbedResponse embedded;
  EXPECT_EQ(stub_->Embed(&context, embed, &embedded).error_code(), StatusCode::INVALID_ARGUMENT);
}

// Regression: a face against itself came back as 1.0000002, outside the documented [-1, 1].
TEST_F(FaceServiceTest, SimilaritiesStayWithinMinusOneAndOne) {
  ASSERT_TRUE(Enroll(EnrollOf("self", {Photo(19, 0)})).ok());
  v1::IdentifyResponse identified;
  ASSERT_TRUE(Identify(IdentifyOf(Photo(19, 0), ""), &identified).ok());
  ASSERT_EQ(identified.results(0).faces_size(), 1);
  const float top = identified.results(0).faces(0).candidates(0).similarity();
  EXPECT_LE(top, 1.0f);
  EXPECT_GT(top, 0.999f);
  grpc::ClientContext context;
  v1::VerifyRequest verify;
  verify.set_image(Photo(19, 0));
  verify.set_other_image(Photo(19, 0));
  v1::VerifyResponse verified;
  ASSERT_TRUE(stub_->Verify(&context, verify, &verified).ok());
  EXPECT_LE(verified.similarity(), 1.0f);
  EXPECT_GT(verified.similarity(), 0.999f);
}

// Regression: gRPC's default SO_REUSEPORT let a second server bind a port in use, so clients
// reached either server's database at random.
TEST_F(FaceServiceTest, SecondServerOnAPortInUseIsRefused) {
  ServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string(server_.port());
  auto second = FaceServer::Start(options, &server_.service());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(FaceServiceTest, UnknownThingsAreNotFound) {
  v1::Person person;
  grpc::ClientContext update_context;
  v1::UpdatePersonRequest update;
  update.set_external_id("ghost");
  EXPECT_EQ(stub_->UpdatePerson(&update_context, update, &person).error_code(),
            StatusCode::NOT_FOUND);
  grpc::ClientContext delete_context;
  v1::DeletePersonRequest remove;
  remove.set_external_id("ghost");
  v1::DeletePersonResponse removed;
  EXPECT_EQ(stub_->DeletePerson(&delete_context, remove, &removed).error_code(),
            StatusCode::NOT_FOUND);
  grpc::ClientContext gallery_context;
  v1::DeleteGalleryRequest gallery;
  gallery.set_gallery("nowhere");
  v1::DeleteGalleryResponse deleted;
  EXPECT_EQ(stub_->DeleteGallery(&gallery_context, gallery, &deleted).error_code(),
            StatusCode::NOT_FOUND);
  grpc::ClientContext list_context;
  v1::ListPeopleRequest list;
  list.set_gallery("nowhere");
  v1::ListPeopleResponse people;
  EXPECT_EQ(stub_->ListPeople(&list_context, list, &people).error_code(), StatusCode::NOT_FOUND);
}

TEST_F(FaceServiceTest, PageTokenOfAnotherGalleryIsFailedPrecondition) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Enroll(EnrollOf("q" + std::to_string(i), {Photo(i, 0)}, "g1")).ok());
    ASSERT_TRUE(Enroll(EnrollOf("q" + std::to_string(i), {Photo(i, 0)}, "g2")).ok());
  }
  grpc::ClientContext context;
  v1::ListPeopleRequest request;
  request.set_gallery("g1");
  request.set_page_size(1);
  v1::ListPeopleResponse response;
  ASSERT_TRUE(stub_->ListPeople(&context, request, &response).ok());
  ASSERT_FALSE(response.next_page_token().empty());
  grpc::ClientContext other_context;
  request.set_gallery("g2");
  request.set_page_token(response.next_page_token());
  EXPECT_EQ(stub_->ListPeople(&other_context, request, &response).error_code(),
            StatusCode::FAILED_PRECONDITION);
}

TEST_F(FaceServiceTest, SkipInvalidImagesStoresTheGoodOnesAndReportsTheBad) {
  auto request = EnrollOf("kim", {Photo(16, 0), "broken", MakeBlankImage(), Photo(16, 1)});
  request.mutable_options()->set_skip_invalid_images(true);
  v1::EnrollResponse response;
  ASSERT_TRUE(Enroll(request, &response).ok());
  ASSERT_EQ(response.faces_size(), 4);
  EXPECT_GT(response.faces(0).face_id(), 0);
  EXPECT_EQ(response.faces(1).face_id(), 0);
  EXPECT_EQ(response.faces(1).error().code(), static_cast<int>(StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(response.faces(2).error().code(), static_cast<int>(StatusCode::INVALID_ARGUMENT));
  EXPECT_GT(response.faces(3).face_id(), 0);
  EXPECT_EQ(response.person().face_count(), 2);
  // When no image is usable, the refusal names every image's reason, not only the first's.
  auto all_bad = EnrollOf("lee", {"broken", MakeBlankImage()});
  all_bad.mutable_options()->set_skip_invalid_images(true);
  const grpc::Status refused = Enroll(all_bad);
  EXPECT_EQ(refused.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("image 0: "), std::string::npos)
      << refused.error_message();
  EXPECT_NE(refused.error_message().find("; image 1: no face found"), std::string::npos)
      << refused.error_message();
}

TEST_F(FaceServiceTest, InputIsFaceCropSkipsDetection) {
  auto request = EnrollOf("crop", {MakeBlankImage()});
  request.mutable_options()->set_input_is_face_crop(true);
  v1::EnrollResponse response;
  ASSERT_TRUE(Enroll(request, &response).ok());
  EXPECT_EQ(response.faces(0).face().box().width(), 100);
  EXPECT_FLOAT_EQ(response.faces(0).face().detection_score(), 1.f);
  EXPECT_EQ(response.faces(0).face().landmarks_size(), 0);
}

TEST(FaceServiceLimitsTest, OversizedImagesAndMessagesAreResourceExhausted) {
  TestServer server;
  ServiceOptions service;
  service.max_image_bytes = 20'000;
  ServerOptions limits;
  limits.max_image_bytes = 20'000;
  server.Start(service, limits);
  auto stub = server.Stub();
  // Over the per-image limit but within the gRPC receive limit.
  grpc::ClientContext context;
  v1::EnrollResponse response;
  auto request = EnrollOf("big", {std::string(30'000, 'x')});
  EXPECT_EQ(stub->Enroll(&context, request, &response).error_code(),
            StatusCode::RESOURCE_EXHAUSTED);
  // Over the gRPC receive limit: refused before the service sees it.
  grpc::ClientContext big_context;
  request = EnrollOf("big", {std::string(2 << 20, 'x')});
  EXPECT_EQ(stub->Enroll(&big_context, request, &response).error_code(),
            StatusCode::RESOURCE_EXHAUSTED);
}

TEST(FaceServiceAuthTest, ApiKeyIsRequiredWhenConfigured) {
  TestServer server;
  ServiceOptions service;
  service.api_key = "s3cret-key";
  server.Start(service);
  auto stub = server.Stub();
  v1::InfoResponse info;
  grpc::ClientContext none;
  EXPECT_EQ(stub->Info(&none, {}, &info).error_code(), StatusCode::UNAUTHENTICATED);
  grpc::ClientContext wrong;
  wrong.AddMetadata("authorization", "Bearer nope");
  EXPECT_EQ(stub->Info(&wrong, {}, &info).error_code(), StatusCode::UNAUTHENTICATED);
  grpc::ClientContext bearer;
  bearer.AddMetadata("authorization", "Bearer s3cret-key");
  EXPECT_TRUE(stub->Info(&bearer, {}, &info).ok());
  grpc::ClientContext header;
  header.AddMetadata("x-api-key", "s3cret-key");
  EXPECT_TRUE(stub->Info(&header, {}, &info).ok());
}

TEST(FaceServiceReadyTest, UnavailableUntilPrepared) {
  TestServer server;
  server.Start({}, {}, /*prepare=*/false);
  auto stub = server.Stub();
  grpc::ClientContext context;
  v1::IdentifyResponse response;
  EXPECT_EQ(stub->Identify(&context, IdentifyOf(Photo(1, 0)), &response).error_code(),
            StatusCode::UNAVAILABLE);
  grpc::ClientContext info_context;
  v1::InfoResponse info;
  EXPECT_TRUE(stub->Info(&info_context, {}, &info).ok());
  ASSERT_TRUE(server.galleries().Prepare(server.embedder()).ok());
  grpc::ClientContext again;
  EXPECT_TRUE(stub->Identify(&again, IdentifyOf(Photo(1, 0)), &response).ok());
}

TEST(FaceServiceOverloadTest, RequestsOverTheInFlightLimitAreRefusedQuickly) {
  TestServer server;
  ServiceOptions service;
  service.max_in_flight = 2;
  ServerOptions threads;
  threads.threads = 2;
  server.Start(service, threads);
  server.embedder().set_delay(std::chrono::milliseconds(400));
  constexpr int kClients = 8;
  std::atomic<int> ok{0}, exhausted{0};
  std::atomic<long> slowest_refusal_ms{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = server.Stub();
      grpc::ClientContext context;
      v1::EmbedRequest request;
      request.set_image(Photo(c, 0));
      v1::EmbedResponse response;
      const auto started = std::chrono::steady_clock::now();
      const grpc::Status status = stub->Embed(&context, request, &response);
      const long ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
      if (status.ok()) ++ok;
      if (status.error_code() == StatusCode::RESOURCE_EXHAUSTED) {
        ++exhausted;
        long previous = slowest_refusal_ms.load();
        while (ms > previous && !slowest_refusal_ms.compare_exchange_weak(previous, ms)) {
        }
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_GE(ok.load(), 1);
  EXPECT_GE(exhausted.load(), 1);
  EXPECT_EQ(ok.load() + exhausted.load(), kClients);
  // Refused without waiting for the slow requests to finish.
  EXPECT_LT(slowest_refusal_ms.load(), 400);
}

TEST(FaceServiceHealthTest, HealthIsNotServingUntilTheGalleryIsReady) {
  TestServer server;
  server.Start({}, {}, /*prepare=*/false);
  auto health = grpc::health::v1::Health::NewStub(server.Channel());
  for (const std::string service : {"", "faceid.v1.FaceId"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  ASSERT_TRUE(server.galleries().Prepare(server.embedder()).ok());
  server.server().SetServing(true);
  for (const std::string service : {"", "faceid.v1.FaceId"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
}

TEST(FaceServiceRestartTest, SameAnswersAfterRestart) {
  TestServer server;
  server.Start();
  std::int64_t alice_face = 0;
  {
    auto stub = server.Stub();
    grpc::ClientContext context;
    v1::EnrollResponse response;
    ASSERT_TRUE(stub->Enroll(&context, EnrollOf("alice", {Photo(1, 0)}), &response).ok());
    alice_face = response.faces(0).face_id();
    grpc::ClientContext bob;
    ASSERT_TRUE(stub->Enroll(&bob, EnrollOf("bob", {Photo(2, 0)}, "site"), &response).ok());
  }
  server.Stop();
  server.Start();
  auto stub = server.Stub();
  grpc::ClientContext context;
  v1::IdentifyResponse response;
  ASSERT_TRUE(stub->Identify(&context, IdentifyOf(Photo(1, 4)), &response).ok());
  ASSERT_EQ(response.results(0).faces_size(), 1);
  EXPECT_EQ(response.results(0).faces(0).decision(), v1::DECISION_KNOWN);
  EXPECT_EQ(response.results(0).faces(0).candidates(0).face_id(), alice_face);
  grpc::ClientContext site;
  ASSERT_TRUE(stub->Identify(&site, IdentifyOf(Photo(2, 4), "site"), &response).ok());
  EXPECT_EQ(response.results(0).faces(0).candidates(0).external_id(), "bob");
}

TEST(FaceServiceReembedTest, NewModelVersionReembedsStoredCrops) {
  TestServer server;
  server.Start();
  {
    auto stub = server.Stub();
    grpc::ClientContext context;
    v1::EnrollResponse response;
    ASSERT_TRUE(
        stub->Enroll(&context, EnrollOf("alice", {Photo(1, 0), Photo(1, 1)}), &response).ok());
  }
  server.Stop();
  server.set_embedder(std::make_unique<FakeEmbedder>("fake-v2"));
  server.Start();
  auto stub = server.Stub();
  grpc::ClientContext context;
  v1::GetPersonRequest get;
  get.set_external_id("alice");
  v1::Person person;
  ASSERT_TRUE(stub->GetPerson(&context, get, &person).ok());
  ASSERT_EQ(person.faces_size(), 2);
  for (const auto& face : person.faces()) EXPECT_EQ(face.model_version(), "fake-v2");
  // The v2 vectors differ from v1; identification works because the gallery was re-embedded.
  grpc::ClientContext identify;
  v1::IdentifyResponse response;
  ASSERT_TRUE(stub->Identify(&identify, IdentifyOf(Photo(1, 3)), &response).ok());
  EXPECT_EQ(response.results(0).faces(0).decision(), v1::DECISION_KNOWN);
  EXPECT_GT(response.results(0).faces(0).candidates(0).similarity(), 0.9f);
}

}  // namespace
}  // namespace faceid::testing
