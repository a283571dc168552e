// The real `faceid` binary against a child faceid-server on 127.0.0.1 with the shared fixture
// model (ctest fixture faceid_model): enroll-dir on real faces from the fixture's training
// identities, identify their other photos, manage the gallery, check JSON and exit codes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "tests/client/server_process.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kPeople = 3;
constexpr int kEnrolledPerPerson = 3;
constexpr int kProbesPerPerson = 4;
constexpr double kServerReadyTimeoutS = 120;

const std::string kClient = std::string(FACEID_BIN_DIR) + "/faceid";
const std::string kServer = std::string(FACEID_BIN_DIR) + "/faceid-server";
const std::string kModel = std::string(FACEID_FIXTURE_DIR) + "/model.faceid";
const std::string kSplit = std::string(FACEID_FIXTURE_DIR) + "/run/split.json";

struct Probe {
  std::string file;
  std::string person;
};

// Picks kPeople training identities of a photo (not crop) dataset with enough images, links
// the first photos into root/<person>/ and returns the next ones as probes.
std::vector<Probe> PrepareFaces(const fs::path& root, std::string* error) {
  std::ifstream in(kSplit);
  if (!in) {
    *error = "no fixture split at " + kSplit + " (run the faceid_model ctest fixture)";
    return {};
  }
  const nlohmann::json split = nlohmann::json::parse(in);
  std::vector<Probe> probes;
  for (const auto& dataset : split["datasets"]) {
    if (dataset.value("crops", false)) continue;
    const fs::path dir = dataset["path"].get<std::string>();
    std::vector<std::string> names = dataset["train"].get<std::vector<std::string>>();
    std::sort(names.begin(), names.end());
    int people = 0;
    for (const std::string& name : names) {
      std::vector<fs::path> photos;
      for (const auto& entry : fs::directory_iterator(dir / name)) photos.push_back(entry.path());
      if (photos.size() < static_cast<size_t>(kEnrolledPerPerson + kProbesPerPerson)) continue;
      std::sort(photos.begin(), photos.end());
      fs::create_directories(root / name);
      for (int i = 0; i < kEnrolledPerPerson; ++i) {
        fs::create_symlink(photos[i], root / name / photos[i].filename());
      }
      for (int i = 0; i < kProbesPerPerson; ++i) {
        probes.push_back({photos[kEnrolledPerPerson + i].string(), name});
      }
      if (++people == kPeople) return probes;
    }
  }
  *error = "the fixture split has fewer than " + std::to_string(kPeople) +
           " photo identities with " + std::to_string(kEnrolledPerPerson + kProbesPerPerson) +
           " images";
  return {};
}

class CliServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("faceid_cli_server_test_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::string error;
    probes_ = PrepareFaces(dir_ / "people", &error);
    ASSERT_TRUE(error.empty()) << error;
    ASSERT_TRUE(fs::exists(kModel)) << "no fixture model at " << kModel;
    server_ = std::make_unique<ServerProcess>();
    error = server_->Start(kServer, kClient, kModel, dir_.string(), {}, kServerReadyTimeoutS);
    ASSERT_TRUE(error.empty()) << error;
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  ProcessResult Faceid(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", server_->address(), "--timeout", "60"});
    return RunProcess(kClient, args, dir_.string());
  }
  nlohmann::json FaceidJson(std::vector<std::string> args) {
    args.push_back("--json");
    const ProcessResult result = Faceid(args);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out);
  }

  fs::path dir_;
  std::vector<Probe> probes_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CliServerTest, EnrollDirIdentifyAndManageRealFaces) {
  const std::string first = probes_.front().person;
  std::ofstream(dir_ / "people" / first / "broken.jpg") << "this is not a JPEG";

  // enroll-dir: every good photo stored, the broken one skipped with its reason.
  const nlohmann::json enrolled =
      FaceidJson({"enroll-dir", (dir_ / "people").string(), "--batch", "2", "-j", "2"});
  EXPECT_EQ(enrolled["people"], kPeople) << enrolled.dump(2);
  EXPECT_EQ(enrolled["files"], kPeople * kEnrolledPerPerson + 1);
  EXPECT_GE(enrolled["faces"].get<int>(), kPeople * (kEnrolledPerPerson - 1)) << enrolled.dump(2);
  bool broken_reported = false;
  for (const auto& s : enrolled["skipped"]) {
    if (s["file"].get<std::string>().find("broken.jpg") != std::string::npos) {
      broken_reported = true;
      EXPECT_EQ(s["code"], "INVALID_ARGUMENT") << s.dump();
    }
  }
  EXPECT_TRUE(broken_reported) << enrolled.dump(2);

  // Running it again stores nothing new: every image is recognised as a duplicate.
  const nlohmann::json again = FaceidJson({"enroll-dir", (dir_ / "people").string()});
  EXPECT_EQ(again["faces"], 0);
  EXPECT_EQ(again["duplicates"], enrolled["faces"]);

  // identify an enrolled photo: the very same face comes back first, at similarity ~1.
  const fs::path enrolled_photo = *fs::directory_iterator(dir_ / "people" / probes_.back().person);
  const nlohmann::json self = FaceidJson({"identify", enrolled_photo.string()});
  ASSERT_FALSE(self["results"][0]["faces"].empty()) << self.dump(2);
  const auto& self_best = self["results"][0]["faces"][0]["candidates"][0];
  EXPECT_EQ(self_best["external_id"], probes_.back().person);
  EXPECT_GT(self_best["similarity"].get<double>(), 0.99);

  // identify other photos of the same people: the small fixture model must beat chance (1 in
  // kPeople) clearly.
  std::vector<std::string> args = {"identify", "--top-k", "3"};
  for (const Probe& p : probes_) args.push_back(p.file);
  const nlohmann::json identified = FaceidJson(args);
  ASSERT_EQ(identified["results"].size(), probes_.size());
  int correct = 0;
  for (size_t i = 0; i < probes_.size(); ++i) {
    const auto& faces = identified["results"][i]["faces"];
    if (!faces.empty() && !faces[0]["candidates"].empty() &&
        faces[0]["candidates"][0]["external_id"] == probes_[i].person) {
      ++correct;
    }
  }
  std::cout << "top-1 correct " << correct << " of " << probes_.size() << "\n";
  EXPECT_GE(correct * 2, static_cast<int>(probes_.size())) << identified.dump(2);

  // The gallery as the CLI reports it.
  const nlohmann::json people = FaceidJson({"people", "--page-size", "2"});
  EXPECT_EQ(people["total_people"], kPeople);
  EXPECT_EQ(people["people"].size(), static_cast<size_t>(kPeople));
  const nlohmann::json person = FaceidJson({"person", first});
  EXPECT_EQ(person["face_count"], enrolled["faces_per_person"][first]);
  ASSERT_FALSE(person["faces"].empty());
  const nlohmann::json health = FaceidJson({"health"});
  EXPECT_EQ(health["status"], "SERVING");
  const nlohmann::json info = FaceidJson({"info"});
  EXPECT_GT(info["model"]["embedding_dim"].get<int>(), 0);

  // verify against the enrolled person uses the same model: a probe of `first` matches best.
  const nlohmann::json verified = FaceidJson({"verify", probes_.front().file, "--person", first});
  EXPECT_GT(verified["similarity"].get<double>(), 0.0);

  // Rename, delete one face, then the person.
  EXPECT_EQ(FaceidJson({"rename", first, "Renamed Person"})["display_name"], "Renamed Person");
  const std::string face_id = person["faces"][0]["face_id"].get<std::string>();
  EXPECT_EQ(FaceidJson({"delete", "face", face_id})["external_id"], first);
  const nlohmann::json deleted = FaceidJson({"delete", "person", first});
  EXPECT_EQ(deleted["faces_deleted"].get<int>(), person["face_count"].get<int>() - 1);
  EXPECT_EQ(FaceidJson({"people"})["total_people"], kPeople - 1);

  // A person that is not there: exit 1 with the gRPC code.
  const ProcessResult missing = Faceid({"person", first});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));

  // A short load test through the same binary.
  const nlohmann::json bench =
      FaceidJson({"bench", "--image", probes_.back().file, "-n", "6", "-c", "2"});
  EXPECT_EQ(bench["ok"], 6) << bench.dump(2);
}

TEST(CliBinaryTest, ExitCodesWithoutServer) {
  const fs::path dir =
      fs::temp_directory_path() / ("faceid_cli_binary_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string scratch = dir.string();
  EXPECT_EQ(RunProcess(kClient, {"identify"}, scratch).exit_code, 2);
  EXPECT_EQ(RunProcess(kClient, {"--no-such-flag", "info"}, scratch).exit_code, 2);
  const std::string address = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
  const ProcessResult down = RunProcess(kClient, {"--server", address, "info"}, scratch);
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_THAT(down.err, HasSubstr("server not reachable at " + address));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace faceid
