// faceid-server as a child process: SIGKILL at random moments while a client enrolls (every
// acknowledged face survives), graceful SIGTERM, and the backup subcommand.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/nn/embedder_factory.h"
#include "faceid/v1/faceid.grpc.pb.h"
#include "server/store.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;

constexpr int kCrashRounds = 3;
constexpr double kStartTimeoutS = 90;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// LFW photos (250x250, used as face crops), in a fixed order.
std::vector<std::string> LfwPhotos(std::size_t count) {
  std::vector<fs::path> files;
  for (const auto& person :
       fs::directory_iterator(fs::path(FACEID_DATA_DIR) / "lfw_deepfunneled")) {
    for (const auto& photo : fs::directory_iterator(person.path())) files.push_back(photo.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> photos;
  for (std::size_t i = 0; i < files.size() && photos.size() < count; i += 7) {
    photos.push_back(ReadAll(files[i]));
  }
  return photos;
}

class ChildServer {
 public:
  ChildServer(fs::path dir, std::string model) : dir_(std::move(dir)), model_(std::move(model)) {}
  ~ChildServer() { Kill(SIGKILL); }

  // Starts faceid-server on 127.0.0.1 port 0; returns the port once it logs "serving".
  int Start() {
    log_ = dir_ / ("server." + std::to_string(starts_++) + ".log");
    const std::string binary = std::string(FACEID_BIN_DIR) + "/faceid-server";
    const std::string db = (dir_ / "gallery.db").string();
    pid_ = fork();
    if (pid_ == 0) {
      std::FILE* log = std::fopen(log_.c_str(), "w");
      dup2(fileno(log), STDERR_FILENO);
      dup2(fileno(log), STDOUT_FILENO);
      execl(binary.c_str(), binary.c_str(), "--model", model_.c_str(), "--db", db.c_str(),
            "--listen", "127.0.0.1:0", "--threads", "4", static_cast<char*>(nullptr));
      _exit(127);
    }
    const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(kStartTimeoutS);
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string text = ReadAll(log_);
      std::smatch match;
      if (text.find("serving") != std::string::npos && std::regex_search(text, match, listening)) {
        return std::stoi(match[1]);
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "faceid-server exited early:\n" << text;
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "faceid-server did not start:\n" << ReadAll(log_);
    return 0;
  }

  // Sends `signal` and returns the exit status (as from waitpid).
  int Kill(int signal) {
    if (pid_ <= 0) return 0;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  std::string log() const { return ReadAll(log_); }

 private:
  fs::path dir_;
  std::string model_;
  fs::path log_;
  pid_t pid_ = -1;
  int starts_ = 0;
};

class ServerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("faceid_process_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    model_ = (dir_ / "tiny.faceid").string();
    ASSERT_TRUE(WriteTinyRandomModel(model_, /*seed=*/3).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::unique_ptr<v1::FaceId::Stub> StubOn(int port) {
    return v1::FaceId::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                   grpc::InsecureChannelCredentials()));
  }
  static v1::EnrollRequest CropEnroll(const std::string& id, const std::string& image) {
    v1::EnrollRequest request;
    request.set_external_id(id);
    request.add_images(image);
    request.mutable_options()->set_input_is_face_crop(true);
    return request;
  }

  // Runs faceid-server with the test model and `args`; expects it to refuse to start (exit 1)
  // with `message` in its output.
  void ExpectStartRefused(const std::string& args, const std::string& message) {
    const std::string log = (dir_ / "refused.log").string();
    const std::string command = "timeout 60 " + std::string(FACEID_BIN_DIR) +
                                "/faceid-server --model " + model_ + " " + args + " > " + log +
                                " 2>&1";
    const int status = std::system(command.c_str());
    ASSERT_TRUE(WIFEXITED(status)) << args;
    EXPECT_EQ(WEXITSTATUS(status), 1) << args << ": " << ReadAll(log);
    EXPECT_NE(ReadAll(log).find(message), std::string::npos) << args << ": " << ReadAll(log);
  }

  fs::path dir_;
  std::string model_;
};

TEST_F(ServerProcessTest, EveryAcknowledgedFaceSurvivesSigkill) {
  const std::vector<std::string> photos = LfwPhotos(400);
  ASSERT_GE(photos.size(), 100u);
  ChildServer child(dir_, model_);
  std::mt19937 rng(20261204);
  struct Acked {
    std::string id;
    std::int64_t face_id;
    std::size_t photo;
  };
  std::vector<Acked> acked;
  std::set<std::string> maybe;  // in flight when the server was killed
  std::size_t next_photo = 0;

  for (int round = 0; round < kCrashRounds; ++round) {
    const int port = child.Start();
    ASSERT_GT(port, 0);
    std::atomic<bool> stop{false};
    std::thread client([&] {
      auto stub = StubOn(port);
      while (!stop && next_photo < photos.size()) {
        const std::string id = "r" + std::to_string(round) + "_" + std::to_string(next_photo);
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        v1::EnrollResponse response;
        const grpc::Status status =
            stub->Enroll(&context, CropEnroll(id, photos[next_photo]), &response);
        if (!status.ok()) {
          maybe.insert(id);
          break;
        }
        acked.push_back({id, response.faces(0).face_id(), next_photo});
        ++next_photo;
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 1200));
    child.Kill(SIGKILL);
    stop = true;
    client.join();
  }
  ASSERT_GT(acked.size(), 5u);
  std::printf("%zu enrolls acknowledged over %d SIGKILL rounds\n", acked.size(), kCrashRounds);

  const int port = child.Start();
  ASSERT_GT(port, 0);
  auto stub = StubOn(port);
  for (const Acked& face : acked) {
    grpc::ClientContext context;
    v1::GetPersonRequest get;
    get.set_external_id(face.id);
    v1::Person person;
    ASSERT_TRUE(stub->GetPerson(&context, get, &person).ok()) << face.id;
    ASSERT_EQ(person.faces_size(), 1) << face.id;
    EXPECT_EQ(person.faces(0).face_id(), face.face_id);
  }
  // Identifiable: the same photo finds its own face with similarity 1.
  for (std::size_t i = 0; i < acked.size(); i += std::max<std::size_t>(1, acked.size() / 20)) {
    grpc::ClientContext context;
    v1::IdentifyRequest request;
    request.add_images(photos[acked[i].photo]);
    request.set_input_is_face_crop(true);
    v1::IdentifyResponse response;
    ASSERT_TRUE(stub->Identify(&context, request, &response).ok());
    bool found = false;
    for (const auto& candidate : response.results(0).faces(0).candidates()) {
      if (candidate.face_id() == acked[i].face_id && candidate.similarity() > 0.999f) found = true;
    }
    EXPECT_TRUE(found) << acked[i].id;
  }
  // Nothing half-written: every stored person is acknowledged or was in flight, with its face.
  grpc::ClientContext list_context;
  v1::ListPeopleRequest list;
  list.set_page_size(1000);
  v1::ListPeopleResponse people;
  ASSERT_TRUE(stub->ListPeople(&list_context, list, &people).ok());
  std::set<std::string> acked_ids;
  for (const Acked& face : acked) acked_ids.insert(face.id);
  for (const auto& person : people.people()) {
    EXPECT_TRUE(acked_ids.count(person.external_id()) || maybe.count(person.external_id()))
        << person.external_id();
    EXPECT_EQ(person.face_count(), 1) << person.external_id();
  }
  EXPECT_GE(people.total_people(), static_cast<std::int64_t>(acked.size()));
}

TEST_F(ServerProcessTest, SigtermStopsGracefullyAndBackupCopiesTheGallery) {
  const std::vector<std::string> photos = LfwPhotos(1);
  ChildServer child(dir_, model_);
  const int port = child.Start();
  ASSERT_GT(port, 0);
  {
    auto stub = StubOn(port);
    grpc::ClientContext context;
    v1::EnrollResponse response;
    ASSERT_TRUE(stub->Enroll(&context, CropEnroll("alice", photos[0]), &response).ok());
  }
  const int status = child.Kill(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status) << "\n" << child.log();
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(child.log().find("stopped"), std::string::npos) << child.log();

  const std::string binary = std::string(FACEID_BIN_DIR) + "/faceid-server";
  const std::string copy = (dir_ / "copy.db").string();
  const std::string command =
      binary + " backup --db " + (dir_ / "gallery.db").string() + " --out " + copy + " > /dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0);
  auto store = GalleryStore::Open(copy);
  ASSERT_TRUE(store.ok()) << store.status();
  auto person = (*store)->GetPerson("default", "alice");
  ASSERT_TRUE(person.ok()) << person.status();
  EXPECT_EQ(person->face_count, 1);
  const std::string missing =
      binary + " backup --db " + (dir_ / "none.db").string() + " --out " + copy + " 2> /dev/null";
  EXPECT_NE(std::system(missing.c_str()), 0);
}

// A second server on a database in use would keep its own index and miss the first one's
// enrollments: it is refused with a message, and the first keeps serving.
TEST_F(ServerProcessTest, SecondServerOnTheSameDatabaseIsRefused) {
  ChildServer first(dir_, model_);
  const int port = first.Start();
  ASSERT_GT(port, 0);
  const std::string binary = std::string(FACEID_BIN_DIR) + "/faceid-server";
  const std::string log = (dir_ / "second.log").string();
  const std::string command = "timeout 60 " + binary + " --model " + model_ + " --db " +
                              (dir_ / "gallery.db").string() + " --listen 127.0.0.1:0 > " + log +
                              " 2>&1";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << ReadAll(log);
  EXPECT_NE(ReadAll(log).find("in use by another faceid-server"), std::string::npos)
      << ReadAll(log);
  grpc::ClientContext context;
  v1::InfoResponse info;
  EXPECT_TRUE(StubOn(port)->Info(&context, {}, &info).ok());

  // Regression: the lock was a file named after the path, so a symlink (or a hard link) to
  // the database let a second server in. Now the database file itself is locked.
  std::filesystem::create_symlink(dir_ / "gallery.db", dir_ / "alias.db");
  std::filesystem::create_hard_link(dir_ / "gallery.db", dir_ / "hard.db");
  for (const char* other : {"alias.db", "hard.db"}) {
    ExpectStartRefused("--db " + (dir_ / other).string() + " --listen 127.0.0.1:0",
                       "in use by another faceid-server");
  }
}

// Regression: gRPC took --listen 127.0.0.1:99999 as port 34463, and backup --out naming the
// database itself reported success without making a copy.
TEST_F(ServerProcessTest, BadListenPortAndSelfBackupAreRefused) {
  const std::string binary = std::string(FACEID_BIN_DIR) + "/faceid-server";
  const std::string log = (dir_ / "port.log").string();
  const std::string db = "--db " + (dir_ / "port.db").string();
  for (const char* listen : {"127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:", "localhost"}) {
    ExpectStartRefused(db + " --listen " + listen, "port from 0 to 65535");
  }
  // Regression: 3000000000 was accepted and advertised, but gRPC cannot receive over 2 GiB.
  ExpectStartRefused(db + " --max-image-bytes 3000000000", "--max-image-bytes must be within");
  // Regression: "::1" passed (its last colon looked like a port separator) and bound port 443.
  for (const char* listen : {"::1", "::1:50650", "fe80::1"}) {
    ExpectStartRefused(db + " --listen " + listen, "in brackets");
  }
  {
    auto store = GalleryStore::Open((dir_ / "self.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
  }
  // Regression: backup --out naming another server's live database overwrote it.
  {
    auto other = GalleryStore::Open((dir_ / "other.db").string());
    ASSERT_TRUE(other.ok()) << other.status();
  }
  const auto other_size = std::filesystem::file_size(dir_ / "other.db");
  const std::string over = binary + " backup --db " + (dir_ / "self.db").string() + " --out " +
                           (dir_ / "other.db").string() + " > " + log + " 2>&1";
  EXPECT_NE(std::system(over.c_str()), 0);
  EXPECT_NE(ReadAll(log).find("already exists; a backup never overwrites"), std::string::npos)
      << ReadAll(log);
  EXPECT_EQ(std::filesystem::file_size(dir_ / "other.db"), other_size);
  std::filesystem::create_symlink(dir_ / "self.db", dir_ / "self-link.db");
  for (const char* out : {"self.db", "self-link.db"}) {
    const std::string command = binary + " backup --db " + (dir_ / "self.db").string() + " --out " +
                                (dir_ / out).string() + " > " + log + " 2>&1";
    EXPECT_NE(std::system(command.c_str()), 0) << out;
    EXPECT_NE(ReadAll(log).find("is the database itself"), std::string::npos) << ReadAll(log);
  }
}

}  // namespace
}  // namespace faceid
