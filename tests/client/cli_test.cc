// The CLI end to end against an in-process fake FaceId service on 127.0.0.1: argument parsing,
// exit codes, JSON documents, enroll-dir batching and skip reasons, paging, API key metadata.
// The fake answers from the image bytes (text files), so no model is needed.
#include "client/cli.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "client/format.h"
#include "faceid/v1/faceid.grpc.pb.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::faceid::v1;
using ::testing::HasSubstr;

constexpr int kFakeMaxImagesPerRequest = 4;
constexpr int kFakeMaxImageBytes = 1000;

// Images are text: "BAD..." fails to decode, "NOFACE" has no face, anything else is a face of
// the person whose external id is the text.
class FakeFaceId final : public v1::FaceId::Service {
 public:
  grpc::Status Enroll(grpc::ServerContext* context, const v1::EnrollRequest* request,
                      v1::EnrollResponse* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    RecordAuth(context);
    enroll_batch_sizes_.push_back(request->images_size());
    if (!request->options().skip_invalid_images()) ++enrolls_without_skip_;
    int good = 0;
    std::string first_error;
    for (int i = 0; i < request->images_size(); ++i) {
      v1::EnrolledFace* face = response->add_faces();
      face->set_image_index(i);
      if (request->images(i).rfind("BAD", 0) == 0 || request->images(i) == "NOFACE") {
        face->mutable_error()->set_code(3);
        face->mutable_error()->set_message(request->images(i) == "NOFACE" ? "no face found"
                                                                          : "cannot decode image");
        if (first_error.empty()) first_error = face->error().message();
        continue;
      }
      face->set_face_id(next_face_id_++);
      ++good;
    }
    if (good == 0) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "no usable image in the request: " + first_error};
    }
    v1::Person& person = people_[request->external_id()];
    person.set_external_id(request->external_id());
    person.set_display_name(request->display_name());
    person.set_face_count(person.face_count() + good);
    *response->mutable_person() = person;
    return grpc::Status::OK;
  }

  grpc::Status Identify(grpc::ServerContext* context, const v1::IdentifyRequest* request,
                        v1::IdentifyResponse* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    RecordAuth(context);
    response->set_threshold(request->has_threshold() ? request->threshold() : 0.5f);
    response->set_model_version("fake-model");
    for (int i = 0; i < request->images_size(); ++i) {
      v1::ImageResult* result = response->add_results();
      result->set_image_index(i);
      if (request->images(i) == "NOFACE") continue;
      v1::IdentifiedFace* face = result->add_faces();
      face->mutable_face()->mutable_box()->set_width(40);
      face->mutable_face()->mutable_box()->set_height(50);
      v1::Candidate* best = face->add_candidates();
      best->set_external_id(request->images(i));
      best->set_similarity(0.9f);
      v1::Candidate* second = face->add_candidates();
      second->set_external_id("runner");
      second->set_similarity(0.2f);
      face->set_decision(0.9f >= response->threshold() ? v1::DECISION_KNOWN : v1::DECISION_UNKNOWN);
    }
    return grpc::Status::OK;
  }

  // Slow on purpose when the probe is "SLOW", to exercise --timeout.
  grpc::Status Verify(grpc::ServerContext*, const v1::VerifyRequest* request,
                      v1::VerifyResponse* response) override {
    if (request->image() == "SLOW") std::this_thread::sleep_for(std::chrono::seconds(1));
    const float threshold = request->has_threshold() ? request->threshold() : 0.5f;
    response->set_similarity(0.75f);
    response->set_threshold(threshold);
    response->set_same_person(0.75f >= threshold);
    if (request->has_external_id()) response->set_matched_face_id(7);
    return grpc::Status::OK;
  }

  grpc::Status ListPeople(grpc::ServerContext*, const v1::ListPeopleRequest* request,
                          v1::ListPeopleResponse* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t begin = request->page_token().empty() ? 0 : std::stoul(request->page_token());
    const size_t page = static_cast<size_t>(request->page_size() > 0 ? request->page_size() : 100);
    size_t i = 0;
    for (const auto& [id, person] : people_) {
      if (i >= begin && i < begin + page) *response->add_people() = person;
      ++i;
    }
    if (begin + page < people_.size()) response->set_next_page_token(std::to_string(begin + page));
    response->set_total_people(static_cast<int64_t>(people_.size()));
    return grpc::Status::OK;
  }

  grpc::Status GetPerson(grpc::ServerContext*, const v1::GetPersonRequest* request,
                         v1::Person* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = people_.find(request->external_id());
    if (it == people_.end()) {
      return {grpc::StatusCode::NOT_FOUND, "no person '" + request->external_id() + "'"};
    }
    *response = it->second;
    return grpc::Status::OK;
  }

  grpc::Status Info(grpc::ServerContext* context, const v1::InfoRequest*,
                    v1::InfoResponse* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    RecordAuth(context);
    if (!required_key_.empty() && last_auth_ != "Bearer " + required_key_) {
      return {grpc::StatusCode::UNAUTHENTICATED, "missing or wrong API key"};
    }
    response->set_server_version("fake");
    response->set_max_images_per_request(kFakeMaxImagesPerRequest);
    response->set_max_image_bytes(kFakeMaxImageBytes);
    response->set_index_type("flat");
    return grpc::Status::OK;
  }

  // Overloaded on purpose: the first `busy_embeds` Embed calls get RESOURCE_EXHAUSTED.
  grpc::Status Embed(grpc::ServerContext*, const v1::EmbedRequest*,
                     v1::EmbedResponse* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    embed_times_.push_back(now);
    if (busy_embeds_ > 0) {
      --busy_embeds_;
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, "server busy"};
    }
    response->set_embedding_dim(1);
    return grpc::Status::OK;
  }
  void SetBusyEmbeds(int n) {
    std::lock_guard<std::mutex> lock(mutex_);
    busy_embeds_ = n;
  }
  std::vector<std::chrono::steady_clock::time_point> embed_times() {
    std::lock_guard<std::mutex> lock(mutex_);
    return embed_times_;
  }

  void RequireKey(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    required_key_ = key;
  }
  std::vector<int> enroll_batch_sizes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return enroll_batch_sizes_;
  }
  int enrolls_without_skip() {
    std::lock_guard<std::mutex> lock(mutex_);
    return enrolls_without_skip_;
  }
  std::string last_auth() {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_auth_;
  }

 private:
  void RecordAuth(grpc::ServerContext* context) {
    auto it = context->client_metadata().find("authorization");
    last_auth_ = it == context->client_metadata().end()
                     ? ""
                     : std::string(it->second.data(), it->second.size());
  }

  std::mutex mutex_;
  std::map<std::string, v1::Person> people_;
  std::vector<int> enroll_batch_sizes_;
  int enrolls_without_skip_ = 0;
  int busy_embeds_ = 0;
  std::vector<std::chrono::steady_clock::time_point> embed_times_;
  int64_t next_face_id_ = 1;
  std::string last_auth_;
  std::string required_key_;
};

struct CliResult {
  int exit_code;
  std::string out;
  std::string err;
  nlohmann::json Json() const { return nlohmann::json::parse(out); }
};

CliResult RunFaceid(std::vector<std::string> args) {
  args.insert(args.begin(), "faceid");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out;
  std::ostringstream err;
  const int code = RunCli(static_cast<int>(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

// A loopback port nobody listens on (bound, then released).
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

void WriteFile(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = "127.0.0.1:" + std::to_string(port);
    dir_ = fs::temp_directory_path() /
           ("faceid_cli_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    server_->Shutdown();
    fs::remove_all(dir_);
  }

  CliResult RunHere(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", address_});
    return RunFaceid(std::move(args));
  }

  FakeFaceId service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  fs::path dir_;
};

TEST(CliUsageTest, BadCommandLinesExitWithTwo) {
  EXPECT_EQ(RunFaceid({}).exit_code, kExitUsage);
  EXPECT_EQ(RunFaceid({"frobnicate"}).exit_code, kExitUsage);
  EXPECT_EQ(RunFaceid({"identify"}).exit_code, kExitUsage);
  EXPECT_EQ(RunFaceid({"identify", "/nonexistent/x.jpg"}).exit_code, kExitUsage);
  EXPECT_EQ(RunFaceid({"delete"}).exit_code, kExitUsage);
  EXPECT_EQ(RunFaceid({"people", "--page-size", "0"}).exit_code, kExitUsage);
  EXPECT_EQ(RunFaceid({"--timeout", "-1", "info"}).exit_code, kExitUsage);
  EXPECT_EQ(RunFaceid({"bench", "--image", "/etc/hostname", "--requests", "3", "--duration", "1"})
                .exit_code,
            kExitUsage);
  const CliResult verify = RunFaceid({"verify", "/etc/hostname"});
  EXPECT_EQ(verify.exit_code, kExitUsage);
  EXPECT_THAT(verify.err, HasSubstr("--person"));
}

// Regression (new-user review): `delete face abc` printed "Value abc not in range 0.000000 to
// 17976931348623157081..." and a 20-digit id was silently clamped to INT64_MAX.
TEST(CliUsageTest, BadNumbersAreExplainedInWords) {
  for (const char* id : {"abc", "0", "-4", "99999999999999999999"}) {
    const CliResult face = RunFaceid({"delete", "face", id});
    EXPECT_EQ(face.exit_code, kExitUsage) << id;
    EXPECT_THAT(face.err, HasSubstr("must be a whole number from 1 to 9223372036854775807"));
    EXPECT_THAT(face.err, ::testing::Not(HasSubstr("17976931348623157")));
  }
  const CliResult timeout = RunFaceid({"--timeout", "0", "info"});
  EXPECT_EQ(timeout.exit_code, kExitUsage);
  EXPECT_THAT(timeout.err, HasSubstr("must be a number greater than 0 up to 1e9, got '0'"));
  // inf and 1e18 overflowed the deadline and failed at once with DEADLINE_EXCEEDED.
  for (const char* value : {"inf", "1e18", "nan"}) {
    EXPECT_EQ(RunFaceid({"--timeout", value, "info"}).exit_code, kExitUsage) << value;
  }
  const CliResult backoff =
      RunFaceid({"bench", "--image", "/etc/hostname", "--backoff-ms", "nan", "-n", "1"});
  EXPECT_EQ(backoff.exit_code, kExitUsage);
  EXPECT_THAT(backoff.err, HasSubstr("must be a number from 0 up to 1e9"));
}

TEST(CliUsageTest, HelpAndVersionExitWithZero) {
  const CliResult help = RunFaceid({"--help"});
  EXPECT_EQ(help.exit_code, kExitOk);
  EXPECT_THAT(help.out, HasSubstr("enroll-dir"));
  EXPECT_EQ(RunFaceid({"identify", "--help"}).exit_code, kExitOk);
  EXPECT_EQ(RunFaceid({"--version"}).exit_code, kExitOk);
}

TEST(CliUsageTest, UnreachableServerExitsOneAndSaysWhatToCheck) {
  const std::string address = "127.0.0.1:" + std::to_string(ClosedPort());
  const CliResult result = RunFaceid({"--server", address, "--timeout", "5", "info"});
  EXPECT_EQ(result.exit_code, kExitRequestFailed);
  EXPECT_THAT(result.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(result.err, HasSubstr("server not reachable at " + address));
  EXPECT_THAT(result.err, HasSubstr("is faceid-server running?"));
}

TEST(CliUsageTest, UnreachableServerWithJsonPrintsErrorDocument) {
  const std::string address = "127.0.0.1:" + std::to_string(ClosedPort());
  const CliResult result = RunFaceid({"people", "--server", address, "--json"});
  EXPECT_EQ(result.exit_code, kExitRequestFailed);
  const nlohmann::json doc = result.Json();
  EXPECT_EQ(doc["error"]["code"], "UNAVAILABLE");
  EXPECT_EQ(doc["error"]["code_number"], 14);
}

TEST_F(CliTest, EnrollDirBatchesSkipsBadFilesAndSummarises) {
  for (int i = 0; i < 5; ++i) WriteFile(dir_ / "alice" / (std::to_string(i) + ".jpg"), "alice");
  WriteFile(dir_ / "alice" / "broken.jpg", "BAD bytes");
  WriteFile(dir_ / "alice" / "notes.txt", "not an image");
  WriteFile(dir_ / "bob" / "1.png", "bob");
  WriteFile(dir_ / "bob" / "huge.jpg", std::string(kFakeMaxImageBytes + 1, 'x'));
  WriteFile(dir_ / "carol" / "only_bad.jpg", "BAD");
  WriteFile(dir_ / "stray.jpg", "alice");

  const CliResult result =
      RunHere({"enroll-dir", dir_.string(), "--json", "--batch", "8", "-j", "3"});
  ASSERT_EQ(result.exit_code, kExitOk) << result.err;
  const nlohmann::json doc = result.Json();
  EXPECT_EQ(doc["people"], 2);
  EXPECT_EQ(doc["faces"], 6);
  EXPECT_EQ(doc["files"], 11);
  EXPECT_EQ(doc["failed_requests"], 0);
  EXPECT_EQ(doc["faces_per_person"]["alice"], 5);
  EXPECT_EQ(doc["faces_per_person"]["bob"], 1);
  std::map<std::string, std::string> reasons;
  for (const auto& s : doc["skipped"]) {
    reasons[fs::path(s["file"].get<std::string>()).filename().string()] =
        s["code"].get<std::string>() + " " + s["reason"].get<std::string>();
  }
  ASSERT_EQ(reasons.size(), 5u) << doc.dump(2);
  EXPECT_THAT(reasons["broken.jpg"], HasSubstr("INVALID_ARGUMENT cannot decode image"));
  EXPECT_THAT(reasons["notes.txt"], HasSubstr("not an image file"));
  EXPECT_THAT(reasons["huge.jpg"], HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(reasons["only_bad.jpg"], HasSubstr("no usable image"));
  EXPECT_THAT(reasons["stray.jpg"], HasSubstr("not inside a person folder"));

  // --batch 8 is capped by the server's limit of 4: alice's 6 images need two requests.
  std::vector<int> sizes = service_.enroll_batch_sizes();
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<int>{1, 1, 2, kFakeMaxImagesPerRequest}));
  EXPECT_EQ(service_.enrolls_without_skip(), 0);
}

// Regression (new-user review): when no image of a batch was usable, the request's one reason
// (the first image's) was copied onto every file: a valid photo without a face was reported
// as "not a supported image format". The files of a refused batch are now sent one by one.
TEST_F(CliTest, EnrollDirGivesEachFileOfARefusedBatchItsOwnReason) {
  WriteFile(dir_ / "dog" / "a_bad.jpg", "BAD bytes");
  WriteFile(dir_ / "dog" / "b_dog.jpg", "NOFACE");
  const CliResult result = RunHere({"enroll-dir", dir_.string(), "--json"});
  ASSERT_EQ(result.exit_code, kExitOk) << result.err;
  const nlohmann::json doc = result.Json();
  EXPECT_EQ(doc["files"], 2);
  EXPECT_EQ(doc["faces"], 0);
  std::map<std::string, std::string> reasons;
  for (const auto& s : doc["skipped"]) {
    reasons[fs::path(s["file"].get<std::string>()).filename().string()] =
        s["reason"].get<std::string>();
  }
  ASSERT_EQ(reasons.size(), 2u) << doc.dump(2);
  EXPECT_THAT(reasons["a_bad.jpg"], HasSubstr("cannot decode image"));
  EXPECT_THAT(reasons["b_dog.jpg"], HasSubstr("no face found"));
  std::vector<int> sizes = service_.enroll_batch_sizes();
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<int>{1, 1, 2}));
}

TEST_F(CliTest, EnrollDirHumanSummaryListsSkippedFiles) {
  WriteFile(dir_ / "dave" / "a.jpg", "dave");
  WriteFile(dir_ / "dave" / "b.jpg", "BAD");
  const CliResult result = RunHere({"enroll-dir", dir_.string()});
  ASSERT_EQ(result.exit_code, kExitOk) << result.err;
  EXPECT_THAT(result.out, HasSubstr("enrolled 1 people, 1 new face(s)"));
  EXPECT_THAT(result.out, HasSubstr("skipped 1 file(s):"));
  EXPECT_THAT(result.out, HasSubstr("b.jpg: INVALID_ARGUMENT: cannot decode image"));
}

TEST_F(CliTest, EnrollRefusedImageExitsOneButKeepsTheGoodOnes) {
  WriteFile(dir_ / "1.jpg", "erin");
  WriteFile(dir_ / "2.jpg", "BAD");
  const CliResult result =
      RunHere({"enroll", "--name", "Erin", "--id", "erin", (dir_ / "1.jpg").string(),
               (dir_ / "2.jpg").string(), "--json"});
  EXPECT_EQ(result.exit_code, kExitRequestFailed);
  const nlohmann::json doc = result.Json();
  EXPECT_EQ(doc["stored"], 1);
  EXPECT_EQ(doc["refused"], 1);
  EXPECT_EQ(doc["person"]["external_id"], "erin");
  EXPECT_EQ(doc["person"]["display_name"], "Erin");
  EXPECT_THAT(result.err, HasSubstr("2.jpg: INVALID_ARGUMENT"));
}

TEST_F(CliTest, IdentifyJsonHasOneResultPerFileInOrder) {
  std::vector<std::string> args = {"identify", "--json", "--top-k", "2"};
  for (int i = 0; i < 18; ++i) {  // more than one request's worth (16)
    const fs::path file = dir_ / ("p" + std::to_string(i) + ".jpg");
    WriteFile(file, i == 17 ? "NOFACE" : "person" + std::to_string(i));
    args.push_back(file.string());
  }
  const CliResult result = RunHere(args);
  ASSERT_EQ(result.exit_code, kExitOk) << result.err;
  const nlohmann::json doc = result.Json();
  ASSERT_EQ(doc["results"].size(), 18u);
  EXPECT_EQ(doc["results"][3]["faces"][0]["candidates"][0]["external_id"], "person3");
  EXPECT_EQ(doc["results"][16]["faces"][0]["candidates"][0]["external_id"], "person16");
  EXPECT_EQ(doc["results"][16]["faces"][0]["decision"], "DECISION_KNOWN");
  EXPECT_THAT(doc["results"][16]["file"].get<std::string>(), HasSubstr("p16.jpg"));
  EXPECT_TRUE(doc["results"][17]["faces"].empty());
  EXPECT_FLOAT_EQ(doc["threshold"].get<float>(), 0.5f);
}

TEST_F(CliTest, IdentifyHumanOutputShowsDecisionAndRunnersUp) {
  WriteFile(dir_ / "q.jpg", "frank");
  const CliResult known = RunHere({"identify", (dir_ / "q.jpg").string()});
  ASSERT_EQ(known.exit_code, kExitOk) << known.err;
  EXPECT_THAT(known.out, HasSubstr("frank similarity 0.900"));
  EXPECT_THAT(known.out, HasSubstr("runners-up: runner 0.200"));
  const CliResult unknown = RunHere({"identify", (dir_ / "q.jpg").string(), "--threshold", "0.95"});
  ASSERT_EQ(unknown.exit_code, kExitOk) << unknown.err;
  EXPECT_THAT(unknown.out, HasSubstr("unknown (closest frank)"));
}

TEST_F(CliTest, VerifyPrintsDecisionAgainstImageOrPerson) {
  WriteFile(dir_ / "a.jpg", "a");
  WriteFile(dir_ / "b.jpg", "b");
  const CliResult images =
      RunHere({"verify", (dir_ / "a.jpg").string(), (dir_ / "b.jpg").string()});
  ASSERT_EQ(images.exit_code, kExitOk) << images.err;
  EXPECT_THAT(images.out, HasSubstr("same person"));
  EXPECT_THAT(images.out, HasSubstr("similarity 0.750 (threshold 0.500)"));
  const CliResult person = RunHere(
      {"verify", (dir_ / "a.jpg").string(), "--person", "zoe", "--threshold", "0.9", "--json"});
  ASSERT_EQ(person.exit_code, kExitOk) << person.err;
  EXPECT_EQ(person.Json()["same_person"], false);
  EXPECT_EQ(person.Json()["matched_face_id"], "7");
  EXPECT_EQ(
      RunHere({"verify", (dir_ / "a.jpg").string(), (dir_ / "b.jpg").string(), "--person", "zoe"})
          .exit_code,
      kExitUsage);
}

TEST_F(CliTest, SlowServerHitsTheDeadlineAndNamesTheTimeout) {
  WriteFile(dir_ / "slow.jpg", "SLOW");
  WriteFile(dir_ / "b.jpg", "b");
  const CliResult result = RunHere(
      {"--timeout", "0.2", "verify", (dir_ / "slow.jpg").string(), (dir_ / "b.jpg").string()});
  EXPECT_EQ(result.exit_code, kExitRequestFailed);
  EXPECT_THAT(result.err, HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_THAT(result.err, HasSubstr("raise --timeout"));
}

TEST_F(CliTest, UnknownPersonExitsOneWithNotFound) {
  const CliResult result = RunHere({"person", "nobody"});
  EXPECT_EQ(result.exit_code, kExitRequestFailed);
  EXPECT_THAT(result.err, HasSubstr("error: NOT_FOUND: no person 'nobody'"));
}

TEST_F(CliTest, PeopleFollowsEveryPage) {
  for (const char* name : {"p1", "p2", "p3", "p4", "p5"}) {
    WriteFile(dir_ / "img.jpg", name);
    ASSERT_EQ(RunHere({"enroll", "--name", name, (dir_ / "img.jpg").string()}).exit_code, kExitOk);
  }
  const CliResult result = RunHere({"people", "--page-size", "2", "--json"});
  ASSERT_EQ(result.exit_code, kExitOk) << result.err;
  const nlohmann::json doc = result.Json();
  EXPECT_EQ(doc["total_people"], 5);
  EXPECT_EQ(doc["pages"], 3);
  ASSERT_EQ(doc["people"].size(), 5u);
  EXPECT_EQ(doc["people"][4]["external_id"], "p5");
}

TEST_F(CliTest, ApiKeyIsSentAsBearerMetadata) {
  service_.RequireKey("s3cret");
  const CliResult without = RunHere({"info"});
  EXPECT_EQ(without.exit_code, kExitRequestFailed);
  EXPECT_THAT(without.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(without.err, HasSubstr("--api-key"));

  EXPECT_EQ(RunHere({"info", "--api-key", "s3cret"}).exit_code, kExitOk);
  EXPECT_EQ(service_.last_auth(), "Bearer s3cret");

  setenv("FACEID_API_KEY", "s3cret", 1);
  const CliResult from_env = RunHere({"info", "--json"});
  unsetenv("FACEID_API_KEY");
  EXPECT_EQ(from_env.exit_code, kExitOk) << from_env.err;
  EXPECT_EQ(from_env.Json()["max_images_per_request"], kFakeMaxImagesPerRequest);
}

TEST_F(CliTest, ServerAddressComesFromEnvironment) {
  setenv("FACEID_SERVER", address_.c_str(), 1);
  const CliResult result = RunFaceid({"health", "--json"});
  unsetenv("FACEID_SERVER");
  ASSERT_EQ(result.exit_code, kExitOk) << result.err;
  EXPECT_EQ(result.Json()["status"], "SERVING");
}

// The CLI's --tls-ca against a fake server with a throw-away self-signed certificate.
TEST_F(CliTest, TlsChannelTrustsTheGivenCa) {
  const std::string key = (dir_ / "key.pem").string();
  const std::string cert = (dir_ / "cert.pem").string();
  const std::string command =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout " + key +
      " -out " + cert + " -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  grpc::SslServerCredentialsOptions ssl;
  std::ifstream key_in(key);
  std::ifstream cert_in(cert);
  std::stringstream key_pem;
  std::stringstream cert_pem;
  key_pem << key_in.rdbuf();
  cert_pem << cert_in.rdbuf();
  ssl.pem_key_cert_pairs.push_back({key_pem.str(), cert_pem.str()});
  FakeFaceId tls_service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port);
  builder.RegisterService(&tls_service);
  std::unique_ptr<grpc::Server> tls_server = builder.BuildAndStart();
  ASSERT_NE(tls_server, nullptr);
  const std::string address = "127.0.0.1:" + std::to_string(port);

  const CliResult trusted = RunFaceid({"--server", address, "--tls-ca", cert, "info", "--json"});
  EXPECT_EQ(trusted.exit_code, kExitOk) << trusted.err;
  const CliResult plaintext = RunFaceid({"--server", address, "--timeout", "5", "info"});
  EXPECT_EQ(plaintext.exit_code, kExitRequestFailed);
  EXPECT_THAT(plaintext.err, HasSubstr("UNAVAILABLE"));
  tls_server->Shutdown();
}

TEST_F(CliTest, UnimplementedCallExitsOne) {
  WriteFile(dir_ / "a.jpg", "x");
  const CliResult result = RunHere({"detect", (dir_ / "a.jpg").string()});
  EXPECT_EQ(result.exit_code, kExitRequestFailed);
  EXPECT_THAT(result.err, HasSubstr("UNIMPLEMENTED"));
}

TEST_F(CliTest, BenchCountsRequestsAndErrorsByCode) {
  WriteFile(dir_ / "a.jpg", "x");
  const CliResult ok =
      RunHere({"bench", "--image", (dir_ / "a.jpg").string(), "-n", "20", "-c", "3", "--json"});
  ASSERT_EQ(ok.exit_code, kExitOk) << ok.err;
  const nlohmann::json doc = ok.Json();
  EXPECT_EQ(doc["requests"], 20);
  EXPECT_EQ(doc["ok"], 20);
  EXPECT_EQ(doc["errors"], 0);
  EXPECT_GT(doc["qps"].get<double>(), 0);
  EXPECT_LE(doc["latency_ms"]["p50"].get<double>(), doc["latency_ms"]["p99"].get<double>());
  EXPECT_LE(doc["latency_ms"]["p99"].get<double>(), doc["latency_ms"]["max"].get<double>());

  const CliResult failing = RunHere(
      {"bench", "--image", (dir_ / "a.jpg").string(), "--method", "detect", "-n", "5", "--json"});
  EXPECT_EQ(failing.exit_code, kExitRequestFailed);
  EXPECT_EQ(failing.Json()["errors_by_code"]["UNIMPLEMENTED"], 5);
}

// Overload answers are counted, and each worker waits 10, 20, 40 ms after consecutive ones
// instead of hammering the server; --backoff-ms 0 turns the wait off.
TEST_F(CliTest, BenchBacksOffOnResourceExhausted) {
  WriteFile(dir_ / "a.jpg", "x");
  service_.SetBusyEmbeds(3);
  const CliResult result = RunHere({"bench", "--image", (dir_ / "a.jpg").string(), "--method",
                                    "embed", "-n", "5", "-c", "1", "--json"});
  ASSERT_EQ(result.exit_code, kExitOk) << result.err;
  const nlohmann::json doc = result.Json();
  EXPECT_EQ(doc["ok"], 2);
  EXPECT_EQ(doc["errors_by_code"]["RESOURCE_EXHAUSTED"], 3);
  EXPECT_EQ(doc["backoffs"], 3);
  const auto times = service_.embed_times();
  ASSERT_EQ(times.size(), 5u);
  const auto gap_ms = [&](int i) {
    return std::chrono::duration<double, std::milli>(times[i + 1] - times[i]).count();
  };
  EXPECT_GE(gap_ms(0), 10.0);
  EXPECT_GE(gap_ms(1), 20.0);
  EXPECT_GE(gap_ms(2), 40.0);

  service_.SetBusyEmbeds(2);
  const CliResult no_backoff =
      RunHere({"bench", "--image", (dir_ / "a.jpg").string(), "--method", "embed", "-n", "4", "-c",
               "1", "--backoff-ms", "0", "--json"});
  ASSERT_EQ(no_backoff.exit_code, kExitOk) << no_backoff.err;
  EXPECT_EQ(no_backoff.Json()["backoffs"], 0);
  EXPECT_EQ(no_backoff.Json()["errors_by_code"]["RESOURCE_EXHAUSTED"], 2);
}

TEST_F(CliTest, BenchStopsAfterDuration) {
  WriteFile(dir_ / "a.jpg", "x");
  const CliResult result = RunHere(
      {"bench", "--image", (dir_ / "a.jpg").string(), "--duration", "0.3", "-c", "2", "--json"});
  ASSERT_EQ(result.exit_code, kExitOk) << result.err;
  const nlohmann::json doc = result.Json();
  EXPECT_GT(doc["ok"].get<int>(), 0);
  EXPECT_GE(doc["wall_s"].get<double>(), 0.3);
  EXPECT_LT(doc["wall_s"].get<double>(), 5.0);
}

}  // namespace
}  // namespace faceid
