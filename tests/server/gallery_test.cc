// GalleryManager with an index snapshot folder: a restart loads the saved index instead of
// rebuilding it, applies what changed in the store since, and a delete drops the snapshot.
#include "server/gallery.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "tests/server/fakes.h"

namespace faceid::testing {
namespace {

namespace fs = std::filesystem;

std::vector<float> UnitVector(std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(kFakeDim);
  double norm = 0;
  for (float& x : v) {
    x = normal(rng);
    norm += x * x;
  }
  for (float& x : v) x /= static_cast<float>(std::sqrt(norm));
  return v;
}

class GallerySnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("faceid_gallery_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A manager on the test's database, as a restarted server would have, prepared.
  std::unique_ptr<GalleryManager> Open() {
    auto store = GalleryStore::Open((dir_ / "g.db").string());
    EXPECT_TRUE(store.ok()) << store.status();
    IndexOptions options;
    options.type = IndexType::kHnsw;
    auto manager = std::make_unique<GalleryManager>(std::move(*store), kFakeDim, options,
                                                    (dir_ / "index").string());
    EXPECT_TRUE(manager->Prepare(embedder_).ok());
    return manager;
  }

  // Enrolls `person` with four faces into gallery "g"; remembers the first vector.
  void Enroll(GalleryManager& manager, const std::string& person) {
    std::vector<NewFace> faces;
    for (int i = 0; i < 4; ++i) {
      NewFace face;
      face.embedding = UnitVector(rng_);
      face.crop_png = "crop";
      face.source_sha256 = person + std::to_string(i);
      faces.push_back(face);
    }
    probes_[person] = faces[0].embedding;
    ASSERT_TRUE(manager.Enroll("g", person, person, {}, faces, embedder_.info().version).ok());
  }

  std::string Top(GalleryManager& manager, const std::string& person) {
    auto found = manager.Search("g", probes_[person], 1);
    EXPECT_TRUE(found.ok()) << found.status();
    return found.ok() && !found->empty() ? (*found)[0].external_id : "";
  }

  int SnapshotFiles() const {
    int n = 0;
    for (const auto& entry : fs::directory_iterator(dir_ / "index")) {
      n += entry.path().extension() == ".faiss" ? 1 : 0;
    }
    return n;
  }

  fs::path dir_;
  FakeEmbedder embedder_;
  std::mt19937_64 rng_{7};
  std::map<std::string, std::vector<float>> probes_;
};

TEST_F(GallerySnapshotTest, RestartLoadsTheSnapshotAndAppliesLaterChanges) {
  {
    auto first = Open();
    EXPECT_EQ(first->prepare_report().galleries_loaded, 0);
    for (const char* person : {"ann", "bob", "cy"}) Enroll(*first, person);
    ASSERT_TRUE(first->SaveSnapshots().ok());
  }
  EXPECT_EQ(SnapshotFiles(), 2);  // the default gallery and "g"
  {
    auto second = Open();
    const PrepareReport& report = second->prepare_report();
    EXPECT_EQ(report.galleries_loaded, 2);
    EXPECT_EQ(report.galleries_built, 0);
    EXPECT_EQ(report.faces_from_snapshot, 12);
    EXPECT_EQ(Top(*second, "bob"), "bob");
    Enroll(*second, "dee");  // then a crash: no save
  }
  auto third = Open();
  EXPECT_EQ(third->prepare_report().galleries_loaded, 2);
  EXPECT_EQ(third->prepare_report().faces_added, 4);
  EXPECT_EQ(Top(*third, "dee"), "dee");
  EXPECT_EQ(Top(*third, "ann"), "ann");

  // Deleting erases the snapshot of that gallery: no deleted embedding stays on disk there.
  ASSERT_TRUE(third->DeletePerson("g", "ann").ok());
  EXPECT_EQ(SnapshotFiles(), 1);
  EXPECT_NE(Top(*third, "ann"), "ann");
  third.reset();
  auto fourth = Open();
  EXPECT_EQ(fourth->prepare_report().galleries_built, 1);
  EXPECT_NE(Top(*fourth, "ann"), "ann");
  EXPECT_EQ(Top(*fourth, "cy"), "cy");
  EXPECT_EQ(SnapshotFiles(), 2);  // saved again after the rebuild
}

TEST_F(GallerySnapshotTest, UnusableSnapshotIsRebuiltNotAnError) {
  {
    auto first = Open();
    Enroll(*first, "ann");
    ASSERT_TRUE(first->SaveSnapshots().ok());
  }
  for (const auto& entry : fs::directory_iterator(dir_ / "index")) {
    fs::resize_file(entry.path(), 10);
  }
  auto second = Open();
  EXPECT_TRUE(second->ready());
  EXPECT_EQ(second->prepare_report().galleries_loaded, 0);
  EXPECT_EQ(second->prepare_report().galleries_built, 2);
  EXPECT_EQ(Top(*second, "ann"), "ann");
}

// Regression: the snapshot folder being a file stopped the server from starting.
TEST_F(GallerySnapshotTest, UnusableSnapshotFolderMeansServingWithoutSnapshots) {
  { std::ofstream(dir_ / "index") << "not a folder"; }
  auto manager = Open();
  EXPECT_TRUE(manager->ready());
  EXPECT_TRUE(manager->snapshot_dir().empty());
  Enroll(*manager, "ann");
  EXPECT_EQ(Top(*manager, "ann"), "ann");
  EXPECT_TRUE(manager->SaveSnapshots().ok());
  EXPECT_TRUE(fs::is_regular_file(dir_ / "index"));
}

// Regression: saving deleted every g*.faiss and g*.tmp file of the folder, not only its own.
TEST_F(GallerySnapshotTest, SavingAndPurgingTouchOnlyTheirOwnFiles) {
  fs::create_directories(dir_ / "index");
  const std::vector<std::string> foreign = {"g.tmp", "gpu-model.faiss", "notes.txt",
                                            "faceid-gallery-zz.faiss"};
  for (const std::string& name : foreign) std::ofstream(dir_ / "index" / name) << "keep";
  {
    auto manager = Open();
    Enroll(*manager, "ann");
    ASSERT_TRUE(manager->SaveSnapshots().ok());
  }
  EXPECT_EQ(SnapshotFiles(), 2 + 2);  // ours, plus two foreign names ending in .faiss
  EXPECT_EQ(RemoveIndexSnapshots((dir_ / "index").string()), 2);
  for (const std::string& name : foreign) EXPECT_TRUE(fs::exists(dir_ / "index" / name)) << name;
}

}  // namespace
}  // namespace faceid::testing
