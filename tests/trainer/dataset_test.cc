// Dataset listing, identity split, alignment cache, augmentation and progress text.
#include "trainer/dataset.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "trainer/augment.h"
#include "trainer/progress.h"

namespace faceid {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("faceid_dataset_test_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

void WriteNoiseImage(const std::string& path, int seed) {
  cv::Mat image(112, 112, CV_8UC3);
  cv::randu(image, seed, 255);
  cv::imwrite(path, image);
}

TEST(NaturalLessTest, DigitRunsCompareByValue) {
  EXPECT_TRUE(NaturalLess("a2.jpg", "a10.jpg"));
  EXPECT_FALSE(NaturalLess("a10.jpg", "a2.jpg"));
  EXPECT_TRUE(NaturalLess("Ann_0009.jpg", "Ann_0010.jpg"));
  EXPECT_TRUE(NaturalLess("1.pgm", "2.pgm"));
  EXPECT_TRUE(NaturalLess("s2", "s10"));
}

TEST(ParseDatasetSpecTest, CropsSuffixAndAbsolutePath) {
  auto spec = ParseDatasetSpec("/data/att_orl:crops");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->path, "/data/att_orl");
  EXPECT_TRUE(spec->crops);
  spec = ParseDatasetSpec("/data/lfw/");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->path, "/data/lfw");
  EXPECT_FALSE(spec->crops);
  EXPECT_EQ(ParseDatasetSpec(":crops").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ListDatasetTest, MissingFolderIsNotFound) {
  const auto r = ListDataset({"/nonexistent/faceid/data", false}, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/faceid/data"), std::string::npos);
}

TEST(ListDatasetTest, EmptyDatasetIsRejectedWithReason) {
  TempDir dir;
  fs::create_directories(dir.path() + "/ann");
  const auto r = ListDataset({dir.path(), false}, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("is empty"), std::string::npos);
}

// Regression: a symlink loop inside a person folder threw filesystem_error out of ListDataset
// (faceid-train aborted), and empty or nested-only folders were dropped without a word.
TEST(ListDatasetTest, UnusableFoldersAndFilesAreListedNotThrown) {
  TempDir dir;
  for (const char* p : {"ann", "bob", "empty", "nested/sub"}) {
    fs::create_directories(dir.path() + "/" + p);
  }
  for (const char* p : {"ann/1.png", "ann/2.png", "bob/1.png", "bob/2.png", "nested/sub/1.png"}) {
    WriteNoiseImage(dir.path() + "/" + p, 1);
  }
  fs::create_symlink("loopB", dir.path() + "/ann/loopA.jpg");
  fs::create_symlink("loopA.jpg", dir.path() + "/ann/loopB");
  auto r = ListDataset({dir.path(), true}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->people.size(), 2u);
  EXPECT_EQ(r->people[0].images.size(), 2u);
  std::string all;
  for (const auto& s : r->skipped_people) all += s + "\n";
  EXPECT_EQ(r->skipped_people.size(), 4u) << all;
  EXPECT_NE(all.find("loopA.jpg: Too many levels of symbolic links"), std::string::npos) << all;
  EXPECT_NE(all.find("empty: no "), std::string::npos) << all;
  EXPECT_NE(all.find("nested: no "), std::string::npos) << all;
  EXPECT_NE(all.find("(sub-folders are not read)"), std::string::npos) << all;
}

// Regression: `eval --data X --data X/` made every person two identities.
TEST(CheckDistinctDatasetsTest, SameFolderBySpellingOrLinkIsRefused) {
  TempDir dir;
  fs::create_directories(dir.path() + "/a");
  fs::create_directories(dir.path() + "/b");
  fs::create_directory_symlink(dir.path() + "/a", dir.path() + "/link");
  EXPECT_TRUE(CheckDistinctDatasets({{dir.path() + "/a", false}, {dir.path() + "/b", true}}).ok());
  for (const std::string other : {"/a/", "/a/.", "/link", "/b/../a"}) {
    const Status s =
        CheckDistinctDatasets({{dir.path() + "/a", false}, {dir.path() + other, true}});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << other;
    EXPECT_NE(s.message().find("is given twice"), std::string::npos) << s;
  }
}

TEST(ListDatasetTest, ClassWithOneImageIsLeftOutAndNamed) {
  TempDir dir;
  for (const char* p : {"ann", "bob"}) fs::create_directories(dir.path() + "/" + p);
  WriteNoiseImage(dir.path() + "/ann/1.png", 1);
  WriteNoiseImage(dir.path() + "/bob/1.png", 2);
  WriteNoiseImage(dir.path() + "/bob/10.png", 3);
  WriteNoiseImage(dir.path() + "/bob/2.png", 4);
  auto r = ListDataset({dir.path(), true}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->people.size(), 1u);
  EXPECT_EQ(r->people[0].name, "bob");
  EXPECT_EQ(fs::path(r->people[0].images[1]).filename(), "2.png");
  ASSERT_EQ(r->skipped_people.size(), 1u);
  EXPECT_NE(r->skipped_people[0].find("ann: 1 image(s)"), std::string::npos);

  fs::remove(dir.path() + "/bob/10.png");
  fs::remove(dir.path() + "/bob/2.png");
  const auto none = ListDataset({dir.path(), true}, {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("at least 2 images"), std::string::npos);
}

TEST(SplitIdentitiesTest, DisjointCompleteAndDeterministic) {
  DatasetListing listing;
  listing.spec = {"/d", false};
  for (int i = 0; i < 20; ++i) listing.people.push_back({"p" + std::to_string(i), {"x"}});
  auto a = SplitIdentities({listing}, {0.7, 0.15, 0.15}, 3);
  auto b = SplitIdentities({listing}, {0.7, 0.15, 0.15}, 3);
  auto c = SplitIdentities({listing}, {0.7, 0.15, 0.15}, 4);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  const DatasetSplit& s = a->datasets[0];
  EXPECT_EQ(s.train.size(), 14u);
  EXPECT_EQ(s.val.size(), 3u);
  EXPECT_EQ(s.test.size(), 3u);
  std::set<std::string> all(s.train.begin(), s.train.end());
  all.insert(s.val.begin(), s.val.end());
  all.insert(s.test.begin(), s.test.end());
  EXPECT_EQ(all.size(), 20u);
  EXPECT_EQ(a->ToJson(), b->ToJson());
  EXPECT_NE(a->ToJson(), c->ToJson());
  auto round_trip = Split::FromJson(a->ToJson());
  ASSERT_TRUE(round_trip.ok());
  EXPECT_EQ(round_trip->ToJson(), a->ToJson());
  EXPECT_EQ(SplitIdentities({listing}, {0, 0, 0}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AlignPeopleTest, CachesCropsAndListsUnreadableImages) {
  TempDir dir;
  fs::create_directories(dir.path() + "/ann");
  WriteNoiseImage(dir.path() + "/ann/1.png", 1);
  WriteNoiseImage(dir.path() + "/ann/2.png", 2);
  std::ofstream(dir.path() + "/ann/3.jpg") << "not a jpeg";
  auto pipeline = FacePipeline::Create(PipelineOptions());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto listing = ListDataset({dir.path(), true}, {});
  ASSERT_TRUE(listing.ok());
  AlignOptions options;
  options.cache_dir = dir.path() + "/cache";
  std::vector<std::pair<DatasetSpec, PersonImages>> people = {{listing->spec, listing->people[0]}};
  auto first = AlignPeople(**pipeline, people, options);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->images.size(), 2u);
  ASSERT_EQ(first->skipped.size(), 1u);
  EXPECT_NE(first->skipped[0].find("3.jpg"), std::string::npos);
  EXPECT_EQ(first->cache_hits, 0);
  auto second = AlignPeople(**pipeline, people, options);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->cache_hits, 3);
  EXPECT_EQ(second->skipped, first->skipped);
  ASSERT_EQ(second->images.size(), 2u);
  EXPECT_EQ(cv::norm(second->images[0].crop, first->images[0].crop, cv::NORM_INF), 0.0);
}

// Regression: Ctrl-C during the (minutes long) alignment was only noticed once training began.
TEST(AlignPeopleTest, CancelStopsAndKeepsWhatWasCached) {
  TempDir dir;
  fs::create_directories(dir.path() + "/ann");
  for (int i = 1; i <= 6; ++i)
    WriteNoiseImage(dir.path() + "/ann/" + std::to_string(i) + ".png", i);
  auto pipeline = FacePipeline::Create(PipelineOptions());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto listing = ListDataset({dir.path(), true}, {});
  ASSERT_TRUE(listing.ok());
  std::vector<std::pair<DatasetSpec, PersonImages>> people = {{listing->spec, listing->people[0]}};
  AlignOptions options;
  options.cache_dir = dir.path() + "/cache";
  options.threads = 1;
  std::atomic<int> polls{0};
  options.cancelled = [&] { return ++polls > 2; };
  auto cancelled = AlignPeople(**pipeline, people, options);
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled) << cancelled.status();
  EXPECT_NE(cancelled.status().message().find("cached"), std::string::npos);

  options.cancelled = nullptr;
  auto resumed = AlignPeople(**pipeline, people, options);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->images.size(), 6u);
  EXPECT_EQ(resumed->cache_hits, 2);
}

TEST(AlignPeopleTest, ReportsProgressEndingWithEveryImageDone) {
  TempDir dir;
  fs::create_directories(dir.path() + "/ann");
  for (int i = 0; i < 4; ++i) WriteNoiseImage(dir.path() + "/ann/" + std::to_string(i) + ".png", i);
  auto pipeline = FacePipeline::Create(PipelineOptions());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto listing = ListDataset({dir.path(), true}, {});
  ASSERT_TRUE(listing.ok());
  AlignOptions options;
  std::vector<std::pair<std::size_t, std::size_t>> calls;
  options.progress = [&](std::size_t done, std::size_t total) { calls.emplace_back(done, total); };
  options.progress_every_s = 0;
  std::vector<std::pair<DatasetSpec, PersonImages>> people = {{listing->spec, listing->people[0]}};
  ASSERT_TRUE(AlignPeople(**pipeline, people, options).ok());
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back(), std::make_pair(std::size_t{4}, std::size_t{4}));
  for (const auto& [done, total] : calls) EXPECT_LE(done, total);
}

TEST(AugmentTest, SameSeedSameImageOtherSeedDiffers) {
  cv::Mat crop(112, 112, CV_8UC3);
  cv::randu(crop, 0, 255);
  std::mt19937_64 a(7), b(7), c(8);
  const cv::Mat x = AugmentCrop(crop, {}, a), y = AugmentCrop(crop, {}, b),
                z = AugmentCrop(crop, {}, c);
  EXPECT_EQ(x.size(), crop.size());
  EXPECT_EQ(cv::norm(x, y, cv::NORM_INF), 0.0);
  EXPECT_GT(cv::norm(x, z, cv::NORM_L1), 0.0);
}

TEST(AugmentTest, FlipOnlyMirrorsTheImage) {
  cv::Mat crop(8, 8, CV_8UC3, cv::Scalar(0, 0, 0));
  crop.col(0).setTo(cv::Scalar(255, 255, 255));
  AugmentOptions flip_only{true, 0, 0, 0, 0};
  // Draw until a flip happens (probability 1/2 per draw).
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    std::mt19937_64 rng(seed);
    const cv::Mat out = AugmentCrop(crop, flip_only, rng);
    if (out.at<cv::Vec3b>(0, 0)[0] == 255) continue;
    EXPECT_EQ(out.at<cv::Vec3b>(3, 7)[0], 255);
    return;
  }
  FAIL() << "no flip in 20 draws";
}

TEST(ProgressBarTest, FormatShowsStepBarEtaAndTerms) {
  EXPECT_EQ(ProgressBar::Format(5, 10, 65, {{"acc", 0.5}, {"ce", 1.25}}, 10),
            "5/10 [=====>....] ETA 1:05 acc 0.5000 ce 1.2500");
  EXPECT_EQ(ProgressBar::Format(10, 10, 0, {}, 4), "10/10 [====] ETA 0:00");
}

}  // namespace
}  // namespace faceid
